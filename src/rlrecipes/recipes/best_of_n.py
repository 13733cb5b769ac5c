"""Best-of-N: sample N completions, keep the one the reward model likes most. No training at all.

    y* = argmax_{i = 1..N} r(x, y_i),      y_1 .. y_N ~ pi_SFT(. | x)
    KL(pi_best-of-N || pi_SFT) <= log N - (N - 1) / N

The simplest way to use a reward model, and the baseline every RL method should beat: it spends N
samples per prompt at inference time instead of any training. The KL formula says how far the
best-of-N policy moves from the SFT model (1.8 nats at N = 16, growing like log N): the analytic value
of Stiennon et al. 2020 (appendix), shown by Beirami et al. 2024 to be an upper bound. Gao, Schulman
and Hilton 2022 ("Scaling laws for reward model overoptimization") measure gold reward against exactly
this KL: the reward model's score keeps rising with N, the gold judge's rises more slowly and, with an
imperfect reward model and large N, can fall.

Each held-out prompt is asked `repeats` times; for every N, the chosen completion is the reward model's
favourite among the first N of the same N_max samples, so the curves share their samples. The win rate
compares it with one more, independent SFT sample: at N = 1 it is 0.5 up to noise. The oracle curve
picks by the gold judge itself: the ceiling a perfect reward model would reach.

    rlrecipes run best_of_n --init runs/sft-reviews/ --reward-model runs/rm-reviews/ --task reviews
"""

import math
import time
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from rlrecipes.plots import plot_best_of_n
from rlrecipes.recipes.reward_model import load_reward_model
from rlrecipes.runs import Run, load_checkpoint, resolve_device, seed_everything
from rlrecipes.tasks import complete, get_task
from rlrecipes.tasks.reviews import gold_win_rate


@dataclass
class Config:
    init: str | None = None  # the SFT checkpoint or run folder to sample from (required)
    reward_model: str | None = None  # the reward_model run folder (or its checkpoint) that picks the best (required)
    task: str = "reviews"  # whose held-out prompts, and whose reward is the gold judge
    ns: tuple[int, ...] = (1, 2, 4, 8, 16, 32)  # the values of N to measure, increasing; the largest is sampled
    repeats: int = 8  # each held-out prompt is asked this many times, so the win rates rest on more comparisons
    temperature: float = 1.0  # sampling temperature of the SFT model
    seed: int = 0  # same seed, same run (on the CPU)
    device: str = "auto"  # auto | cpu | cuda | mps
    out: str | None = None  # run folder (default runs/best_of_n-<timestamp>)
    overwrite: bool = False  # replace whatever --out holds


def validate(cfg: Config):
    task = get_task(cfg.task)
    if not cfg.init:
        raise ValueError("best_of_n needs --init: the SFT checkpoint or run folder to sample from")
    if not cfg.reward_model:
        raise ValueError("best_of_n needs --reward-model: a run folder of `rlrecipes run reward_model`")
    if not cfg.ns or any(n < 1 for n in cfg.ns) or list(cfg.ns) != sorted(set(cfg.ns)):
        raise ValueError(f"ns={cfg.ns} must be distinct positive integers in increasing order, e.g. 1 2 4 8 16")
    if cfg.ns[-1] > 256:
        raise ValueError(f"ns={cfg.ns}: N up to 256 (N_max samples of every prompt are kept in memory)")
    if cfg.repeats < 1:
        raise ValueError(f"repeats={cfg.repeats} must be at least 1")
    if not cfg.temperature > 0:
        raise ValueError(f"temperature={cfg.temperature} must be greater than 0")
    resolve_device(cfg.device)
    return task


# --- core ---
def best_of_n(scores: torch.Tensor, n: int) -> torch.Tensor:
    """scores: (P, N_max) reward-model scores of N_max samples of each prompt.
    Returns (P,) the index of the reward model's favourite among the first n samples of each prompt."""
    return scores[:, :n].argmax(1)  # (P,) the first n, so every N reuses the same samples


def kl_bound(n: int) -> float:
    """KL(best-of-n || base) in nats: log n - (n - 1) / n, exact when no two samples score the same and an
    upper bound otherwise (Beirami et al. 2024). 0 at n = 1: one sample is the base policy itself."""
    return math.log(n) - (n - 1) / n


# --- end core ---


def train(cfg: Config, run: Run | None = None) -> dict:
    task = validate(cfg)
    device = resolve_device(cfg.device)
    model, tokenizer, _, _ = load_checkpoint(cfg.init, device)
    reward = load_reward_model(cfg.reward_model, device)
    if reward.tokenizer.chars != tokenizer.chars:
        raise ValueError(
            f"reward_model={cfg.reward_model!r} reads other characters than init={cfg.init!r}: train it from this SFT model"
        )
    standalone = run is None
    run = run or Run.create(cfg.out, "best_of_n", overwrite=cfg.overwrite)
    if standalone:
        run.write_json("config.json", {"best_of_n": asdict(cfg)})
    run.stage = "best_of_n"
    generator = seed_everything(cfg.seed)
    t0 = time.time()

    # 1. N_max samples of every prompt, and one more as the reference the win rate compares against.
    prompts = task.heldout_prompts() * cfg.repeats
    n_max, width = cfg.ns[-1], task.max_completion_chars + 2
    model.eval()
    samples = []  # samples[j][p]: the j-th sample of prompt p
    for _ in tqdm(range(n_max + 1), desc="best_of_n: sampling", dynamic_ncols=True):
        samples.append(
            complete(model, tokenizer, prompts, width, greedy=False, temperature=cfg.temperature, generator=generator)
        )
    references = samples.pop()
    # 2. Score every sample with the reward model (the proxy) and the gold judge (the truth, for evaluation).
    flat = [c for row in zip(*samples) for c in row]  # prompt-major: (P * N_max,)
    flat_prompts = [p for p in prompts for _ in range(n_max)]
    scores = torch.tensor(reward(flat_prompts, flat)).view(len(prompts), n_max)  # (P, N_max)
    gold = torch.tensor(task.reward(flat_prompts, flat), dtype=torch.float64).view(len(prompts), n_max)  # (P, N_max)
    judge = lambda p, c: task.reward([p], [c])[0]  # noqa: E731

    # 3. For each N: the reward model's pick, graded by the gold judge; and the oracle's pick.
    rows = []
    for n in cfg.ns:
        pick = best_of_n(scores, n)  # (P,)
        chosen = [samples[j][p] for p, j in enumerate(pick.tolist())]
        rows.append({
            "n": n,
            "gold_reward": gold.gather(1, pick[:, None]).mean().item(),
            "gold_win_rate": gold_win_rate(chosen, references, prompts, judge),
            "rm_score": scores.gather(1, pick[:, None]).mean().item(),  # standardised on SFT samples
            "oracle_gold_reward": gold[:, :n].max(1).values.mean().item(),  # a perfect reward model's pick
            "kl_bound": kl_bound(n),
        })  # fmt: skip
        run.log(n, **rows[-1])
        if n == n_max:
            run.log_samples(n, prompts[:8], chosen[:8], gold.gather(1, pick[:, None])[:8, 0])
    plot_best_of_n(
        list(cfg.ns),
        {name: [r[key] for r in rows] for name, key in [("gold reward", "gold_reward"), ("gold win rate vs SFT", "gold_win_rate"),
                                                         ("oracle gold reward", "oracle_gold_reward")]},
        [r["kl_bound"] for r in rows],
        run.dir / "best_of_n.png",
        f"best-of-N on {cfg.task}: reward model picks, gold judge grades",
    )  # fmt: skip
    tqdm.write("     N   KL bound   gold reward   win rate vs SFT   oracle")
    for r in rows:
        tqdm.write(
            f"{r['n']:>6} {r['kl_bound']:>10.2f} {r['gold_reward']:>13.3f} {r['gold_win_rate']:>17.3f} {r['oracle_gold_reward']:>8.3f}"
        )
    summary = {
        "ns": list(cfg.ns),
        "gold_reward": [r["gold_reward"] for r in rows],
        "gold_win_rate": [r["gold_win_rate"] for r in rows],
        "rm_score": [r["rm_score"] for r in rows],
        "oracle_gold_reward": [r["oracle_gold_reward"] for r in rows],
        "kl_bound": [r["kl_bound"] for r in rows],
        "sft_gold_reward": sum(task.reward(prompts, references)) / len(prompts),
        "prompts": len(prompts),
        "seconds": time.time() - t0,
    }
    if standalone:
        run.write_json("summary.json", summary)
    return {**summary, "history": run.history}


if __name__ == "__main__":
    import tyro

    train(tyro.cli(Config))
