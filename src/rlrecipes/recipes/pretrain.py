"""Pretraining: teach TinyGPT to continue text by predicting every next character.

    loss = -mean_t log p(x_t | x_<t)        over every token of every document in the batch

This is all a base model ever learns: the statistics of its corpus, mistakes included. The corpus is
the task's "web text" (for arithmetic: sums in which carries are often forgotten), so the base model
inherits the corpus's habits; SFT and RL have to unlearn them. Radford et al. (2018, 2019), GPT / GPT-2;
the model and loop follow Karpathy's nanoGPT.

    rlrecipes run pretrain --task arithmetic --steps 1200
"""

import math
import random
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from rlrecipes.lm.model import GPTConfig, TinyGPT
from rlrecipes.lm.tokenizer import CharTokenizer
from rlrecipes.runs import Run, check_finite, load_checkpoint, resolve_device, seed_everything
from rlrecipes.tasks import evaluate, get_task


@dataclass
class Config:
    task: str = "arithmetic"  # which task's corpus to pretrain on
    steps: int = 1000  # optimiser steps
    batch_size: int = 64  # documents per step
    lr: float = 3e-3  # peak learning rate (AdamW); small models tolerate a high one
    warmup_steps: int = 50  # linear warm-up from 0 to lr
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # clip the global gradient norm to this
    n_documents: int = 100_000  # documents generated for the corpus
    context_len: int = 32  # the model's context length; longer documents are cut into pieces
    n_layer: int = 3  # transformer blocks
    n_head: int = 4  # attention heads
    n_embd: int = 96  # width of the residual stream
    eval_every: int = 200  # held-out accuracy every this many steps (0 = only at the end)
    save_every: int = 200  # checkpoint every this many steps, for --resume
    seed: int = 0  # same seed, same run (on the CPU)
    device: str = "auto"  # auto | cpu | cuda | mps
    init: str | None = None  # continue pretraining from this checkpoint or run folder
    out: str | None = None  # run folder (default runs/pretrain-<timestamp>)
    resume: bool = False  # continue an interrupted run in --out from its last checkpoint
    overwrite: bool = False  # replace whatever --out holds


def validate(cfg: Config):
    task = get_task(cfg.task)
    for name in ("steps", "batch_size", "n_documents"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name}={getattr(cfg, name)} must be at least 1")
    if not cfg.lr > 0:
        raise ValueError(f"lr={cfg.lr} must be greater than 0 (try 3e-3)")
    if not 0 <= cfg.min_lr_ratio <= 1:
        raise ValueError(f"min_lr_ratio={cfg.min_lr_ratio} must be in [0, 1]")
    if cfg.grad_clip <= 0:
        raise ValueError(f"grad_clip={cfg.grad_clip} must be greater than 0")
    need = task.max_prompt_chars + task.max_completion_chars + 2  # + BOS and EOS
    if cfg.context_len < need:
        raise ValueError(f"context_len={cfg.context_len} is too short for task {task.name!r}: need at least {need}")
    GPTConfig(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, context_len=cfg.context_len)
    resolve_device(cfg.device)
    return task


# --- core ---
def lr_at(step: int, total: int, lr: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up, then cosine decay to lr * min_ratio (the GPT-2/3 schedule)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Cross-entropy of every next token: logits (B, T, V), targets (B, T) = inputs shifted by one.
    Padding after a document's EOS is not a token to predict."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=pad_id)  # mean over real tokens


# --- end core ---


def build_corpus(task, tokenizer: CharTokenizer, n_documents: int, context_len: int, seed: int) -> torch.Tensor:
    """Every document as <bos> text <eos>, one per row, right-padded: (N, context_len + 1).
    Each document starts at position 0, as prompts do at evaluation; a long one is cut into pieces."""
    rows = []
    for doc in task.pretrain_documents(n_documents, random.Random(seed)):
        ids = tokenizer.encode(doc, bos=True, eos=True)
        rows += [ids[i : i + context_len + 1] for i in range(0, max(len(ids) - 1, 1), context_len)]
    corpus = torch.full((len(rows), context_len + 1), tokenizer.pad_id, dtype=torch.long)
    for i, ids in enumerate(rows):
        corpus[i, : len(ids)] = torch.tensor(ids)
    return corpus


def train(cfg: Config, run: Run | None = None) -> dict:
    task = validate(cfg)
    device = resolve_device(cfg.device)
    standalone = run is None  # inside `rlrecipes bake` the bake owns the run folder and its summary
    run = run or Run.create(cfg.out, "pretrain", cfg.resume, cfg.overwrite)
    if standalone:
        run.write_json("config.json", {"pretrain": asdict(cfg)})
    run.stage = "pretrain"
    generator = seed_everything(cfg.seed)
    if cfg.init:
        model, tokenizer, _, _ = load_checkpoint(cfg.init, device)
        tokenizer.encode(task.alphabet)  # a clear error if the task needs a character the model lacks
    else:
        tokenizer = CharTokenizer(task.alphabet)
        model_cfg = GPTConfig(tokenizer.vocab_size, cfg.context_len, cfg.n_layer, cfg.n_head, cfg.n_embd)
        model = TinyGPT(model_cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    start = run.resume(model, optimizer, generator) if cfg.resume else 0
    corpus = build_corpus(task, tokenizer, cfg.n_documents, model.cfg.context_len, cfg.seed)
    corpus = corpus[:, : int((corpus != tokenizer.pad_id).sum(1).max())]  # no column that is padding only

    t0, accuracy = time.time(), None
    bar = tqdm(range(start, cfg.steps), desc="pretrain", initial=start, total=cfg.steps, dynamic_ncols=True)
    done = start
    try:
        for step in bar:
            lr = lr_at(step, cfg.steps, cfg.lr, cfg.warmup_steps, cfg.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            rows = corpus[torch.randint(0, len(corpus), (cfg.batch_size,), generator=generator)].to(
                device
            )  # (B, T + 1)
            loss = next_token_loss(model(rows[:, :-1]), rows[:, 1:], tokenizer.pad_id)
            check_finite(loss, "pretrain", step + 1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            done = step + 1
            row = {"loss": loss.item(), "grad_norm": grad_norm.item(), "learning_rate": lr}
            if (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps:
                accuracy, prompts, completions = evaluate(model, tokenizer, task)
                row["eval/accuracy"] = accuracy
                run.log_samples(done, prompts[:8], completions[:8])
            run.log(done, **row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", acc="-" if accuracy is None else f"{accuracy:.2f}")
            if cfg.save_every and done % cfg.save_every == 0 and done < cfg.steps:
                run.save(model, tokenizer, done, complete=False, optimizer=optimizer, generator=generator)
    except KeyboardInterrupt:
        bar.close()
        run.save(model, tokenizer, done, complete=False, optimizer=optimizer, generator=generator)
        raise
    if accuracy is None:  # resumed a run whose steps were all done
        accuracy = evaluate(model, tokenizer, task)[0]
    checkpoint = run.save(model, tokenizer, cfg.steps, complete=True, config=asdict(cfg))
    summary = {"final_accuracy": accuracy, "seconds": time.time() - t0, "checkpoint": str(checkpoint)}
    if standalone:
        run.write_json("summary.json", summary)
    return {**summary, "history": run.history}
