"""ORPO: Odds Ratio Preference Optimization (Hong et al. 2024, arXiv:2403.07691).

SFT and preference learning in one loss, with no reference model and no separate SFT stage: imitate the
chosen completion, and at the same time make its odds larger than the rejected one's,

    loss = NLL(chosen) - lambda * log sigmoid( log odds(chosen) - log odds(rejected) )
    odds(y | x) = P / (1 - P),   P = pi(y | x) ** (1 / |y|)     (the per-token geometric mean probability)

SFT alone raises the chosen answer but, as the paper shows, raises the rejected one along with it (they
share most tokens); the odds-ratio term pushes them apart and saturates once the chosen is clearly ahead.
Why odds and not DPO's probability ratio: with the SFT term already lifting the chosen, a probability
ratio would push the rejected down too hard; the paper argues the odds ratio contrasts them more gently.
Simplified: pairs are fixed before training starts (as DPO's: see preferences.task_pairs) and the NLL is
the mean over the chosen completions' tokens, as in TRL. On reviews, summary.json holds `gold_win_rate`
over the starting model.

    rlrecipes run orpo --init runs/pt --out runs/orpo
    rlrecipes run orpo --task reviews --init runs/reviews-sft --pairs runs/reviews-rm/pairs.jsonl \\
        --out runs/reviews-orpo
"""

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from rlrecipes.lm.generate import pack, sequence_logprobs
from rlrecipes.plots import plot_curves
from rlrecipes.preferences import TASKS_WITH_PAIRS, load_pairs, save_pairs, task_pairs
from rlrecipes.rewards import gold_summary
from rlrecipes.runs import Run, check_finite, load_checkpoint, resolve_device, seed_everything
from rlrecipes.tasks import evaluate, get_task


@dataclass
class Config:
    init: str | None = None  # the pretrained (or SFT) checkpoint or run folder to start from; no reference is kept
    task: str = "arithmetic"  # the task to evaluate on (and to make pairs from when --pairs is not given)
    pairs: str | None = None  # JSONL file of prompt/chosen/rejected pairs, TRL's format (default: made from the task)
    n_pairs: int = 2000  # pairs to make when --pairs is not given (reviews: prompts sampled twice; ties dropped)
    steps: int = 60  # optimiser steps
    batch_size: int = 32  # pairs per step
    lr: float = 3e-4  # AdamW learning rate, constant after warm-up
    warmup_steps: int = 5  # linear warm-up
    lam: float = 0.1  # lambda, the odds-ratio term's weight against the NLL (TRL calls it beta; the paper: 0.1)
    grad_clip: float = 1.0  # clip the global gradient norm to this
    eval_every: int = 20  # held-out accuracy every this many steps (0 = only at the end)
    seed: int = 0  # same seed, same run (on the CPU)
    device: str = "auto"  # auto | cpu | cuda | mps
    out: str | None = None  # run folder (default runs/orpo-<timestamp>)
    overwrite: bool = False  # replace whatever --out holds


def validate(cfg: Config):
    task = get_task(cfg.task)
    if not cfg.init:
        raise ValueError("orpo needs --init: a pretrained checkpoint or run folder (ORPO does the SFT itself)")
    if cfg.pairs is not None and not Path(cfg.pairs).is_file():
        raise ValueError(f"pairs={cfg.pairs!r} is not a file; give a JSONL file of prompt/chosen/rejected pairs")
    if cfg.pairs is not None:
        load_pairs(cfg.pairs)  # a malformed file fails now, naming its line, before a model is loaded
    if cfg.pairs is None and cfg.task not in TASKS_WITH_PAIRS:
        raise ValueError(f"task={cfg.task!r} has no built-in preference pairs; pass --pairs FILE.jsonl")
    for name in ("steps", "batch_size", "n_pairs", "warmup_steps"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name}={getattr(cfg, name)} must be at least 1")
    if not cfg.lr > 0:
        raise ValueError(f"lr={cfg.lr} must be greater than 0 (try 3e-4)")
    if cfg.lam < 0:
        raise ValueError(f"lam={cfg.lam} must be 0 (plain SFT on the chosen) or positive (the paper uses 0.1)")
    if cfg.grad_clip <= 0:
        raise ValueError(f"grad_clip={cfg.grad_clip} must be greater than 0")
    resolve_device(cfg.device)
    return task


# --- core ---
def log_odds(avg_logp: torch.Tensor) -> torch.Tensor:
    """log(P / (1 - P)) from log P, computed stably; P = 1 exactly would be infinite odds, so it is capped."""
    avg_logp = avg_logp.clamp(max=-1e-6)  # (N,)
    return avg_logp - torch.log(-torch.expm1(avg_logp))  # (N,) log P - log(1 - P)


def orpo_loss(logp, mask, lam):
    """logp, mask: (2B, T) per completion token, the B chosen completions first, then the B rejected ones of the
    same prompts. Returns (loss, stats)."""
    avg_logp = (logp * mask).sum(1) / mask.sum(1).clamp(min=1)  # (2B,) log of the per-token geometric mean prob
    chosen_avg, rejected_avg = avg_logp.chunk(2)  # (B,), (B,)
    log_odds_ratio = log_odds(chosen_avg) - log_odds(rejected_avg)  # (B,) log [odds(chosen) / odds(rejected)]
    ratio_loss = -F.logsigmoid(log_odds_ratio)  # (B,) small once the chosen's odds are well ahead
    chosen_logp, chosen_mask = logp.chunk(2)[0], mask.chunk(2)[0]  # (B, T), (B, T)
    nll = -(chosen_logp * chosen_mask).sum() / chosen_mask.sum()  # SFT on the chosen tokens
    chosen_reward, rejected_reward = lam * chosen_avg.detach(), lam * rejected_avg.detach()  # (B,) as TRL logs them
    stats = {
        "rewards/chosen": chosen_reward.mean(),
        "rewards/rejected": rejected_reward.mean(),
        "rewards/margins": (chosen_reward - rejected_reward).mean(),
        "rewards/accuracies": (chosen_reward > rejected_reward).float().mean(),
        "log_odds_ratio": -ratio_loss.detach().mean(),  # TRL's name for mean log sigmoid(log odds ratio)
        "log_odds_chosen": log_odds_ratio.detach().mean(),
        "nll_loss": nll.detach(),
    }
    return nll + lam * ratio_loss.mean(), stats


# --- end core ---


def train(cfg: Config, run: Run | None = None) -> dict:
    task = validate(cfg)
    device = resolve_device(cfg.device)
    model, tokenizer, _, _ = load_checkpoint(cfg.init, device)
    pairs = load_pairs(cfg.pairs) if cfg.pairs else task_pairs(task, cfg.n_pairs, cfg.seed, model, tokenizer)
    prompts = [tokenizer.encode(p["prompt"], bos=True) for p in pairs]  # a character the model never saw fails here
    chosen = [tokenizer.encode(p["chosen"], eos=True) for p in pairs]
    rejected = [tokenizer.encode(p["rejected"], eos=True) for p in pairs]
    standalone = run is None  # inside a pipeline the caller owns the run folder and its summary
    run = run or Run.create(cfg.out, "orpo", overwrite=cfg.overwrite)
    if standalone:
        run.write_json("config.json", {"orpo": asdict(cfg)})
    run.stage = "orpo"
    if not cfg.pairs:  # the pairs made for this run, to read or to reuse with --pairs
        save_pairs(run.dir / "pairs.jsonl", pairs)
    generator = seed_everything(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)

    t0 = time.time()
    start_accuracy = accuracy = evaluate(model, tokenizer, task)[0]
    run.log(0, **{"eval/accuracy": start_accuracy})
    bar = tqdm(range(cfg.steps), desc="orpo", dynamic_ncols=True)
    for step in bar:
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # 1. A batch of pairs, chosen and rejected packed together: 2B rows, one forward pass.
        idx = torch.randint(0, len(pairs), (cfg.batch_size,), generator=generator).tolist()
        completions = [chosen[i] for i in idx] + [rejected[i] for i in idx]
        batch = pack([prompts[i] for i in idx] * 2, completions, tokenizer.pad_id, device)
        mask = batch.completion_mask[:, 1:].float()  # (2B, T-1)
        # 2. The loss (no reference model: one forward pass is all ORPO needs) and one optimiser step.
        loss, stats = orpo_loss(sequence_logprobs(model, batch), mask, cfg.lam)
        check_finite(loss, "orpo", step + 1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        # 3. Log with TRL's names.
        done = step + 1
        row = {
            **{k: v.item() for k, v in stats.items()},
            "loss": loss.item(),
            "grad_norm": grad_norm.item(),
            "learning_rate": lr,
            "pairs_seen": done * cfg.batch_size,
        }
        if (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps:
            accuracy, eval_prompts, eval_completions = evaluate(model, tokenizer, task)
            row["eval/accuracy"] = accuracy
            run.log_samples(done, eval_prompts[:8], eval_completions[:8])
        run.log(done, **row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", nll=f"{row['nll_loss']:.3f}", acc=f"{accuracy:.2f}")
    checkpoint = run.save(model, tokenizer, cfg.steps, complete=True, config=asdict(cfg))
    keys = ["rewards/chosen", "rewards/rejected", "rewards/margins", "log_odds_chosen"]  # TRL's names
    plot_curves(run.history, keys, run.dir / "orpo.png", f"orpo on {cfg.task} (mean of 10 steps)", smooth=10)
    summary = {
        "start_accuracy": start_accuracy,
        "final_accuracy": accuracy,
        "seconds": time.time() - t0,
        "pairs": cfg.steps * cfg.batch_size,
        "checkpoint": str(checkpoint),
        # on reviews: gold_win_rate over the starting model (ORPO keeps no reference: --init is loaded again)
        **gold_summary(task, model, cfg.init, tokenizer),
    }
    if standalone:
        run.write_json("summary.json", summary)
    return {**summary, "history": run.history}


if __name__ == "__main__":
    import tyro

    train(tyro.cli(Config, description=__doc__))
