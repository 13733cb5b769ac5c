"""DPO: Direct Preference Optimization (Rafailov et al. 2023, arXiv:2305.18290).

RLHF maximises reward while staying near a reference model: max E[r(x, y)] - beta * KL(pi || ref). That
objective's best policy is known in closed form, pi*(y|x) ∝ ref(y|x) exp(r(x, y) / beta), so a policy
defines its own reward, r = beta * log pi/ref (+ a term of x alone). Put that reward into the
Bradley-Terry model of "chosen beats rejected" and the reward model and the sampling disappear: one
classification loss on pairs of fixed completions,

    loss = -log sigmoid(beta * [(logp_c - ref_c) - (logp_r - ref_r)])  +  rpo_alpha * NLL(chosen)

logp = log pi(completion | prompt) summed over the completion's tokens, ref = the same under the frozen
starting model. Variants, one flag each (docs/dpo.md explains what each fixes):

    --loss-type ipo       (h - 1/(2 beta))^2, h the margin of per-token averaged log-ratios (Azar et al. 2023)
    --label-smoothing e   cDPO: assume a fraction e of labels are flipped (Mitchell 2023)
    --loss-type simpo     -log sigmoid(beta * (avg_c - avg_r) - gamma), no reference (Meng et al. 2024)
    --rpo-alpha 0         the paper's DPO, without the SFT term

Changed from the paper: by default we add RPO's SFT term on the chosen completions (Pang et al. 2024,
arXiv:2404.19733; TRL's rpo_alpha; Llama 3 does the same). Our pairs differ in one character, the case
where plain DPO lowers the chosen answer's probability too, only less than the rejected one's (Pal et
al. 2024, arXiv:2402.13228): here it wrecks the model (docs/dpo.md has the numbers). Simplified: no
sampling during training, as in the paper: the pairs are fixed before it starts (arithmetic: made from the
training split; reviews: two samples of the starting SFT model per prompt, labelled by the hidden gold
judge, see preferences.task_pairs); the reference's log-probs are recomputed each step, not precomputed.
On reviews, summary.json holds `gold_win_rate`: how often the gold judge prefers the trained policy's
review to the starting model's, on held-out prompts.

    rlrecipes run dpo --init runs/pt --out runs/dpo
    rlrecipes run dpo --task reviews --init runs/reviews-sft --pairs runs/reviews-rm/pairs.jsonl --out runs/reviews-dpo
"""

import copy
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

LOSS_TYPES = ("sigmoid", "ipo", "simpo")


@dataclass
class Config:
    init: str | None = None  # the pretrained or SFT checkpoint or run folder to start from; also the reference
    task: str = "arithmetic"  # the task to evaluate on (and to make pairs from when --pairs is not given)
    pairs: str | None = None  # JSONL file of prompt/chosen/rejected pairs, TRL's format (default: made from the task)
    n_pairs: int = 2000  # pairs to make when --pairs is not given (reviews: prompts sampled twice; ties dropped)
    steps: int = 100  # optimiser steps
    batch_size: int = 32  # pairs per step
    lr: float = 3e-4  # AdamW learning rate, constant after warm-up
    warmup_steps: int = 5  # linear warm-up
    beta: float = 0.1  # strength of the KL leash to the reference (DPO, IPO); the reward's scale (SimPO: try 2)
    loss_type: str = "sigmoid"  # sigmoid (DPO) | ipo | simpo
    label_smoothing: float = 0.0  # cDPO: the assumed fraction of flipped labels, in [0, 0.5) (sigmoid and simpo)
    simpo_gamma: float = 0.5  # SimPO's target reward margin gamma (simpo only)
    rpo_alpha: float = 1.0  # weight of the SFT loss on the chosen completions (RPO); 0 = the paper's DPO
    grad_clip: float = 1.0  # clip the global gradient norm to this
    eval_every: int = 25  # held-out accuracy every this many steps (0 = only at the end)
    seed: int = 0  # same seed, same run (on the CPU)
    device: str = "auto"  # auto | cpu | cuda | mps
    out: str | None = None  # run folder (default runs/dpo-<timestamp>)
    overwrite: bool = False  # replace whatever --out holds


def validate(cfg: Config):
    task = get_task(cfg.task)
    if not cfg.init:
        raise ValueError("dpo needs --init: a pretrained or SFT checkpoint or run folder (it is also the reference)")
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
    if not cfg.beta > 0:
        raise ValueError(f"beta={cfg.beta} must be greater than 0 (DPO's usual value is 0.1)")
    if cfg.loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type={cfg.loss_type!r} is not one of {', '.join(LOSS_TYPES)}")
    if not 0 <= cfg.label_smoothing < 0.5:
        raise ValueError(f"label_smoothing={cfg.label_smoothing} must be in [0, 0.5) (0 = plain DPO; cDPO: 0.1)")
    if cfg.loss_type == "ipo" and cfg.label_smoothing > 0:
        raise ValueError(f"label_smoothing={cfg.label_smoothing} does not apply to loss_type='ipo'; set it to 0")
    if cfg.rpo_alpha < 0:
        raise ValueError(f"rpo_alpha={cfg.rpo_alpha} must be 0 (plain DPO) or positive (RPO uses 1.0)")
    if cfg.simpo_gamma < 0:
        raise ValueError(f"simpo_gamma={cfg.simpo_gamma} must be 0 or positive (try 1.0 with --beta 2)")
    if cfg.grad_clip <= 0:
        raise ValueError(f"grad_clip={cfg.grad_clip} must be greater than 0")
    resolve_device(cfg.device)
    return task


# --- core ---
def dpo_loss(logp, ref_logp, mask, beta, loss_type="sigmoid", label_smoothing=0.0, gamma=0.0, rpo_alpha=0.0):
    """logp, ref_logp, mask: (2B, T) per completion token, the B chosen completions first, then the B rejected
    ones of the same prompts. Returns (loss, stats)."""
    seq, ref_seq = (logp * mask).sum(1), (ref_logp * mask).sum(1)  # (2B,) log pi(y | x): summed over tokens
    if loss_type in ("ipo", "simpo"):  # length-normalised: the average log-prob per token (as TRL does)
        seq, ref_seq = seq / mask.sum(1).clamp(min=1), ref_seq / mask.sum(1).clamp(min=1)
    if loss_type == "simpo":  # reference-free: the reward is the policy's own average log-prob
        ref_seq = torch.zeros_like(ref_seq)
    chosen_ratio, rejected_ratio = (seq - ref_seq).chunk(2)  # (B,), (B,) log pi/ref of chosen and rejected
    h = chosen_ratio - rejected_ratio  # (B,) how much further the policy moved to the chosen than the rejected
    if loss_type == "ipo":  # a squared loss pulls h to the finite target 1/(2 beta) instead of pushing it to infinity
        losses = (h - 1 / (2 * beta)) ** 2  # (B,)
    else:  # "sigmoid": Bradley-Terry on the implicit rewards; "simpo": the same, demanding a margin gamma
        logits = beta * h - (gamma if loss_type == "simpo" else 0.0)  # (B,)
        # cDPO: each label is wrong with probability label_smoothing, so the target is 1 - e, not 1
        losses = -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)  # (B,)
    chosen_logp, chosen_mask = logp.chunk(2)[0], mask.chunk(2)[0]  # (B, T), (B, T)
    nll = -(chosen_logp * chosen_mask).sum() / chosen_mask.sum()  # RPO: the SFT loss on the chosen tokens
    chosen_reward, rejected_reward = beta * chosen_ratio.detach(), beta * rejected_ratio.detach()  # (B,), (B,)
    stats = {
        "rewards/chosen": chosen_reward.mean(),
        "rewards/rejected": rejected_reward.mean(),
        "rewards/margins": (chosen_reward - rejected_reward).mean(),
        "rewards/accuracies": (chosen_reward > rejected_reward).float().mean(),  # share of pairs ranked right
        "logps/chosen": seq.detach().chunk(2)[0].mean(),
        "logps/rejected": seq.detach().chunk(2)[1].mean(),
        "nll_loss": nll.detach(),
    }
    return losses.mean() + rpo_alpha * nll, stats


# --- end core ---


def train(cfg: Config, run: Run | None = None) -> dict:
    task = validate(cfg)
    device = resolve_device(cfg.device)
    model, tokenizer, _, _ = load_checkpoint(cfg.init, device)
    pairs = load_pairs(cfg.pairs) if cfg.pairs else task_pairs(task, cfg.n_pairs, cfg.seed, model, tokenizer)
    prompts = [tokenizer.encode(p["prompt"], bos=True) for p in pairs]  # a character the model never saw fails here
    chosen = [tokenizer.encode(p["chosen"], eos=True) for p in pairs]
    rejected = [tokenizer.encode(p["rejected"], eos=True) for p in pairs]
    reference = copy.deepcopy(model).eval().requires_grad_(False)  # the frozen starting model (SimPO ignores it)
    standalone = run is None  # inside a pipeline the caller owns the run folder and its summary
    run = run or Run.create(cfg.out, "dpo", overwrite=cfg.overwrite)
    if standalone:
        run.write_json("config.json", {"dpo": asdict(cfg)})
    run.stage = "dpo"
    if not cfg.pairs:  # the pairs made for this run, to read or to reuse with --pairs
        save_pairs(run.dir / "pairs.jsonl", pairs)
    generator = seed_everything(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)

    t0 = time.time()
    start_accuracy = accuracy = evaluate(model, tokenizer, task)[0]
    run.log(0, **{"eval/accuracy": start_accuracy})
    bar = tqdm(range(cfg.steps), desc="dpo", dynamic_ncols=True)
    for step in bar:
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # 1. A batch of pairs, chosen and rejected packed together: 2B rows, one forward pass (TRL does the same).
        idx = torch.randint(0, len(pairs), (cfg.batch_size,), generator=generator).tolist()
        completions = [chosen[i] for i in idx] + [rejected[i] for i in idx]
        batch = pack([prompts[i] for i in idx] * 2, completions, tokenizer.pad_id, device)
        mask = batch.completion_mask[:, 1:].float()  # (2B, T-1)
        # 2. Per-token log-probs under the policy and under the frozen reference (SimPO needs none: zeros).
        logp = sequence_logprobs(model, batch)  # (2B, T-1)
        if cfg.loss_type == "simpo":
            ref_logp = torch.zeros_like(logp)
        else:
            with torch.no_grad():
                ref_logp = sequence_logprobs(reference, batch)  # (2B, T-1)
        # 3. The loss and one optimiser step.
        loss, stats = dpo_loss(
            logp, ref_logp, mask, cfg.beta, cfg.loss_type, cfg.label_smoothing, cfg.simpo_gamma, cfg.rpo_alpha
        )
        check_finite(loss, "dpo", step + 1)
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
            "pairs_seen": done * cfg.batch_size,
        }
        if (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps:
            accuracy, eval_prompts, eval_completions = evaluate(model, tokenizer, task)
            row["eval/accuracy"] = accuracy
            run.log_samples(done, eval_prompts[:8], eval_completions[:8])
        run.log(done, **row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", margin=f"{row['rewards/margins']:.2f}", acc=f"{accuracy:.2f}")
    checkpoint = run.save(model, tokenizer, cfg.steps, complete=True, config=asdict(cfg))
    keys = ["rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"]  # TRL's names
    plot_curves(run.history, keys, run.dir / "dpo.png", f"dpo on {cfg.task} (mean of 10 steps)", smooth=10)
    summary = {
        "start_accuracy": start_accuracy,
        "final_accuracy": accuracy,
        "seconds": time.time() - t0,
        "pairs": cfg.steps * cfg.batch_size,
        "checkpoint": str(checkpoint),
        **gold_summary(task, model, reference, tokenizer),  # on reviews: gold_win_rate over the starting model
    }
    if standalone:
        run.write_json("summary.json", summary)
    return {**summary, "history": run.history}


if __name__ == "__main__":
    import tyro

    train(tyro.cli(Config, description=__doc__))
