"""Supervised fine-tuning (SFT): imitate demonstrations of the task, prompt -> right answer.

    loss = -mean over completion tokens of log pi(y_t | prompt, y_<t)

The same next-token loss as pretraining, with two changes: the data are curated demonstrations
(correct sums) instead of web text, and only the completion's tokens count; the prompt is given,
not predicted. It is the first step of InstructGPT (Ouyang et al. 2022) and of every RLHF pipeline.
Here it is kept short on purpose: a few hundred demonstrations teach the format and much of the
carry, and leave mistakes for RL to fix. Compare the loss with REINFORCE's in reinforce.py: SFT is
policy gradient with every demonstration's advantage set to 1.

    rlrecipes run sft --init runs/pt --steps 150
"""

import random
import time
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from rlrecipes.lm.generate import pack, sequence_logprobs
from rlrecipes.runs import Run, check_finite, load_checkpoint, resolve_device, seed_everything
from rlrecipes.tasks import evaluate, get_task


@dataclass
class Config:
    init: str | None = None  # the pretrained checkpoint or run folder to start from (required)
    task: str = "arithmetic"  # which task's demonstrations to imitate
    steps: int = 30  # optimiser steps
    batch_size: int = 64  # demonstrations per step
    n_examples: int = 300  # distinct demonstrations (fewer = more mistakes left for RL)
    lr: float = 3e-4  # AdamW learning rate, constant after warm-up
    warmup_steps: int = 10  # linear warm-up
    grad_clip: float = 1.0  # clip the global gradient norm to this
    eval_every: int = 10  # held-out accuracy every this many steps (0 = only at the end)
    save_every: int = 10  # checkpoint every this many steps, for --resume
    seed: int = 0  # same seed, same run (on the CPU)
    device: str = "auto"  # auto | cpu | cuda | mps
    out: str | None = None  # run folder (default runs/sft-<timestamp>)
    resume: bool = False  # continue an interrupted run in --out from its last checkpoint
    overwrite: bool = False  # replace whatever --out holds


def validate(cfg: Config):
    task = get_task(cfg.task)
    if not cfg.init:
        raise ValueError("sft needs --init: a pretrained checkpoint or run folder (run `rlrecipes run pretrain` first)")
    for name in ("steps", "batch_size", "n_examples"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name}={getattr(cfg, name)} must be at least 1")
    if not cfg.lr > 0:
        raise ValueError(f"lr={cfg.lr} must be greater than 0 (try 1e-3)")
    if cfg.grad_clip <= 0:
        raise ValueError(f"grad_clip={cfg.grad_clip} must be greater than 0")
    resolve_device(cfg.device)
    return task


# --- core ---
def sft_loss(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of the demonstration's completion tokens.
    logp: (B, T) log-probs of the actual next tokens; mask: (B, T) 1 on completion tokens (EOS included)."""
    return -(logp * mask).sum() / mask.sum()  # mean over every completion token in the batch


# --- end core ---


def train(cfg: Config, run: Run | None = None) -> dict:
    task = validate(cfg)
    device = resolve_device(cfg.device)
    model, tokenizer, _, _ = load_checkpoint(cfg.init, device)
    standalone = run is None  # inside `rlrecipes bake` the bake owns the run folder and its summary
    run = run or Run.create(cfg.out, "sft", cfg.resume, cfg.overwrite)
    if standalone:
        run.write_json("config.json", {"sft": asdict(cfg)})
    run.stage = "sft"
    generator = seed_everything(cfg.seed)
    examples = task.sft_examples(cfg.n_examples, random.Random(cfg.seed))
    prompts = [tokenizer.encode(p, bos=True) for p, _ in examples]
    completions = [tokenizer.encode(c, eos=True) for _, c in examples]
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    start = run.resume(model, optimizer, generator) if cfg.resume else 0

    t0, accuracy = time.time(), None
    start_accuracy = None
    if start == 0:
        start_accuracy = evaluate(model, tokenizer, task)[0]
        run.log(0, **{"eval/accuracy": start_accuracy})
    bar = tqdm(range(start, cfg.steps), desc="sft", initial=start, total=cfg.steps, dynamic_ncols=True)
    done = start
    try:
        for step in bar:
            lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            idx = torch.randint(0, len(examples), (cfg.batch_size,), generator=generator).tolist()
            batch = pack([prompts[i] for i in idx], [completions[i] for i in idx], tokenizer.pad_id, device)
            mask = batch.completion_mask[:, 1:].float()  # (B, T-1)
            loss = sft_loss(sequence_logprobs(model, batch), mask)
            check_finite(loss, "sft", step + 1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            done = step + 1
            row = {"loss": loss.item(), "grad_norm": grad_norm.item(), "learning_rate": lr}
            if (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps:
                accuracy, eval_prompts, eval_completions = evaluate(model, tokenizer, task)
                row["eval/accuracy"] = accuracy
                run.log_samples(done, eval_prompts[:8], eval_completions[:8])
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
    summary = {
        "start_accuracy": start_accuracy,
        "final_accuracy": accuracy,
        "seconds": time.time() - t0,
        "checkpoint": str(checkpoint),
    }
    if standalone:
        run.write_json("summary.json", summary)
    return {**summary, "history": run.history}
