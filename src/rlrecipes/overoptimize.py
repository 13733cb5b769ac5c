"""`rlrecipes overoptimize`: reward over-optimisation (Goodhart's law), measured on your own run.

    rlrecipes overoptimize --init runs/reviews-sft --reward-model runs/reviews-rm --out runs/reviews-overopt

Gao, Schulman and Hilton (2022, "Scaling laws for reward model overoptimization", arXiv:2210.10760)
trained policies against a learned reward model (the proxy) and graded them with the gold reward the
proxy had learned to imitate. As a policy moves away from where it started, the proxy keeps rising,
but the gold reward rises, peaks and falls: past some distance, most of what the optimiser still finds
are the reward model's mistakes. They measure the distance as sqrt(KL(policy || initial policy)).

Here: one GRPO run with no KL penalty (beta = 0) against the reward model, from the SFT model, for
`steps` steps, keeping a checkpoint every `every` steps (grpo's --save-every). Then the SFT model
(step 0) and each checkpoint sample each held-out prompt `repeats` times (temperature 1, as in
training) and we measure, on those samples:

    kl      mean over the samples of sum_t [log pi(y_t | x, y_<t) - log pi_sft(y_t | x, y_<t)]: an
            unbiased estimate of KL(pi || pi_sft) per completion, in nats (the k1 estimator, summed)
    proxy   mean reward-model score (standardised: 0 is a typical SFT review, 1 one std better)
    gold    mean gold-judge score in [0, 1], and gold_win_rate over an SFT sample of the same prompts

The training run is not interrupted to measure: the optimiser keeps its moments and the prompts
keep coming from one stream, as in a real RLHF run, and the measuring happens afterwards, on the
checkpoints (`<out>/grpo-step-0020.safetensors`, ...: every policy on the curve is a checkpoint you
can sample or --init from). The GRPO run logs into the same folder (metrics.jsonl, stage "grpo").

overoptimize.png draws proxy and gold against sqrt(KL), Gao et al.'s x axis, and the rollouts' own
`reward` and `gold/reward` against step; summary.json holds the points, the gold peak and the final
policy's gold_win_rate (480 comparisons, as every run on reviews reports it).
"""

import math
import time
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from rlrecipes.lm.generate import generate, sequence_logprobs
from rlrecipes.plots import plot_overoptimization
from rlrecipes.recipes import grpo
from rlrecipes.rewards import get_reward
from rlrecipes.runs import Run, load_checkpoint, resolve_device, run_dir_for
from rlrecipes.tasks import get_task
from rlrecipes.tasks.reviews import gold_win_rate


@dataclass
class Config:
    init: str | None = None  # the SFT run folder or checkpoint: the starting policy and the KL reference (required)
    reward_model: str | None = None  # the reward_model run folder: the proxy the policy is trained on (required)
    task: str = "reviews"  # whose prompts; the task's own reward is the gold judge
    steps: int = 60  # GRPO steps against the reward model, with no KL penalty (beta = 0)
    every: int = 10  # measure KL, proxy and gold every this many steps (steps must be a multiple of it)
    batch_size: int = 16  # prompts per GRPO step
    group_size: int = 8  # completions per prompt per GRPO step
    lr: float = 3e-4  # GRPO's learning rate
    repeats: int = 4  # samples of each held-out prompt at each measuring point
    seed: int = 0  # same seed, same run (on the CPU)
    device: str = "auto"  # auto | cpu | cuda | mps
    out: str | None = None  # run folder (default runs/overoptimize-<timestamp>)
    overwrite: bool = False  # replace whatever --out holds


def validate(cfg: Config):
    task = get_task(cfg.task)
    if not cfg.init:
        raise ValueError("overoptimize needs --init: the SFT run folder or checkpoint (e.g. runs/reviews-sft)")
    if not cfg.reward_model:
        raise ValueError("overoptimize needs --reward-model: a reward_model run folder (e.g. runs/reviews-rm)")
    for name in ("steps", "every", "repeats"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name}={getattr(cfg, name)} must be at least 1")
    if cfg.steps % cfg.every:
        raise ValueError(f"steps={cfg.steps} must be a multiple of every={cfg.every}: points are evenly spaced")
    grpo.validate(grpo_config(cfg))  # batch_size, group_size, lr: GRPO's own checks
    return task


def grpo_config(cfg: Config) -> grpo.Config:
    """The one GRPO run behind the curve: no KL penalty, a checkpoint at every measuring point."""
    return grpo.Config(
        init=cfg.init, task=cfg.task, reward=f"reward-model:{cfg.reward_model}", steps=cfg.steps,
        batch_size=cfg.batch_size, group_size=cfg.group_size, lr=cfg.lr, beta=0.0, eval_every=0,
        save_every=cfg.every, seed=cfg.seed, device=cfg.device,
    )  # fmt: skip


def sample(policy, tokenizer, task, prompts: list[str], seed: int):
    """Each prompt's completion at temperature 1, from a generator of its own (the same draws at every point)."""
    generator = torch.Generator(device=next(policy.parameters()).device).manual_seed(seed)
    ids = [tokenizer.encode(p, bos=True) for p in prompts]
    width = task.max_completion_chars + 2  # as in training
    samples = generate(policy, ids, width, tokenizer.eos_id, tokenizer.pad_id, generator=generator)
    return samples, [tokenizer.decode(c) for c in samples.completion_ids]


@torch.no_grad()
def measure(policy, reference, tokenizer, task, proxy_fn, prompts, sft_completions, seed: int) -> dict:
    """KL to the reference, proxy and gold reward of the policy's own samples of `prompts`."""
    policy.eval()
    samples, completions = sample(policy, tokenizer, task, prompts, seed)
    log_ratio = (sequence_logprobs(policy, samples) - sequence_logprobs(reference, samples)).sum(1)  # (B,) nats
    kl = log_ratio.mean().item()  # the mean under the policy's own samples is KL(pi || ref)
    proxy, gold = proxy_fn(prompts, completions), task.reward(prompts, completions)

    def judge(prompt: str, completion: str) -> float:  # the task's own reward, one completion at a time
        return task.reward([prompt], [completion])[0]

    return {
        "kl": kl,
        "sqrt_kl": math.sqrt(max(kl, 0.0)),  # a finite-sample estimate can dip just below 0 near the start
        "kl_stderr": (log_ratio.std() / math.sqrt(len(prompts))).item(),
        "proxy": sum(proxy) / len(proxy),
        "gold": sum(gold) / len(gold),
        "gold_win_rate": gold_win_rate(completions, sft_completions, prompts, judge),
        "completions/mean_length": samples.completion_lengths.float().mean().item(),
        "example": f"{prompts[0]} {completions[0]}",
    }


def overoptimize(cfg: Config) -> dict:
    task = validate(cfg)
    device = resolve_device(cfg.device)
    reference, tokenizer, _, _ = load_checkpoint(cfg.init, device)  # the SFT model: where the policy starts
    reference.eval().requires_grad_(False)
    proxy_fn = get_reward(f"reward-model:{cfg.reward_model}", task, tokenizer, device)  # a bad one fails here
    run = Run.create(str(run_dir_for(cfg.out, "overoptimize")), "overoptimize", overwrite=cfg.overwrite)
    run.write_json("config.json", {"overoptimize": asdict(cfg), "grpo": asdict(grpo_config(cfg))})
    t0 = time.time()
    result = grpo.train(grpo_config(cfg), run)  # in our folder: its metrics, samples and checkpoints
    history = [r for r in result["history"] if "reward" in r]
    run.stage = "overoptimize"
    prompts = task.heldout_prompts() * cfg.repeats
    _, sft = sample(reference, tokenizer, task, prompts, cfg.seed + 1)  # SFT's reviews: the win rate's opponent

    def point(step: int, policy) -> dict:  # the same prompts and seed at every point: only the policy changes
        return {"step": step, **measure(policy, reference, tokenizer, task, proxy_fn, prompts, sft, cfg.seed)}

    points = [point(0, reference)]
    for step in tqdm(range(cfg.every, cfg.steps + 1, cfg.every), desc="measuring", dynamic_ncols=True):
        points.append(point(step, load_checkpoint(run.dir / f"grpo-step-{step:04d}.safetensors", device)[0]))
    for p in points:  # metrics.jsonl: one row per measuring point
        run.log(p["step"], **{key: v for key, v in p.items() if key not in ("step", "example")})
    peak = max(points, key=lambda p: p["gold"])
    final = points[-1]
    title = f"{cfg.task}: GRPO against a reward model, beta = 0"
    plot_overoptimization(points, history, run.dir / "overoptimize.png", title)
    summary = {
        "points": points,
        "peak": peak,  # the policy the gold judge likes best
        "gold_drop_after_peak": peak["gold"] - final["gold"],  # > 0: the gold reward fell after its peak
        "proxy_gain_after_peak": final["proxy"] - peak["proxy"],  # > 0: while the proxy kept rising
        "start_gold": points[0]["gold"],
        "final_gold": final["gold"],
        "final_kl": final["kl"],
        "gold_win_rate": result["gold_win_rate"],  # the final policy over SFT, as every reviews run reports it
        "seconds": time.time() - t0,
        "run_dir": str(run.dir),
    }
    run.write_json("summary.json", summary)
    return summary
