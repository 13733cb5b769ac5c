"""REINFORCE (Williams 1992, "Simple statistical gradient-following algorithms for connectionist
reinforcement learning", Machine Learning 8): the policy gradient at its plainest.

Sample one completion per prompt, score it, and push up the log-probability of the whole completion
in proportion to how much better than expected it did:

    loss = -mean_seq [ (R - b) * sum_tok log pi(token) ]          sum_tok log pi = log pi(completion | prompt)
    b = moving average of mean(R) over past batches                never this batch's own rewards

Any baseline b that does not depend on the sampled completion leaves the gradient's expectation alone
and changes only its noise. --baseline moving_average tracks the textbook choice, the expected reward;
--baseline none sets b = 0, so right answers are pushed up and wrong ones ignored. Which is quieter is
an empirical question: the noise is smallest at b* = E[R |grad log pi|^2] / E[|grad log pi|^2], the
reward weighted by how hard each sample pulls, and on this task the rare wrong answers pull hardest
(docs/reinforce-rloo.md measures it). Compare grad_norm and the reward curves of the two runs; RLOO and
GRPO go further and give every prompt its own baseline, from several samples of it.

Simplified here: the whole completion is one action (no per-token credit, no discount), one gradient
step per batch (so no importance ratio), and the KL to the frozen starting model is only watched, not
penalised; RLOO adds the penalty.

    rlrecipes run reinforce --init runs/bake/sft.safetensors --steps 60 --baseline moving_average
"""

import copy
import random
import time
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from rlrecipes.lm.generate import generate, sequence_logprobs
from rlrecipes.lm.kl import kl_k1, kl_k3
from rlrecipes.rewards import check_reward_spec, get_reward, gold_judge, gold_summary
from rlrecipes.runs import Run, check_finite, load_checkpoint, resolve_device, seed_everything
from rlrecipes.tasks import evaluate, get_task

BASELINES = ("moving_average", "none")


@dataclass
class Config:
    init: str | None = None  # the SFT checkpoint or run folder to start from (required)
    task: str = "arithmetic"  # which task's prompts (and reward, unless --reward names another)
    reward: str = "task"  # task | reward-model:RUN_DIR (RLHF: optimise a learned reward model; see rewards.py)
    steps: int = 60  # RL steps, each one batch of fresh samples
    batch_size: int = 128  # prompts per step, one completion each
    lr: float = 1e-4  # AdamW learning rate
    baseline: str = "moving_average"  # moving_average | none: what is subtracted from the reward
    baseline_decay: float = 0.9  # moving average: avg <- decay * avg + (1 - decay) * the batch's mean reward
    temperature: float = 1.0  # sampling temperature for rollouts
    grad_clip: float = 1.0  # clip the global gradient norm to this
    eval_every: int = 20  # held-out accuracy every this many steps (0 = only at the end)
    sample_every: int = 10  # write a few sampled completions to samples.jsonl every this many steps
    kl_every: int = 10  # measure kl (a reference forward) on step 1, the last and every this many
    seed: int = 0  # same seed, same run (on the CPU)
    device: str = "auto"  # auto | cpu | cuda | mps
    out: str | None = None  # run folder (default runs/reinforce-<timestamp>)
    overwrite: bool = False  # replace whatever --out holds


def validate(cfg: Config):
    task = get_task(cfg.task)
    check_reward_spec(cfg.reward)
    if not cfg.init:
        raise ValueError("reinforce needs --init: an SFT (or pretrained) checkpoint or run folder")
    for name in ("steps", "batch_size"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name}={getattr(cfg, name)} must be at least 1")
    if not cfg.lr > 0:
        raise ValueError(f"lr={cfg.lr} must be greater than 0 (try 1e-4)")
    if cfg.baseline not in BASELINES:
        raise ValueError(f"baseline={cfg.baseline!r} is not one of {', '.join(BASELINES)}")
    if not 0 <= cfg.baseline_decay < 1:
        raise ValueError(f"baseline_decay={cfg.baseline_decay} must be in [0, 1) (0.9 averages about 10 batches)")
    if not cfg.temperature > 0:
        raise ValueError(f"temperature={cfg.temperature} must be greater than 0")
    if cfg.kl_every < 0:
        raise ValueError(f"kl_every={cfg.kl_every} must be 0 (kl on step 1 and the last only) or positive")
    resolve_device(cfg.device)
    return task


# --- core ---
def moving_average_baseline(avg: float, n_batches: int, rewards: torch.Tensor, decay: float) -> tuple[float, float]:
    """Fold a batch's mean reward into the running average; returns (avg, the baseline for the next batch).
    Bias-corrected as in Adam, so the average's start at 0 does not linger: after one batch, b is its mean."""
    avg = decay * avg + (1 - decay) * rewards.mean().item()  # what the policy has been earning lately
    return avg, avg / (1 - decay ** (n_batches + 1))


def reinforce_loss(logp, ref_logp, rewards, baseline: float, mask):
    """logp, ref_logp, mask: (N, T) per completion token; rewards: (N,). Returns (loss, stats)."""
    adv = rewards - baseline  # (N,) better or worse than expected; b must not depend on this sample
    seq_logp = (logp * mask).sum(1)  # (N,) log pi(completion | prompt): the whole completion is one action
    loss = -(adv * seq_logp).mean()  # (): its gradient is the mean of (R - b) * grad log pi(completion)
    n_tokens = mask.sum().clamp(min=1)  # (): completion tokens in the batch
    stats = {
        "adv_mean": adv.mean(),  # about 0 with a good baseline, the mean reward without one
        "adv_std": adv.std(),  # together with adv_mean, sets how noisy the gradient is
        "kl": (kl_k3(logp, ref_logp) * mask).sum() / n_tokens,  # per token, >= 0: drift from the start
        "kl_k1": (kl_k1(logp, ref_logp) * mask).sum() / n_tokens,  # the same drift, noisier, can dip below 0
    }
    return loss, {k: v.detach() for k, v in stats.items()}


# --- end core ---


def train(cfg: Config, run: Run | None = None) -> dict:
    task = validate(cfg)
    device = resolve_device(cfg.device)
    model, tokenizer, _, _ = load_checkpoint(cfg.init, device)
    reward_fn = get_reward(cfg.reward, task, tokenizer, device)  # before the run folder: a bad one fails first
    gold_fn = gold_judge(cfg.reward, task)  # with a reward model: the task's own reward, to grade it
    reference = copy.deepcopy(model).eval().requires_grad_(False)  # frozen: only to measure the drift (kl)
    standalone = run is None  # inside `rlrecipes bake` the bake owns the run folder and its summary
    run = run or Run.create(cfg.out, "reinforce", overwrite=cfg.overwrite)
    if standalone:
        run.write_json("config.json", {"reinforce": asdict(cfg)})
    run.stage = "reinforce"
    generator = seed_everything(cfg.seed)
    prompt_rng = random.Random(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    max_new_tokens = task.max_completion_chars + 2  # room to overshoot, so a long wrong answer can be punished
    reward_avg, baseline = 0.0, 0.0  # nothing seen yet: the first batch has no baseline

    t0 = time.time()
    start_accuracy = accuracy = evaluate(model, tokenizer, task)[0]
    run.log(0, **{"eval/accuracy": start_accuracy})
    bar = tqdm(range(cfg.steps), desc="reinforce", dynamic_ncols=True)
    step = 0
    try:
        for step in bar:
            # 1. Rollout: one sample for each prompt, from the current policy.
            prompts = task.train_prompts(cfg.batch_size, prompt_rng)
            model.eval()
            samples = generate(
                model,
                [tokenizer.encode(p, bos=True) for p in prompts],
                max_new_tokens,
                tokenizer.eos_id,
                tokenizer.pad_id,
                temperature=cfg.temperature,
                generator=generator,
            )
            model.train()
            completions = [tokenizer.decode(c) for c in samples.completion_ids]
            # 2. Score.
            rewards = torch.tensor(reward_fn(prompts, completions), device=device)  # (B,)
            mask = samples.completion_mask[:, 1:].float()  # (B, T-1)
            # The KL is never in this loss: the reference forward only feeds the kl metrics, and TRL
            # skips it. We pay for it on a few steps (see kl_every) and log kl on those only.
            done = step + 1
            measure_kl = done in (1, cfg.steps) or (cfg.kl_every and done % cfg.kl_every == 0)
            with torch.no_grad():
                ref_logp = sequence_logprobs(reference, samples) if measure_kl else None
            # 3. Update: one policy-gradient step against the baseline from earlier batches.
            logp, entropy = sequence_logprobs(model, samples, with_entropy=True)
            ref = logp.detach() if ref_logp is None else ref_logp  # the policy as its own reference: KL 0
            loss, stats = reinforce_loss(logp, ref, rewards, baseline, mask)
            check_finite(loss, "reinforce", step + 1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)  # before clipping
            optimizer.step()
            used_baseline = baseline
            if cfg.baseline == "moving_average":  # only now: a batch's own rewards must not be in its baseline
                reward_avg, baseline = moving_average_baseline(reward_avg, step, rewards, cfg.baseline_decay)
            # 4. Log what a practitioner reads, with TRL's names.
            row = {
                "reward": rewards.mean().item(),
                "reward_std": rewards.std().item(),
                "baseline": used_baseline,
                "adv_mean": stats["adv_mean"].item(),
                "adv_std": stats["adv_std"].item(),
                "entropy": ((entropy.detach() * mask).sum() / mask.sum()).item(),
                "completions/mean_length": samples.completion_lengths.float().mean().item(),
                "loss": loss.item(),
                "grad_norm": grad_norm.item(),
                "learning_rate": cfg.lr,
                "samples_seen": done * len(prompts),
            }
            if ref_logp is not None:  # unmeasured steps have no kl (the policy stood in as its own reference)
                row |= {"kl": stats["kl"].item(), "kl_k1": stats["kl_k1"].item()}
            if gold_fn is not None:  # the hidden judge grades the same rollouts: proxy and gold side by side
                row["gold/reward"] = sum(gold_fn(prompts, completions)) / len(prompts)
            if (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps:
                accuracy = evaluate(model, tokenizer, task)[0]
                row["eval/accuracy"] = accuracy
            if cfg.sample_every and (done % cfg.sample_every == 0 or done == 1):
                run.log_samples(done, prompts[:4], completions[:4], rewards[:4])
            run.log(done, **row)
            bar.set_postfix(reward=f"{row['reward']:.2f}", grad=f"{row['grad_norm']:.2f}", acc=f"{accuracy:.2f}")
    except KeyboardInterrupt:  # keep what was learned so far; RL restarts from a checkpoint with --init
        bar.close()
        run.save(model, tokenizer, step, complete=False)
        raise
    checkpoint = run.save(model, tokenizer, cfg.steps, complete=True, config=asdict(cfg))
    summary = {
        "start_accuracy": start_accuracy,
        "final_accuracy": accuracy,
        "seconds": time.time() - t0,
        "samples": cfg.steps * cfg.batch_size,
        "checkpoint": str(checkpoint),
        **gold_summary(task, model, reference, tokenizer),  # on reviews: gold_win_rate over --init
    }
    if standalone:
        run.write_json("summary.json", summary)
    return {**summary, "history": run.history}


if __name__ == "__main__":
    import tyro

    train(tyro.cli(Config, description=__doc__))
