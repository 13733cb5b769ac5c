"""Reward model: turn "I prefer this one" into a number, with the Bradley-Terry loss.

Nobody can write down the reward of "a good review", but a person can say which of two reviews is
better. A reward model learns a score r(prompt, completion) from such comparisons: the SFT model with a
scalar head (nn.Linear(n_embd, 1)) reading its hidden state at the completion's last token (EOS), trained
so that the chosen completion of each pair outscores the rejected one:

    P(chosen > rejected) = sigmoid(r_chosen - r_rejected)          (Bradley and Terry 1952)
    loss = -mean log sigmoid(r_chosen - r_rejected)

Only differences of r are learned, so r has no natural zero: the checkpoint records the mean and std of
r on SFT completions, and `load_reward_model` returns scores standardised with them.

The data: K samples of the SFT model per prompt, every two of them compared by the task's hidden gold
judge through a noisy Bradley-Terry draw (`preferences.sample_pairs`), as a tired annotator would. As
in InstructGPT, all K(K-1)/2 pairs of a prompt share a batch and each completion is scored once. The
held-out accuracy is measured against the judge's true ordering, on pairs of held-out prompts; a
bag-of-characters logistic regression trained on the same pairs is the baseline to beat. Simplified:
each pair is an independent draw (a real annotator ranks the K at once); no margin term, no
reward-centring loss (TRL's `center_rewards_coefficient`).
Stiennon et al. 2020 (Learning to summarize from human feedback); Ouyang et al. 2022 (InstructGPT).

    rlrecipes run reward_model --init runs/sft-reviews/ --task reviews --out runs/rm-reviews
"""

import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from rlrecipes.lm.generate import Samples, pack
from rlrecipes.lm.model import TinyGPT
from rlrecipes.plots import plot_calibration
from rlrecipes.preferences import group_by_prompt, load_pairs, sample_pairs, save_pairs
from rlrecipes.runs import (
    CheckpointError,
    Run,
    check_finite,
    load_checkpoint,
    resolve_checkpoint,
    resolve_device,
    save_checkpoint,
    seed_everything,
)
from rlrecipes.tasks import get_task


@dataclass
class Config:
    init: str | None = (
        None  # the SFT checkpoint or run folder (required): the backbone, and the model whose samples are compared
    )
    task: str = "reviews"  # whose prompts, and whose reward plays the hidden gold judge that labels the pairs
    pairs: str | None = (
        None  # JSONL file of training pairs {"prompt", "chosen", "rejected"}; default: sample and label them
    )
    n_prompts: int = 2000  # training prompts to sample completions for (when --pairs is not given)
    completions_per_prompt: int = (
        4  # K samples per training prompt, every two of them compared: K(K-1)/2 pairs (InstructGPT: 4 to 9)
    )
    heldout_samples: int = 16  # independent pairs sampled per held-out prompt, to measure held-out accuracy
    label_temperature: float = 0.1  # the simulated annotator's Bradley-Terry temperature: larger = noisier labels
    sample_temperature: float = 1.0  # sampling temperature of the SFT model when making pairs
    epochs: int = 2  # passes over the training pairs
    batch_size: int = (
        8  # prompts per step, each with all its pairs: a completion is scored once for all its comparisons
    )
    lr: float = 1e-3  # peak AdamW learning rate, backbone and head; decays linearly to 0 (TRL's default schedule)
    warmup_steps: int = 10  # linear warm-up
    grad_clip: float = 1.0  # clip the global gradient norm to this
    baseline_steps: int = 300  # full-batch steps of the bag-of-characters baseline (0 = skip it)
    eval_every: int = 100  # held-out accuracy every this many steps (0 = only at the end)
    seed: int = 0  # same seed, same run (on the CPU)
    device: str = "auto"  # auto | cpu | cuda | mps
    out: str | None = None  # run folder (default runs/reward_model-<timestamp>)
    overwrite: bool = False  # replace whatever --out holds


def validate(cfg: Config):
    task = get_task(cfg.task)
    if not cfg.init:
        raise ValueError("reward_model needs --init: the SFT checkpoint or run folder whose samples it learns to rank")
    if str(cfg.init).startswith("hf:"):
        raise ValueError(
            f"init={cfg.init!r}: the reward model's head is saved in a TinyGPT checkpoint; use an rlrecipes one"
        )
    if cfg.completions_per_prompt < 2:
        raise ValueError(
            f"completions_per_prompt={cfg.completions_per_prompt} must be at least 2: a comparison needs two"
        )
    for name in ("n_prompts", "heldout_samples", "epochs", "batch_size"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name}={getattr(cfg, name)} must be at least 1")
    for name in ("baseline_steps", "eval_every", "warmup_steps"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"{name}={getattr(cfg, name)} must be 0 or more")
    for name in ("lr", "label_temperature", "sample_temperature", "grad_clip"):
        if not getattr(cfg, name) > 0:
            raise ValueError(f"{name}={getattr(cfg, name)} must be greater than 0")
    if cfg.pairs:
        load_pairs(cfg.pairs)  # a missing or malformed file fails now, naming the line
    resolve_device(cfg.device)
    return task


# --- core ---
def last_token_scores(hidden: torch.Tensor, attention_mask: torch.Tensor, head: nn.Linear) -> torch.Tensor:
    """The head's score of each sequence, read at its last real token (the EOS that ends the completion).
    hidden: (B, T, C) final hidden states; attention_mask: (B, T), rows right-padded after the completion."""
    last = attention_mask.shape[1] - 1 - attention_mask.flip(1).argmax(1)  # (B,) column of the last 1
    h = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, C)
    return head(h).squeeze(-1)  # (B,)


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor):
    """-log P(chosen > rejected) under Bradley-Terry, P = sigmoid(r_chosen - r_rejected). r_*: (B,)."""
    margin = r_chosen - r_rejected  # (B,) only differences matter: adding a constant to r changes nothing
    loss = -F.logsigmoid(margin).mean()  # log 2 when the model cannot tell the two apart
    stats = {"accuracy": (margin > 0).float().mean(), "margin": margin.mean()}
    return loss, stats


# --- end core ---


def encode(tokenizer, prompts: list[str], completions: list[str], context_len: int, device) -> Samples:
    """<bos> prompt completion <eos>, in generate's layout; a completion too long for the context is cut, EOS kept."""
    p_ids = [tokenizer.encode(p, bos=True) for p in prompts]
    c_ids = [
        tokenizer.encode(c)[: max(context_len - len(p) - 1, 0)] + [tokenizer.eos_id] for p, c in zip(p_ids, completions)
    ]
    return pack(p_ids, c_ids, tokenizer.pad_id, device)


def score(model, head, tokenizer, prompts: list[str], completions: list[str], batch_size: int = 256) -> torch.Tensor:
    """Raw reward-model scores (N,), in batches; gradients flow when called outside no_grad."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(prompts), batch_size):
        batch = encode(
            tokenizer, prompts[i : i + batch_size], completions[i : i + batch_size], model.cfg.context_len, device
        )
        _, hidden = model(batch.input_ids, attention_mask=batch.attention_mask, return_hidden=True)
        out.append(last_token_scores(hidden, batch.attention_mask, head))
    return torch.cat(out)


def gold_accuracy(judge, pairs: list[dict], margins: torch.Tensor) -> float:
    """Share of pairs the scores order as the gold judge does (pairs the judge ties are left out)."""
    prompts = [p["prompt"] for p in pairs]
    gold_margin = torch.tensor(judge(prompts, [p["chosen"] for p in pairs])) - torch.tensor(
        judge(prompts, [p["rejected"] for p in pairs])
    )
    decided = gold_margin != 0
    return ((margins.cpu().sign() == gold_margin.sign()) & decided).sum().item() / max(decided.sum().item(), 1)


def bag_of_chars(tokenizer, completions: list[str]) -> torch.Tensor:
    """(N, V) character counts of each completion: everything a model that ignores order can see."""
    x = torch.zeros(len(completions), tokenizer.vocab_size)
    for i, c in enumerate(completions):
        x[i].index_add_(0, torch.tensor(tokenizer.encode(c), dtype=torch.long), torch.ones(len(c)))
    return x


def train_baseline(tokenizer, pairs: list[dict], heldout: list[dict], judge, steps: int) -> float:
    """Bag-of-characters logistic regression, r = w . counts, trained with the same Bradley-Terry loss.
    Returns its held-out accuracy against the gold ordering."""
    xc = bag_of_chars(tokenizer, [p["chosen"] for p in pairs])  # (N, V)
    xr = bag_of_chars(tokenizer, [p["rejected"] for p in pairs])  # (N, V)
    w = torch.zeros(tokenizer.vocab_size, requires_grad=True)
    optimizer = torch.optim.Adam([w], lr=0.05)
    for _ in range(steps):  # full batch: ten thousand pairs x 34 features is nothing
        loss, _ = bradley_terry_loss(xc @ w, xr @ w)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    hc = bag_of_chars(tokenizer, [p["chosen"] for p in heldout])
    hr = bag_of_chars(tokenizer, [p["rejected"] for p in heldout])
    return gold_accuracy(judge, heldout, ((hc - hr) @ w).detach())


def calibration(margins: torch.Tensor, n_bins: int = 10) -> tuple[list[dict], float]:
    """Predicted P(chosen > rejected) = sigmoid(margin), binned, against how often the label agreed.
    Each pair is counted both ways round ((p, chosen won) and (1 - p, it lost)), so the outcomes are not all 1.
    Returns the bins and the expected calibration error (the count-weighted mean gap)."""
    p = torch.sigmoid(margins.cpu())
    p, outcome = torch.cat([p, 1 - p]), torch.cat([torch.ones_like(p), torch.zeros_like(p)])
    bins, ece = [], 0.0
    for k in range(n_bins):
        inside = (p >= k / n_bins) & ((p < (k + 1) / n_bins) if k < n_bins - 1 else (p <= 1))
        if inside.any():
            predicted, observed, count = p[inside].mean().item(), outcome[inside].mean().item(), int(inside.sum())
            bins.append({"predicted": predicted, "observed": observed, "count": count})
            ece += count / len(p) * abs(predicted - observed)
    return bins, ece


def train(cfg: Config, run: Run | None = None) -> dict:
    task = validate(cfg)
    device = resolve_device(cfg.device)
    model, tokenizer, _, _ = load_checkpoint(cfg.init, device)
    standalone = run is None  # inside a pipeline the caller owns the run folder and its summary
    run = run or Run.create(cfg.out, "reward_model", overwrite=cfg.overwrite)
    if standalone:
        run.write_json("config.json", {"reward_model": asdict(cfg)})
    run.stage = "reward_model"
    generator = seed_everything(cfg.seed)
    rng = random.Random(cfg.seed)
    t0 = time.time()

    # 1. Preference data: the SFT model's own samples, judged by the hidden gold judge through a noisy draw.
    if cfg.pairs:
        pairs, label_stats = load_pairs(cfg.pairs), {}
    else:
        prompts = task.train_prompts(cfg.n_prompts, rng)
        pairs, label_stats = sample_pairs(model, tokenizer, task, prompts, cfg.completions_per_prompt,
                                          cfg.sample_temperature, cfg.label_temperature, generator, rng)  # fmt: skip
    heldout, heldout_stats = sample_pairs(model, tokenizer, task, task.heldout_prompts() * cfg.heldout_samples, 2,
                                          cfg.sample_temperature, cfg.label_temperature, generator, rng)  # fmt: skip
    if not pairs or not heldout:
        raise ValueError("no usable pairs: every sampled pair was a tie; raise --n-prompts or --sample-temperature")
    save_pairs(run.dir / "pairs.jsonl", pairs)
    save_pairs(run.dir / "heldout_pairs.jsonl", heldout)
    agree = gold_accuracy(task.reward, pairs, torch.ones(len(pairs)))  # share of labels that follow the gold order
    label_noise = 1 - agree  # measured on any pairs, sampled here or loaded from --pairs

    # 2. The model: the SFT backbone plus a scalar head, zero at the start (every score 0, the loss log 2).
    head = nn.Linear(model.cfg.n_embd, 1).to(device)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    params = [*model.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    groups = group_by_prompt(pairs)
    steps = cfg.epochs * math.ceil(len(groups) / cfg.batch_size)

    def evaluate_heldout() -> tuple[float, torch.Tensor]:
        """Gold accuracy on the held-out pairs, and the scores (2, N) of their chosen and rejected completions."""
        model.eval()
        with torch.no_grad():
            prompts = [p["prompt"] for p in heldout]
            r = score(
                model, head, tokenizer, prompts * 2, [p["chosen"] for p in heldout] + [p["rejected"] for p in heldout]
            )
        model.train()
        r = r.view(2, -1)  # (2, N): chosen, rejected
        return gold_accuracy(task.reward, heldout, r[0] - r[1]), r

    accuracy = None
    bar = tqdm(range(steps), desc="reward_model", dynamic_ncols=True)
    order = []
    model.train()
    for step in bar:
        lr = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps, 1)) * (1 - step / steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if not order:  # a fresh shuffle of the prompts each epoch
            order = torch.randperm(len(groups), generator=generator).tolist()
        batch = [pair for i in order[: cfg.batch_size] for pair in groups[i]]
        order = order[cfg.batch_size :]
        # Each distinct completion is scored once, however many comparisons it is in (InstructGPT's trick:
        # K(K-1)/2 pairs for the price of K forward passes, and no overfitting to a completion seen in many pairs).
        texts = list(dict.fromkeys((p["prompt"], c) for p in batch for c in (p["chosen"], p["rejected"])))
        index = {t: i for i, t in enumerate(texts)}
        r = score(model, head, tokenizer, [t[0] for t in texts], [t[1] for t in texts])  # (U,)
        r_chosen = r[[index[p["prompt"], p["chosen"]] for p in batch]]  # (B,)
        r_rejected = r[[index[p["prompt"], p["rejected"]] for p in batch]]  # (B,)
        loss, stats = bradley_terry_loss(r_chosen, r_rejected)
        check_finite(loss, "reward_model", step + 1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        done = step + 1
        row = {
            "loss": loss.item(),
            "accuracy": stats["accuracy"].item(),  # agreement with the (noisy) labels of this batch
            "margin": stats["margin"].item(),
            "rewards/chosen": r_chosen.mean().item(),
            "rewards/rejected": r_rejected.mean().item(),
            "grad_norm": grad_norm.item(),
            "learning_rate": lr,
        }
        if (cfg.eval_every and done % cfg.eval_every == 0) or done == steps:
            accuracy, heldout_scores = evaluate_heldout()
            row["eval/accuracy"] = accuracy
        run.log(done, **row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", acc="-" if accuracy is None else f"{accuracy:.2f}")

    # 3. Held-out numbers, the calibration plot, the baseline, and the checkpoint with the head inside.
    margins = heldout_scores[0] - heldout_scores[1]  # (N,)
    bins, ece = calibration(margins)
    plot_calibration(bins, run.dir / "calibration.png", f"reward model on held-out pairs ({cfg.task})")
    baseline = (
        train_baseline(tokenizer, pairs, heldout, task.reward, cfg.baseline_steps) if cfg.baseline_steps else None
    )
    # The scale of r on SFT completions (of held-out prompts), so that users can standardise it.
    state = {"stage": "reward_model", "step": steps, "complete": True, "config": asdict(cfg),
             "score_mean": heldout_scores.mean().item(), "score_std": heldout_scores.std().item()}  # fmt: skip
    head_tensors = {"reward_head.weight": head.weight, "reward_head.bias": head.bias}
    checkpoint = save_checkpoint(run.dir / "reward_model", model, tokenizer, state, extra_tensors=head_tensors)
    summary = {
        "heldout_accuracy": accuracy,  # against the gold judge's ordering, on held-out prompts
        "heldout_label_accuracy": (margins > 0).float().mean().item(),  # against the noisy labels
        "baseline_heldout_accuracy": baseline,  # bag-of-characters logistic regression, same pairs
        "label_noise": label_noise,
        "expected_label_noise": label_stats.get("expected_label_noise"),
        "heldout_label_noise": heldout_stats["label_noise"],
        "ties_dropped": label_stats.get("ties_dropped"),
        "n_pairs": len(pairs),
        "n_heldout_pairs": len(heldout),
        "calibration_error": ece,
        "calibration": bins,
        "score_mean": state["score_mean"],
        "score_std": state["score_std"],
        "steps": steps,
        "final_accuracy": accuracy,  # what `rlrecipes run` prints: here the held-out pairwise accuracy
        "seconds": time.time() - t0,
        "checkpoint": str(checkpoint),
    }
    if standalone:
        run.write_json("summary.json", summary)
    return {**summary, "history": run.history}


def load_reward_model(path: str | Path, device="cpu", standardize: bool = True):
    """A trained reward model as a reward function: `reward(prompts, completions) -> list[float]`, the
    signature of a task's reward, so any recipe can optimise it. `path` is a reward_model run folder or
    its checkpoint. With `standardize`, scores are (r - mean) / std of r over the SFT model's completions
    of the held-out prompts: about 0 for a typical SFT completion, +1 for one a standard deviation better."""
    path = Path(path)
    path = resolve_checkpoint(path / "reward_model.safetensors" if path.is_dir() else path)
    model, tokenizer, state, extra = load_checkpoint(path, device)
    if "reward_head.weight" not in extra or "reward_head.bias" not in extra or not isinstance(model, TinyGPT):
        raise CheckpointError(
            f"{path} holds no reward head (reward_head.weight): train one with `rlrecipes run reward_model`"
        )
    head = nn.Linear(model.cfg.n_embd, 1).to(device)
    head.load_state_dict({"weight": extra["reward_head.weight"], "bias": extra["reward_head.bias"]})
    model.eval().requires_grad_(False)
    head.requires_grad_(False)
    mean, std = (state.get("score_mean", 0.0), state.get("score_std", 1.0)) if standardize else (0.0, 1.0)

    def reward(prompts: list[str], completions: list[str]) -> list[float]:
        with torch.no_grad():
            r = score(model, head, tokenizer, list(prompts), list(completions))
        return ((r - mean) / max(std, 1e-6)).tolist()

    reward.tokenizer = tokenizer  # so a caller can check it shares the policy's characters
    return reward


if __name__ == "__main__":
    import tyro

    train(tyro.cli(Config))
