"""RLOO: REINFORCE Leave-One-Out (Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style
Optimization for Learning from Human Feedback in LLMs", arXiv:2402.14740; the estimator is Kool et al.
2019, "Buy 4 REINFORCE Samples, Get a Baseline for Free!").

REINFORCE needs a baseline: what the policy is expected to earn on this prompt. RLOO gets one for free
by sampling k completions of the same prompt, and scoring each against the mean of the OTHER k - 1:

    adv_i = r_i - (sum_j r_j - r_i) / (k - 1)                     = k / (k - 1) * (r_i - mean(r))
    loss  = -mean_seq [ adv_i * sum_tok log pi(token) ]            the whole completion is one action
    r_i   = R_i - beta * sum_tok (log pi(token) - log ref(token))  optional KL penalty, inside the reward

Leaving the sample out keeps the baseline independent of the completion it judges, so the gradient stays
unbiased (a baseline that includes r_i would shrink every advantage by (k - 1) / k). The advantages of
a group sum to zero: a group that is all right or all wrong teaches nothing, as in GRPO. Unlike GRPO
there is no division by the group's std and no importance ratio or clipping: one plain REINFORCE step
per batch, as in the paper.

    rlrecipes run rloo --init runs/bake/sft.safetensors --steps 60 --group-size 4
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


@dataclass
class Config:
    init: str | None = None  # the SFT checkpoint or run folder to start from (required)
    task: str = "arithmetic"  # which task's prompts (and reward, unless --reward names another)
    reward: str = "task"  # task | reward-model:RUN_DIR (RLHF: optimise a learned reward model; see rewards.py)
    steps: int = 60  # RL steps, each one batch of fresh samples
    batch_size: int = 64  # prompts per step (x group_size completions: 256 by default, as in grpo)
    group_size: int = 4  # completions sampled per prompt (k); at least 2 to leave one out
    lr: float = 1e-4  # AdamW learning rate
    beta: float = 0.0  # weight of the KL penalty (summed k1 per completion) subtracted from the reward (0 = off)
    temperature: float = 1.0  # sampling temperature for rollouts
    grad_clip: float = 1.0  # clip the global gradient norm to this
    eval_every: int = 20  # held-out accuracy every this many steps (0 = only at the end)
    sample_every: int = 10  # write a few sampled completions to samples.jsonl every this many steps
    kl_every: int = 10  # with beta = 0, measure kl (a reference forward) on step 1, the last and every this many
    seed: int = 0  # same seed, same run (on the CPU)
    device: str = "auto"  # auto | cpu | cuda | mps
    out: str | None = None  # run folder (default runs/rloo-<timestamp>)
    overwrite: bool = False  # replace whatever --out holds


def validate(cfg: Config):
    task = get_task(cfg.task)
    check_reward_spec(cfg.reward)
    if not cfg.init:
        raise ValueError("rloo needs --init: an SFT (or pretrained) checkpoint or run folder")
    for name in ("steps", "batch_size"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name}={getattr(cfg, name)} must be at least 1")
    if cfg.group_size < 2:
        raise ValueError(f"group_size={cfg.group_size} must be at least 2: each sample's baseline is the others' mean")
    if not cfg.lr > 0:
        raise ValueError(f"lr={cfg.lr} must be greater than 0 (try 1e-4)")
    if cfg.beta < 0:
        raise ValueError(f"beta={cfg.beta} must be 0 (no KL penalty) or positive")
    if not cfg.temperature > 0:
        raise ValueError(f"temperature={cfg.temperature} must be greater than 0")
    if cfg.kl_every < 0:
        raise ValueError(f"kl_every={cfg.kl_every} must be 0 (kl on step 1 and the last only) or positive")
    resolve_device(cfg.device)
    return task


# --- core ---
def leave_one_out_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Each completion's reward minus the mean reward of the other completions of the same prompt."""
    r = rewards.view(-1, group_size)  # (B, k): one row per prompt
    baseline = (r.sum(1, keepdim=True) - r) / (group_size - 1)  # (B, k) mean of the other k - 1
    return (r - baseline).flatten()  # (B * k,)


def rloo_loss(logp, ref_logp, rewards, mask, group_size: int, beta: float):
    """logp, ref_logp, mask: (N, T) per completion token; rewards: (N,) task rewards. Returns (loss, stats)."""
    seq_kl = (kl_k1(logp, ref_logp) * mask).sum(1).detach()  # (N,) log pi(y) - log ref(y), this sample's KL
    shaped = rewards - beta * seq_kl  # (N,) the paper's reward: the KL is paid like any cost, not differentiated
    adv = leave_one_out_advantages(shaped, group_size)  # (N,)
    seq_logp = (logp * mask).sum(1)  # (N,) log pi(completion | prompt)
    loss = -(adv * seq_logp).mean()  # (): REINFORCE with the leave-one-out baseline
    n_tokens = mask.sum().clamp(min=1)  # (): completion tokens in the batch
    stats = {
        "adv_std": adv.std(),  # how hard this batch pushes; 0 when every group is unanimous
        "kl": (kl_k3(logp, ref_logp) * mask).sum() / n_tokens,  # per token, >= 0, comparable across recipes
        "kl_penalty": seq_kl.mean(),  # what beta multiplies: the mean completion's summed k1
    }
    return loss, {k: v.detach() for k, v in stats.items()}


# --- end core ---


def train(cfg: Config, run: Run | None = None) -> dict:
    task = validate(cfg)
    device = resolve_device(cfg.device)
    model, tokenizer, _, _ = load_checkpoint(cfg.init, device)
    reward_fn = get_reward(cfg.reward, task, tokenizer, device)  # before the run folder: a bad one fails first
    gold_fn = gold_judge(cfg.reward, task)  # with a reward model: the task's own reward, to grade it
    reference = copy.deepcopy(model).eval().requires_grad_(False)  # frozen: the KL anchor and a metric
    standalone = run is None  # inside `rlrecipes bake` the bake owns the run folder and its summary
    run = run or Run.create(cfg.out, "rloo", overwrite=cfg.overwrite)
    if standalone:
        run.write_json("config.json", {"rloo": asdict(cfg)})
    run.stage = "rloo"
    generator = seed_everything(cfg.seed)
    prompt_rng = random.Random(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    max_new_tokens = task.max_completion_chars + 2  # room to overshoot, so a long wrong answer can be punished

    t0 = time.time()
    start_accuracy = accuracy = evaluate(model, tokenizer, task)[0]
    run.log(0, **{"eval/accuracy": start_accuracy})
    bar = tqdm(range(cfg.steps), desc="rloo", dynamic_ncols=True)
    step = 0
    try:
        for step in bar:
            # 1. Rollout: k samples for each prompt, from the current policy.
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
            # 2. Score.
            rewards = torch.tensor(reward_fn(prompts, completions), device=device)  # (B * k,)
            mask = samples.completion_mask[:, 1:].float()  # (B * k, T-1)
            # With beta = 0 the KL weighs nothing in the reward: the reference forward only feeds the kl metrics,
            # and TRL skips it. We pay for it on a few steps (see kl_every) and log kl on those only.
            done = step + 1
            measure_kl = cfg.beta > 0 or done in (1, cfg.steps) or (cfg.kl_every and done % cfg.kl_every == 0)
            with torch.no_grad():
                ref_logp = sequence_logprobs(reference, samples) if measure_kl else None
            # 3. Update: one REINFORCE step with the leave-one-out baseline.
            logp, entropy = sequence_logprobs(model, samples, with_entropy=True)
            ref = logp.detach() if ref_logp is None else ref_logp  # the policy as its own reference: KL 0
            loss, stats = rloo_loss(logp, ref, rewards, mask, cfg.group_size, cfg.beta)
            check_finite(loss, "rloo", step + 1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)  # before clipping
            optimizer.step()
            # 4. Log what a practitioner reads, with TRL's names.
            group_std = rewards.view(-1, cfg.group_size).std(1)
            row = {
                "reward": rewards.mean().item(),
                "reward_std": group_std.mean().item(),
                "frac_reward_zero_std": (group_std == 0).float().mean().item(),
                "adv_std": stats["adv_std"].item(),
                "entropy": ((entropy.detach() * mask).sum() / mask.sum()).item(),
                "completions/mean_length": samples.completion_lengths.float().mean().item(),
                "loss": loss.item(),
                "grad_norm": grad_norm.item(),
                "learning_rate": cfg.lr,
                "samples_seen": done * len(prompts),
            }
            if ref_logp is not None:  # unmeasured steps have no kl (the policy stood in as its own reference)
                kl = stats["kl"].item()
                row |= {"kl": kl, "kl_penalty": stats["kl_penalty"].item()}
            if gold_fn is not None:  # the hidden judge grades the same rollouts: proxy and gold side by side
                row["gold/reward"] = sum(gold_fn(prompts, completions)) / len(prompts)
            if (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps:
                accuracy = evaluate(model, tokenizer, task)[0]
                row["eval/accuracy"] = accuracy
            if cfg.sample_every and (done % cfg.sample_every == 0 or done == 1):
                first = slice(0, 4 * cfg.group_size, cfg.group_size)  # one completion of each of the first 4 prompts
                run.log_samples(done, prompts[first], completions[first], rewards[first])
            run.log(done, **row)
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


if __name__ == "__main__":
    import tyro

    train(tyro.cli(Config, description=__doc__))
