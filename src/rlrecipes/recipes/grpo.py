"""GRPO: Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath, arXiv:2402.03300).

For each prompt, sample a group of G completions and score them. A completion's advantage is how much
better it did than its own group:

    adv_i = (r_i - mean(r_group)) / (std(r_group) + eps)          (no value network, unlike PPO)

then push up the log-probability of every token of better-than-average completions, and down for
worse ones, through PPO's clipped importance ratio, optionally held near a frozen reference with KL:

    loss = -mean_seq mean_tok [ min(ratio * adv, clip(ratio, 1 - eps, 1 + eps) * adv) - beta * KL_k3 ]
    ratio = pi(token) / pi_old(token)

A group whose rewards are all equal has zero advantage everywhere: it teaches nothing. That is why
the task must leave the SFT model right sometimes and wrong sometimes. Simplified here: one
optimisation pass per batch by default (so ratio = 1 and the clip is inactive unless
--updates-per-batch > 1); the variants (Dr. GRPO, DAPO, GSPO) come as flags in a later chapter.

    rlrecipes run grpo --init runs/bake/sft.safetensors --steps 100 --group-size 8
"""

import copy
import random
import time
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from rlrecipes.lm.generate import generate, sequence_logprobs
from rlrecipes.lm.kl import kl_k3
from rlrecipes.rewards import check_reward_spec, get_reward, gold_judge, gold_summary
from rlrecipes.runs import Run, check_finite, load_checkpoint, resolve_device, seed_everything
from rlrecipes.tasks import evaluate, get_task

LOSS_TYPES = ("grpo", "dapo", "dr_grpo")


@dataclass
class Config:
    init: str | None = None  # the SFT checkpoint or run folder to start from (required)
    task: str = "arithmetic"  # which task's prompts (and reward, unless --reward names another)
    reward: str = "task"  # task | reward-model:RUN_DIR (RLHF: optimise a learned reward model; see rewards.py)
    steps: int = 60  # RL steps, each one batch of fresh samples
    batch_size: int = 32  # prompts per step
    group_size: int = 8  # completions sampled per prompt (G); at least 2 to have a baseline
    lr: float = 3e-4  # AdamW learning rate
    clip_eps: float = 0.2  # PPO clip range for the importance ratio: [1 - clip_eps, 1 + clip_eps_high]
    clip_eps_high: float | None = None  # upper clip; DAPO's "clip-higher" uses 0.28 (None = clip_eps)
    beta: float = 0.0  # weight of the k3 KL penalty to the frozen starting model (0 = off, TRL's default)
    updates_per_batch: int = 1  # optimisation passes over each batch of samples (mu in the paper)
    scale_rewards: bool = True  # divide advantages by the group's reward std (Dr. GRPO: False)
    loss_type: str = (
        "grpo"  # how token losses are averaged: grpo (per completion) | dapo (per token) | dr_grpo (constant)
    )
    importance_sampling_level: str = "token"  # token | sequence (GSPO: one ratio per completion)
    drop_zero_std_groups: bool = False  # DAPO's dynamic sampling, simplified: skip groups whose rewards all agree
    temperature: float = 1.0  # sampling temperature for rollouts
    grad_clip: float = 1.0  # clip the global gradient norm to this
    eval_every: int = 20  # held-out accuracy every this many steps (0 = only at the end)
    sample_every: int = 10  # write a few sampled completions to samples.jsonl every this many steps
    kl_every: int = 10  # with beta = 0, measure kl (a reference forward) on step 1, the last and every this many
    save_every: int = 0  # also keep a checkpoint every this many steps, grpo-step-NNNN (0 = only the last)
    seed: int = 0  # same seed, same run (on the CPU)
    device: str = "auto"  # auto | cpu | cuda | mps
    out: str | None = None  # run folder (default runs/grpo-<timestamp>)
    overwrite: bool = False  # replace whatever --out holds


def validate(cfg: Config):
    task = get_task(cfg.task)
    check_reward_spec(cfg.reward)
    if not cfg.init:
        raise ValueError("grpo needs --init: an SFT (or pretrained) checkpoint or run folder")
    for name in ("steps", "batch_size", "updates_per_batch"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name}={getattr(cfg, name)} must be at least 1")
    if cfg.group_size < 2:
        raise ValueError(f"group_size={cfg.group_size} must be at least 2: the group mean is the baseline")
    if not cfg.lr > 0:
        raise ValueError(f"lr={cfg.lr} must be greater than 0 (try 3e-4)")
    if not 0 < cfg.clip_eps < 1:
        raise ValueError(f"clip_eps={cfg.clip_eps} must be in (0, 1) (the usual value is 0.2)")
    if cfg.clip_eps_high is not None and not cfg.clip_eps <= cfg.clip_eps_high < 1:
        raise ValueError(f"clip_eps_high={cfg.clip_eps_high} must be in [clip_eps, 1) (DAPO uses 0.28)")
    if cfg.loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type={cfg.loss_type!r} is not one of {', '.join(LOSS_TYPES)}")
    if cfg.importance_sampling_level not in ("token", "sequence"):
        raise ValueError(f"importance_sampling_level={cfg.importance_sampling_level!r} must be 'token' or 'sequence'")
    if cfg.beta < 0:
        raise ValueError(f"beta={cfg.beta} must be 0 (no KL penalty) or positive")
    if not cfg.temperature > 0:
        raise ValueError(f"temperature={cfg.temperature} must be greater than 0")
    if cfg.kl_every < 0:
        raise ValueError(f"kl_every={cfg.kl_every} must be 0 (kl on step 1 and the last only) or positive")
    if cfg.save_every < 0:
        raise ValueError(f"save_every={cfg.save_every} must be 0 (only the final checkpoint) or positive")
    resolve_device(cfg.device)
    return task


# --- core ---
def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """Each completion's reward relative to the other completions of the same prompt."""
    r = rewards.view(-1, group_size)  # (B, G): one row per prompt
    adv = r - r.mean(1, keepdim=True)  # (B, G) the group mean is the baseline
    if scale:  # Dr. GRPO turns this off: dividing by the std up-weights groups that nearly agree
        adv = adv / (r.std(1, keepdim=True) + eps)
    return adv.flatten()  # (B * G,)


def grpo_loss(
    logp, old_logp, ref_logp, adv, mask, clip_low, clip_high, beta, loss_type="grpo", level="token", max_len=1
):
    """logp, old_logp, ref_logp, mask: (N, T) per completion token; adv: (N,). Returns (loss, stats)."""
    log_ratio = logp - old_logp  # (N, T) log pi / pi_old, 0 on the first pass over a batch
    if level == "sequence":  # GSPO: one ratio per completion, the geometric mean of its tokens' ratios
        log_ratio = ((log_ratio * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1)).expand_as(logp)
    ratio, adv = torch.exp(log_ratio), adv[:, None]  # (N, T), (N, 1): a completion's tokens share its advantage
    surrogate = torch.min(ratio * adv, ratio.clamp(1 - clip_low, 1 + clip_high) * adv)  # (N, T) pessimistic bound
    kl = kl_k3(logp, ref_logp)  # (N, T) >= 0, unbiased estimate of KL(pi || ref)
    per_token = (-surrogate + beta * kl) * mask  # (N, T)
    if loss_type == "grpo":  # mean over each completion's tokens, then over completions (the paper)
        loss = (per_token.sum(1) / mask.sum(1).clamp(min=1)).mean()
    elif loss_type == "dapo":  # mean over every token of the batch: a long completion is not diluted
        loss = per_token.sum() / mask.sum().clamp(min=1)
    else:  # "dr_grpo": divide by a constant (completions x max length): no length bias at all
        loss = per_token.sum() / (mask.shape[0] * max_len)
    clipped = ((ratio < 1 - clip_low) & (adv < 0)) | ((ratio > 1 + clip_high) & (adv > 0))  # (N, T) no gradient
    n_tokens = mask.sum().clamp(min=1)
    stats = {"kl": (kl * mask).sum() / n_tokens, "clip_ratio": (clipped * mask).sum() / n_tokens}
    return loss, stats


# --- end core ---


def train(cfg: Config, run: Run | None = None) -> dict:
    task = validate(cfg)
    device = resolve_device(cfg.device)
    model, tokenizer, _, _ = load_checkpoint(cfg.init, device)
    reward_fn = get_reward(cfg.reward, task, tokenizer, device)  # before the run folder: a bad one fails first
    gold_fn = gold_judge(cfg.reward, task)  # with a reward model: the task's own reward, to grade it
    reference = copy.deepcopy(model).eval().requires_grad_(False)  # frozen: the KL anchor and a metric
    standalone = run is None  # inside `rlrecipes bake` the bake owns the run folder and its summary
    run = run or Run.create(cfg.out, "grpo", overwrite=cfg.overwrite)
    if standalone:
        run.write_json("config.json", {"grpo": asdict(cfg)})
    run.stage = "grpo"
    generator = seed_everything(cfg.seed)
    prompt_rng = random.Random(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    max_new_tokens = task.max_completion_chars + 2  # room to overshoot, so a long wrong answer can be punished

    t0 = time.time()
    start_accuracy = accuracy = evaluate(model, tokenizer, task)[0]
    run.log(0, **{"eval/accuracy": start_accuracy})
    bar = tqdm(range(cfg.steps), desc="grpo", dynamic_ncols=True)
    step = 0
    try:
        for step in bar:
            # 1. Rollout: G samples for each prompt, from the current policy.
            prompts = [p for p in task.train_prompts(cfg.batch_size, prompt_rng) for _ in range(cfg.group_size)]
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
            # 2. Score, and turn scores into advantages within each group.
            rewards = torch.tensor(reward_fn(prompts, completions), device=device)  # (B * G,)
            adv = group_advantages(rewards, cfg.group_size, cfg.scale_rewards)
            group_std = rewards.view(-1, cfg.group_size).std(1)  # (B,)
            lengths = samples.completion_lengths.float()
            keep = (group_std > 0).repeat_interleave(cfg.group_size)  # (B * G,) groups that teach something
            if cfg.drop_zero_std_groups and keep.any():  # all-equal groups have zero advantage: they only dilute
                samples, adv = samples.select(keep), adv[keep]
            mask = samples.completion_mask[:, 1:].float()  # (N, T-1)
            # With beta = 0 the KL term weighs nothing in the loss: the reference forward (a fifth of a step) only
            # feeds the `kl` metric, and TRL skips it. We pay for it on a few steps and log kl on those only.
            done = step + 1
            measure_kl = cfg.beta > 0 or done in (1, cfg.steps) or (cfg.kl_every and done % cfg.kl_every == 0)
            with torch.no_grad():
                ref_logp = sequence_logprobs(reference, samples) if measure_kl else None
            # 3. Update: one or more passes of the clipped loss over this batch.
            old_logp = None
            for _ in range(cfg.updates_per_batch):
                logp, entropy = sequence_logprobs(model, samples, with_entropy=True)
                if old_logp is None:
                    old_logp = logp.detach()  # the policy that sampled the batch, before any update
                ref = logp.detach() if ref_logp is None else ref_logp  # the policy as its own reference: KL 0
                loss, stats = grpo_loss(
                    logp, old_logp, ref, adv, mask, cfg.clip_eps, cfg.clip_eps_high or cfg.clip_eps, cfg.beta,
                    cfg.loss_type, cfg.importance_sampling_level, max_new_tokens,
                )  # fmt: skip
                check_finite(loss, "grpo", step + 1)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
            # 4. Log what a practitioner reads, with TRL's names.
            row = {
                "reward": rewards.mean().item(),
                "reward_std": group_std.mean().item(),
                "frac_reward_zero_std": (group_std == 0).float().mean().item(),
                "entropy": ((entropy.detach() * mask).sum() / mask.sum()).item(),
                "clip_ratio": stats["clip_ratio"].item(),
                "completions/mean_length": lengths.mean().item(),
                "loss": loss.item(),
                "grad_norm": grad_norm.item(),
                "learning_rate": cfg.lr,
                "samples_seen": done * len(prompts),
            }
            if ref_logp is not None:  # unmeasured steps have no kl (the policy stood in as its own reference)
                row["kl"] = kl = stats["kl"].item()
            if gold_fn is not None:  # the hidden judge grades the same rollouts: proxy and gold side by side
                row["gold/reward"] = sum(gold_fn(prompts, completions)) / len(prompts)
            if (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps:
                accuracy = evaluate(model, tokenizer, task)[0]
                row["eval/accuracy"] = accuracy
            if cfg.sample_every and (done % cfg.sample_every == 0 or done == 1):
                run.log_samples(
                    done,
                    prompts[:: cfg.group_size][:4],
                    completions[:: cfg.group_size][:4],
                    rewards[:: cfg.group_size][:4],
                )
            run.log(done, **row)
            if cfg.save_every and done % cfg.save_every == 0:  # snapshots along the way (rlrecipes overoptimize)
                run.save(model, tokenizer, done, complete=False, name=f"{run.stage}-step-{done:04d}")
            bar.set_postfix(reward=f"{row['reward']:.2f}", kl=f"{kl:.3f}", acc=f"{accuracy:.2f}")
    except KeyboardInterrupt:  # keep what was learned so far; RL restarts from a checkpoint with --init
        bar.close()
        run.save(model, tokenizer, step, complete=False)
        raise
    checkpoint = run.save(model, tokenizer, cfg.steps, complete=True, config=asdict(cfg))
    summary = {
        "start_accuracy": start_accuracy,
        "final_accuracy": accuracy,
        "seconds": time.time() - t0,
        "samples": cfg.steps * cfg.batch_size * cfg.group_size,
        "checkpoint": str(checkpoint),
        **gold_summary(task, model, reference, tokenizer),  # on reviews: gold_win_rate over --init
    }
    if standalone:
        run.write_json("summary.json", summary)
    return {**summary, "history": run.history}
