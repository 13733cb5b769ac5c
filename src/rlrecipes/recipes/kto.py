"""KTO: Kahneman-Tversky Optimization (Ethayarajh et al. 2024, arXiv:2402.01306).

Learns from unpaired thumbs up and thumbs down: each example is one completion marked desirable or
undesirable, with no partner to be compared with. Like DPO the implicit reward is r = log pi/ref of the
completion; unlike DPO it is judged against a reference point z0, an estimate of KL(pi || ref), through a
value function shaped like prospect theory's (gains and losses saturate):

    v = lambda_D * sigmoid(beta * (r - z0))   if desirable       (reward above the reference point: a gain)
    v = lambda_U * sigmoid(beta * (z0 - r))   if undesirable     (reward below it: a loss avoided)
    loss = mean(lambda - v)

z0 is the batch's average log pi/ref of *mismatched* (prompt, completion) pairs, clamped at 0 and not
trained through (as in TRL): a policy that raises every completion's log-ratio at once raises z0 with
it, step by step, and gains nothing; what pays is separating good completions from bad. Simplified:
the mismatched completions are the batch's own, shifted by one row (as TRL does); the examples come
from the same pairs DPO uses, split in two (`rlrecipes.preferences.unpaired`), so the data are
balanced. Changed: beta = 2, not the paper's 0.1; at 0.1 the sigmoids barely saturate on this tiny
model, KTO turns into "push every bad answer down, without limit", and the right answers the model
already had erode (docs/dpo.md has the numbers).

On reviews, summary.json holds `gold_win_rate` over the starting model.

    rlrecipes run kto --init runs/pt --out runs/kto
    rlrecipes run kto --init runs/pt --beta 0.1     (watch the no-carry sums erode)
    rlrecipes run kto --task reviews --init runs/reviews-sft --pairs runs/reviews-rm/pairs.jsonl --out runs/reviews-kto
"""

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from rlrecipes.lm.generate import pack, sequence_logprobs
from rlrecipes.plots import plot_curves
from rlrecipes.preferences import TASKS_WITH_PAIRS, load_pairs, save_pairs, task_pairs, unpaired
from rlrecipes.rewards import gold_summary
from rlrecipes.runs import Run, check_finite, load_checkpoint, resolve_device, seed_everything
from rlrecipes.tasks import evaluate, get_task


@dataclass
class Config:
    init: str | None = None  # the pretrained or SFT checkpoint or run folder to start from; also the reference
    task: str = "arithmetic"  # the task to evaluate on (and to make examples from when --pairs is not given)
    pairs: str | None = None  # JSONL file of {"prompt", "chosen", "rejected"} pairs, split into unpaired examples
    n_pairs: int = 2000  # pairs to make when --pairs is not given, two examples each (reviews: ties dropped)
    steps: int = 100  # optimiser steps
    batch_size: int = 32  # examples per step (each also gives one mismatched completion for z0)
    lr: float = 1e-4  # AdamW learning rate, constant after warm-up
    warmup_steps: int = 5  # linear warm-up
    beta: float = 2.0  # scale of the implicit reward in the value function (the paper's 0.1 never saturates here)
    desirable_weight: float = 1.0  # lambda_D, the weight of desirable examples
    undesirable_weight: float = 0.75  # lambda_U; the paper keeps lambda_D n_D / (lambda_U n_U) in [1, 4/3]
    grad_clip: float = 1.0  # clip the global gradient norm to this
    eval_every: int = 20  # held-out accuracy every this many steps (0 = only at the end)
    seed: int = 0  # same seed, same run (on the CPU)
    device: str = "auto"  # auto | cpu | cuda | mps
    out: str | None = None  # run folder (default runs/kto-<timestamp>)
    overwrite: bool = False  # replace whatever --out holds


def validate(cfg: Config):
    task = get_task(cfg.task)
    if not cfg.init:
        raise ValueError("kto needs --init: a pretrained or SFT checkpoint or run folder (it is also the reference)")
    if cfg.pairs is not None and not Path(cfg.pairs).is_file():
        raise ValueError(f"pairs={cfg.pairs!r} is not a file; give a JSONL file of prompt/chosen/rejected pairs")
    if cfg.pairs is not None:
        load_pairs(cfg.pairs)  # a malformed file fails now, naming its line, before a model is loaded
    if cfg.pairs is None and cfg.task not in TASKS_WITH_PAIRS:
        raise ValueError(f"task={cfg.task!r} has no built-in preference data; pass --pairs FILE.jsonl")
    for name in ("steps", "n_pairs", "warmup_steps"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name}={getattr(cfg, name)} must be at least 1")
    if cfg.batch_size < 2:
        raise ValueError(f"batch_size={cfg.batch_size} must be at least 2: z0 needs another row's completion")
    if not cfg.lr > 0:
        raise ValueError(f"lr={cfg.lr} must be greater than 0 (try 1e-4)")
    if not cfg.beta > 0:
        raise ValueError(f"beta={cfg.beta} must be greater than 0 (the paper uses 0.1; 2.0 suits this tiny model)")
    for name in ("desirable_weight", "undesirable_weight"):
        if not getattr(cfg, name) > 0:
            raise ValueError(f"{name}={getattr(cfg, name)} must be greater than 0 (1.0 for balanced data)")
    if cfg.grad_clip <= 0:
        raise ValueError(f"grad_clip={cfg.grad_clip} must be greater than 0")
    resolve_device(cfg.device)
    return task


# --- core ---
def kto_loss(logp, ref_logp, mask, desirable, beta, desirable_weight=1.0, undesirable_weight=1.0):
    """logp, ref_logp, mask: (2B, T) per completion token: the B examples first, then the same B prompts with
    mismatched completions (for z0); desirable: (B,) bool, thumbs up or down. Returns (loss, stats)."""
    log_ratio = ((logp - ref_logp) * mask).sum(1)  # (2B,) log pi/ref of each completion, summed over its tokens
    r, mismatched = log_ratio.chunk(2)  # (B,), (B,)
    z0 = mismatched.mean().clamp(min=0).detach()  # () KL(pi || ref) estimate: the reference point, a constant
    gain = desirable_weight * torch.sigmoid(beta * (r - z0))  # (B,) value of a desirable completion
    loss_avoided = undesirable_weight * torch.sigmoid(beta * (z0 - r))  # (B,) value of an undesirable one
    v = torch.where(desirable, gain, loss_avoided)  # (B,)
    lam = torch.where(desirable, desirable_weight, undesirable_weight)  # (B,) the most v can be
    losses = lam - v  # (B,) in [0, lambda]
    reward = beta * r.detach()  # (B,) the implicit reward, as TRL logs it
    n_up, n_down = desirable.sum().clamp(min=1), (~desirable).sum().clamp(min=1)  # a batch may lack one kind
    chosen_reward, rejected_reward = (reward * desirable).sum() / n_up, (reward * ~desirable).sum() / n_down
    stats = {
        "rewards/chosen": chosen_reward,
        "rewards/rejected": rejected_reward,
        "rewards/margins": chosen_reward - rejected_reward,
        "kl": z0,
    }
    return losses.mean(), stats


# --- end core ---


def train(cfg: Config, run: Run | None = None) -> dict:
    task = validate(cfg)
    device = resolve_device(cfg.device)
    model, tokenizer, _, _ = load_checkpoint(cfg.init, device)
    pairs = load_pairs(cfg.pairs) if cfg.pairs else task_pairs(task, cfg.n_pairs, cfg.seed, model, tokenizer)
    examples = unpaired(pairs)  # (prompt, completion, desirable): every pair gives one of each
    prompts = [tokenizer.encode(p, bos=True) for p, _, _ in examples]  # a character the model never saw fails here
    completions = [tokenizer.encode(c, eos=True) for _, c, _ in examples]
    labels = torch.tensor([d for _, _, d in examples], device=device)  # (N,) bool
    reference = copy.deepcopy(model).eval().requires_grad_(False)  # frozen starting model
    standalone = run is None  # inside a pipeline the caller owns the run folder and its summary
    run = run or Run.create(cfg.out, "kto", overwrite=cfg.overwrite)
    if standalone:
        run.write_json("config.json", {"kto": asdict(cfg)})
    run.stage = "kto"
    if not cfg.pairs:  # the pairs made for this run, to read or to reuse with --pairs
        save_pairs(run.dir / "pairs.jsonl", pairs)
    generator = seed_everything(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)

    t0 = time.time()
    start_accuracy = accuracy = evaluate(model, tokenizer, task)[0]
    run.log(0, **{"eval/accuracy": start_accuracy})
    bar = tqdm(range(cfg.steps), desc="kto", dynamic_ncols=True)
    for step in bar:
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # 1. A batch of examples, then the same prompts with the completions shifted by one row (for z0).
        idx = torch.randint(0, len(examples), (cfg.batch_size,), generator=generator).tolist()
        batch_completions = [completions[i] for i in idx]
        mismatched = batch_completions[-1:] + batch_completions[:-1]  # prompt i gets completion i - 1
        batch = pack([prompts[i] for i in idx] * 2, batch_completions + mismatched, tokenizer.pad_id, device)
        mask = batch.completion_mask[:, 1:].float()  # (2B, T-1)
        # 2. Per-token log-probs under the policy and the frozen reference.
        logp = sequence_logprobs(model, batch)  # (2B, T-1)
        with torch.no_grad():
            ref_logp = sequence_logprobs(reference, batch)  # (2B, T-1)
        # 3. The loss and one optimiser step.
        desirable = labels[idx]  # (B,)
        loss, stats = kto_loss(logp, ref_logp, mask, desirable, cfg.beta, cfg.desirable_weight, cfg.undesirable_weight)
        check_finite(loss, "kto", step + 1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        # 4. Log with TRL's names.
        done = step + 1
        row = {
            **{k: v.item() for k, v in stats.items()},
            "loss": loss.item(),
            "grad_norm": grad_norm.item(),
            "learning_rate": lr,
            "examples_seen": done * cfg.batch_size,
        }
        if (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps:
            accuracy, eval_prompts, eval_completions = evaluate(model, tokenizer, task)
            row["eval/accuracy"] = accuracy
            run.log_samples(done, eval_prompts[:8], eval_completions[:8])
        run.log(done, **row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", kl=f"{row['kl']:.3f}", acc=f"{accuracy:.2f}")
    checkpoint = run.save(model, tokenizer, cfg.steps, complete=True, config=asdict(cfg))
    keys = ["rewards/chosen", "rewards/rejected", "rewards/margins", "kl"]  # TRL's names
    plot_curves(run.history, keys, run.dir / "kto.png", f"kto on {cfg.task} (mean of 10 steps)", smooth=10)
    summary = {
        "start_accuracy": start_accuracy,
        "final_accuracy": accuracy,
        "seconds": time.time() - t0,
        "examples": cfg.steps * cfg.batch_size,
        "checkpoint": str(checkpoint),
        **gold_summary(task, model, reference, tokenizer),  # on reviews: gold_win_rate over the starting model
    }
    if standalone:
        run.write_json("summary.json", summary)
    return {**summary, "history": run.history}


if __name__ == "__main__":
    import tyro

    train(tyro.cli(Config, description=__doc__))
