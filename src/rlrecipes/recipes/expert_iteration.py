"""Expert iteration (rejection-sampling fine-tuning): sample, keep what the reward accepts, SFT on it, repeat.

    for each round:
        y_1 .. y_k ~ pi(. | x)                 for a batch of training prompts x
        keep y_i if it is among the best keep_fraction of its prompt's k samples and r(x, y_i) >= threshold
        minimise -log pi(y | x) over the kept (x, y): plain SFT on the model's own best work

The policy improves by imitating a better policy, "pi filtered by the reward", which it can always
sample from. No advantage, no ratio, no value: the reward only says yes or no. On arithmetic the exact
check is the bar (--threshold 1: only right sums pass, STaR's rule); on reviews a learned reward model
picks the best of k (RAFT's and Llama 2's rule), so each round is best-of-k distilled into the weights,
and the next round's best-of-k starts from a better policy. Seen as RL it is policy gradient with advantage 1
on kept samples and 0 on the rest, with samples from an older policy (no importance ratio): it can only
push up what it already does, never push down a mistake.

Papers: Anthony, Tian and Barber 2017, "Thinking fast and slow with deep learning and tree search" (Expert
Iteration); Zelikman et al. 2022, "STaR: bootstrapping reasoning with reasoning"; Dong et al. 2023, "RAFT:
reward ranked finetuning for generative foundation model alignment"; Gulcehre et al. 2023, "Reinforced
self-training (ReST) for language modeling"; Touvron et al. 2023, "Llama 2" (rejection sampling fine-tuning).
Simplified here: one optimiser runs on through the rounds (STaR and ReST-EM restart from the base model each
round), and duplicates are kept (an easy prompt may contribute k identical right answers).

    rlrecipes run expert_iteration --init runs/sft --threshold 1 --out runs/ei
    rlrecipes run expert_iteration --task reviews --init runs/reviews-sft --reward reward-model:runs/reviews-rm
"""

import copy
import math
import random
import time
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from rlrecipes.lm.generate import generate, pack, sequence_logprobs
from rlrecipes.plots import plot_panels
from rlrecipes.rewards import check_reward_spec, get_reward
from rlrecipes.runs import Run, check_finite, load_checkpoint, resolve_device, seed_everything
from rlrecipes.tasks import evaluate, get_task
from rlrecipes.tasks.reviews import policy_gold_win_rate


@dataclass
class Config:
    init: str | None = None  # the SFT checkpoint or run folder to start from (required)
    task: str = "arithmetic"  # which task's prompts (and reward, unless --reward names another)
    reward: str = "task"  # task | reward-model:RUN_DIR: the score that accepts or rejects a sample (see rewards.py)
    rounds: int = 3  # sample -> filter -> SFT rounds
    prompts_per_round: int = 256  # training prompts sampled each round
    samples_per_prompt: int = 8  # completions per prompt (k): more, and the best of them is better
    keep_fraction: float = 0.125  # share of each prompt's k samples kept, the highest scored (1/k: best-of-k)
    threshold: float | None = None  # keep only samples whose reward is at least this (1 on arithmetic: right only)
    sft_steps: int = 40  # optimiser steps of SFT on each round's kept samples
    batch_size: int = 64  # kept samples per SFT step
    lr: float = 3e-4  # AdamW learning rate
    grad_clip: float = 1.0  # clip the global gradient norm to this
    temperature: float = 1.0  # sampling temperature: below 1, fewer new answers to find
    seed: int = 0  # same seed, same run (on the CPU)
    device: str = "auto"  # auto | cpu | cuda | mps
    out: str | None = None  # run folder (default runs/expert_iteration-<timestamp>)
    overwrite: bool = False  # replace whatever --out holds


def validate(cfg: Config):
    task = get_task(cfg.task)
    check_reward_spec(cfg.reward)
    if not cfg.init:
        raise ValueError("expert_iteration needs --init: an SFT checkpoint or run folder to sample from")
    for name in ("rounds", "prompts_per_round", "samples_per_prompt", "sft_steps", "batch_size"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name}={getattr(cfg, name)} must be at least 1")
    if not 0 < cfg.keep_fraction <= 1:
        raise ValueError(f"keep_fraction={cfg.keep_fraction} must be in (0, 1] (1/k keeps the best of k samples)")
    if not cfg.lr > 0:
        raise ValueError(f"lr={cfg.lr} must be greater than 0 (try 3e-4)")
    if cfg.grad_clip <= 0:
        raise ValueError(f"grad_clip={cfg.grad_clip} must be greater than 0")
    if not cfg.temperature > 0:
        raise ValueError(f"temperature={cfg.temperature} must be greater than 0")
    resolve_device(cfg.device)
    return task


# --- core ---
def select(rewards: torch.Tensor, keep_fraction: float, threshold: float | None = None) -> torch.Tensor:
    """rewards: (P, K), K samples of each of P prompts. Returns a (P, K) bool mask of the samples to imitate:
    each prompt's best ceil(keep_fraction * K) (ties broken by order), and of those only the ones that reach
    the threshold. keep_fraction = 1/K is best-of-K (RAFT, Llama 2); 1 with a threshold is STaR's filter."""
    n_keep = math.ceil(keep_fraction * rewards.shape[1])  # at least 1, at most K, for keep_fraction in (0, 1]
    rank = rewards.argsort(dim=1, descending=True, stable=True).argsort(dim=1)  # (P, K) 0 = the prompt's best sample
    keep = rank < n_keep  # (P, K) the top n_keep of every prompt, whatever their reward
    if threshold is not None:  # an absolute bar too: a prompt whose samples are all bad gives nothing
        keep &= rewards >= threshold
    return keep


def sft_loss(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The SFT loss of sft.py, on kept samples: every kept token counts once, none is weighted by its reward.
    logp: (B, T) log-probs of the sampled tokens; mask: (B, T) 1 on completion tokens (EOS included)."""
    return -(logp * mask).sum() / mask.sum()  # mean over every kept completion token in the batch


# --- end core ---


def train(cfg: Config, run: Run | None = None) -> dict:
    task = validate(cfg)
    device = resolve_device(cfg.device)
    model, tokenizer, _, _ = load_checkpoint(cfg.init, device)
    reward_fn = get_reward(cfg.reward, task, tokenizer, device)  # before the run folder: a bad one fails first
    reference = copy.deepcopy(model).eval().requires_grad_(False)  # the starting model, for the win rate
    standalone = run is None
    run = run or Run.create(cfg.out, "expert_iteration", overwrite=cfg.overwrite)
    if standalone:
        run.write_json("config.json", {"expert_iteration": asdict(cfg)})
    run.stage = "expert_iteration"
    generator = seed_everything(cfg.seed)
    prompt_rng = random.Random(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    k, is_reviews = cfg.samples_per_prompt, cfg.task == "reviews"

    t0 = time.time()
    start_accuracy = accuracy = evaluate(model, tokenizer, task)[0]
    run.log(0, **{"eval/accuracy": start_accuracy})
    rows = []
    for rnd in tqdm(range(1, cfg.rounds + 1), desc="expert_iteration: rounds", dynamic_ncols=True):
        # 1. Sample k completions of each prompt from the current policy.
        prompts = [p for p in task.train_prompts(cfg.prompts_per_round, prompt_rng) for _ in range(k)]
        model.eval()
        prompt_ids = [tokenizer.encode(p, bos=True) for p in prompts]
        samples = generate(model, prompt_ids, task.max_completion_chars + 2, tokenizer.eos_id, tokenizer.pad_id,
                           temperature=cfg.temperature, generator=generator)  # fmt: skip
        completion_ids = samples.completion_ids
        completions = [tokenizer.decode(c) for c in completion_ids]
        # 2. Score them, and keep what the reward accepts.
        rewards = torch.tensor(reward_fn(prompts, completions), dtype=torch.float).view(-1, k)  # (P, K)
        keep = select(rewards, cfg.keep_fraction, cfg.threshold).flatten()  # (P * K,)
        kept = keep.nonzero().flatten().tolist()
        row = {
            "reward": rewards.mean().item(),
            "reward/kept": rewards.flatten()[keep].mean().item() if kept else float("nan"),
            "accepted_fraction": keep.float().mean().item(),
            "completions/mean_length": samples.completion_lengths.float().mean().item(),
            "samples_seen": rnd * len(prompts),
        }
        # The gold judge (the exact check on arithmetic) grades what was kept: does a reward model agree with it?
        gold = torch.tensor(task.reward(prompts, completions)) if cfg.reward != "task" else rewards.flatten()
        row["gold/reward"] = gold.mean().item()
        row["gold/reward_kept"] = gold[keep].mean().item() if kept else float("nan")
        # 3. SFT on the kept samples: the model imitates its own filtered best.
        model.train()
        losses = []
        for _ in tqdm(range(cfg.sft_steps if kept else 0), desc=f"round {rnd}: sft", leave=False, dynamic_ncols=True):
            idx = torch.randint(0, len(kept), (cfg.batch_size,), generator=generator).tolist()
            batch = pack([prompt_ids[kept[i]] for i in idx], [completion_ids[kept[i]] for i in idx],
                         tokenizer.pad_id, device)  # fmt: skip
            loss = sft_loss(sequence_logprobs(model, batch), batch.completion_mask[:, 1:].float())
            check_finite(loss, "expert_iteration", rnd)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            losses.append(loss.item())
        if not kept:
            tqdm.write(f"round {rnd}: the reward accepted no sample (lower --threshold or raise --samples-per-prompt)")
        row["loss"] = sum(losses) / len(losses) if losses else float("nan")
        # 4. Evaluate on held-out prompts: accuracy (greedy), and on reviews the gold win rate over the start.
        accuracy = row["eval/accuracy"] = evaluate(model, tokenizer, task)[0]
        if is_reviews:
            row["eval/gold_win_rate"] = policy_gold_win_rate(model, reference, tokenizer, task, seed=cfg.seed)
        run.log(rnd, **row)
        run.log_samples(rnd, [prompts[i] for i in kept[:8]], [completions[i] for i in kept[:8]],
                        rewards.flatten()[kept[:8]])  # fmt: skip
        rows.append(row)
        run.save(model, tokenizer, rnd, complete=False)  # each round's model: Ctrl-C keeps the rounds done
        tqdm.write(f"round {rnd}: " + "  ".join(f"{key}={v:.3f}" for key, v in row.items() if key != "samples_seen"))

    panels = {"acceptance reward": ["reward", "reward/kept"]}
    if cfg.reward != "task":  # a reward model picked: the gold judge's view of all samples and of the picks
        panels["gold reward"] = ["gold/reward", "gold/reward_kept"]
    if cfg.threshold is not None:  # without a bar, every round keeps the same share: nothing to draw
        panels["accepted_fraction"] = ["accepted_fraction"]
    panels["SFT loss on kept samples"] = ["loss"]
    panels["held-out"] = ["eval/gold_win_rate", "eval/accuracy"] if is_reviews else ["eval/accuracy"]
    plot_panels(run.history, panels, run.dir / "expert_iteration.png", f"expert iteration on {cfg.task}", "round")
    checkpoint = run.save(model, tokenizer, cfg.rounds, complete=True, config=asdict(cfg))
    summary = {
        "start_accuracy": start_accuracy,
        "final_accuracy": accuracy,
        "accepted_fraction": [r["accepted_fraction"] for r in rows],
        "kept_reward": [r["reward/kept"] for r in rows],
        "kept_gold_reward": [r["gold/reward_kept"] for r in rows],
        "seconds": time.time() - t0,
        "samples": cfg.rounds * cfg.prompts_per_round * k,
        "checkpoint": str(checkpoint),
    }
    if is_reviews:  # the headline of every policy trained on this task
        summary["gold_win_rate"] = rows[-1]["eval/gold_win_rate"]
    if standalone:
        run.write_json("summary.json", summary)
    return {**summary, "history": run.history}


if __name__ == "__main__":
    import tyro

    train(tyro.cli(Config))
