"""PPO for LLMs, as in the RLHF papers (Ziegler et al. 2019, arXiv:1909.08593; Stiennon et al. 2020;
Ouyang et al. 2022, InstructGPT; the checklist of Huang et al., "The N Implementation Details of RLHF
with PPO", 2024).

Each completion is an episode and each token an action. A value head V reads the policy's hidden
state and predicts the reward still to come; the task reward arrives only at the last token, and
every token pays a KL toll for drifting from the frozen starting model:

    r_t = score * [t is the last token] - beta * (log pi(y_t) - log pi_ref(y_t))     (k1 KL, in the reward)
    delta_t = r_t + gamma * V_{t+1} - V_t,   adv_t = delta_t + gamma * lam * adv_{t+1}  (GAE)
    returns_t = adv_t + V_t,   adv whitened over the batch's completion tokens
    loss = -mean_tok min(ratio * adv, clip(ratio, 1 - eps, 1 + eps) * adv)
           + vf_coef * 0.5 * mean_tok max((V - returns)^2, (V_clipped - returns)^2)

Each batch of samples is reused for `ppo_epochs` passes of `num_minibatches` minibatches: the clip
keeps the policy from running far from the one that sampled the batch. Unlike GRPO there is one
completion per prompt: the value head is the baseline. Simplified here: the value head is one linear
layer on the policy's own trunk (as in TRL's classic AutoModelForCausalLMWithValueHead; Stiennon et al.
use a separate value network); it starts as a constant, the first batch's mean score (zero weights, as
in the N details, with the reward centred under the starting policy as Ziegler et al. do). The reward
is the task's own unless `--reward reward-model:RUN_DIR` names a learned one, which is RLHF proper
(docs/rlhf.md: the gold reward is then logged beside it as `gold/reward`). The saved checkpoint is the policy
alone, a plain TinyGPT checkpoint that any recipe can --init from; the value head is not saved.

    rlrecipes run ppo --init runs/bake/sft.safetensors --steps 60
"""

import copy
import random
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from rlrecipes.lm.generate import generate
from rlrecipes.lm.kl import kl_k1
from rlrecipes.rewards import check_reward_spec, get_reward, gold_judge, gold_summary
from rlrecipes.runs import Run, check_finite, load_checkpoint, resolve_device, seed_everything
from rlrecipes.tasks import evaluate, get_task


@dataclass
class Config:
    init: str | None = None  # the SFT checkpoint or run folder to start from (required)
    task: str = "arithmetic"  # which task's prompts (and reward, unless --reward names another)
    reward: str = "task"  # task | reward-model:RUN_DIR (RLHF: optimise a learned reward model; see rewards.py)
    steps: int = 60  # RL steps, each one batch of fresh samples
    batch_size: int = 64  # prompts per step, one completion each
    lr: float = 1e-4  # AdamW learning rate, for the policy and the value head alike
    temperature: float = 1.0  # sampling temperature; log-probs in the loss use the same one (N details)
    clip_eps: float = 0.2  # PPO clip range for the importance ratio
    beta: float = 0.05  # KL coefficient: each token's reward pays beta * k1 KL to the starting model
    gamma: float = 1.0  # discount over the completion's tokens (1 = none, as in the RLHF papers)
    lam: float = 0.95  # GAE lambda: 0 trusts the value head (bias), 1 trusts the sampled return (variance)
    vf_coef: float = 0.1  # weight of the value loss against the policy loss
    vf_clip: float = 0.2  # the value prediction moves at most this far from its rollout value per batch
    ppo_epochs: int = 4  # passes over each batch of samples
    num_minibatches: int = 2  # minibatches per pass (one optimiser step each)
    adaptive_kl: bool = False  # adapt beta towards target_kl (Ziegler et al. 2019) instead of keeping it fixed
    target_kl: float = 0.3  # with adaptive_kl: the KL per completion (nats, summed over its tokens) to aim for
    kl_horizon: int = 1000  # with adaptive_kl: beta changes by at most 20% per this many samples
    grad_clip: float = 1.0  # clip the global gradient norm to this
    eval_every: int = 20  # held-out accuracy every this many steps (0 = only at the end)
    sample_every: int = 10  # write a few sampled completions to samples.jsonl every this many steps
    seed: int = 0  # same seed, same run (on the CPU)
    device: str = "auto"  # auto | cpu | cuda | mps
    out: str | None = None  # run folder (default runs/ppo-<timestamp>)
    overwrite: bool = False  # replace whatever --out holds


def validate(cfg: Config):
    task = get_task(cfg.task)
    check_reward_spec(cfg.reward)
    if not cfg.init:
        raise ValueError("ppo needs --init: an SFT (or pretrained) checkpoint or run folder")
    for name in ("steps", "batch_size", "ppo_epochs", "num_minibatches", "kl_horizon"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name}={getattr(cfg, name)} must be at least 1")
    if cfg.num_minibatches > cfg.batch_size:
        raise ValueError(f"num_minibatches={cfg.num_minibatches} must be at most batch_size={cfg.batch_size}")
    if not cfg.lr > 0:
        raise ValueError(f"lr={cfg.lr} must be greater than 0 (try 1e-4)")
    if not 0 < cfg.clip_eps < 1:
        raise ValueError(f"clip_eps={cfg.clip_eps} must be in (0, 1) (the usual value is 0.2)")
    for name in ("gamma", "lam"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise ValueError(f"{name}={getattr(cfg, name)} must be in [0, 1] (the RLHF papers use gamma=1, lam=0.95)")
    if cfg.beta < 0:
        raise ValueError(f"beta={cfg.beta} must be 0 (no KL penalty) or positive (the usual value is 0.05)")
    if cfg.vf_coef < 0:
        raise ValueError(f"vf_coef={cfg.vf_coef} must be 0 (value head never trained) or positive (try 0.1)")
    if not cfg.vf_clip > 0:
        raise ValueError(f"vf_clip={cfg.vf_clip} must be greater than 0 (try 0.2)")
    if cfg.adaptive_kl and not cfg.target_kl > 0:
        raise ValueError(f"target_kl={cfg.target_kl} must be greater than 0 with --adaptive-kl")
    if cfg.adaptive_kl and cfg.beta == 0:
        raise ValueError("--adaptive-kl multiplies beta, so beta=0 would stay 0; start from a positive --beta")
    if not cfg.temperature > 0:
        raise ValueError(f"temperature={cfg.temperature} must be greater than 0")
    if cfg.grad_clip <= 0:
        raise ValueError(f"grad_clip={cfg.grad_clip} must be greater than 0")
    resolve_device(cfg.device)
    return task


# --- core ---
def gae(rewards, values, mask, gamma: float, lam: float):
    """rewards, values, mask: (B, T); mask is 1 on each row's completion tokens. Returns (adv, returns), 0 off mask."""
    adv = torch.zeros_like(rewards)  # (B, T)
    next_value = next_adv = torch.zeros_like(rewards[:, 0])  # (B,) after the last token the episode is over
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]  # (B,) one-step TD error
        next_adv = (delta + gamma * lam * next_adv) * mask[:, t]  # (B,) zero on padding: restarts at the last token
        next_value = values[:, t] * mask[:, t]  # (B,)
        adv[:, t] = next_adv
    return adv, (adv + values) * mask  # returns: what the value head learns to predict


def whiten(x, mask, eps: float = 1e-8):
    """Zero mean, unit variance over the masked entries of x (B, T); 0 off the mask."""
    kept = x[mask.bool()]  # (N,) the completion tokens only
    return (x - kept.mean()) / (kept.std(correction=0) + eps) * mask  # (B, T)


def ppo_loss(logp, old_logp, adv, values, old_values, returns, mask, clip_eps: float, vf_clip: float, vf_coef: float):
    """All (B, T) per token: log-probs now and at sampling, advantages, values now and at sampling, returns, mask."""

    def mean(x):  # a mean over every completion token of the batch
        return (x * mask).sum() / mask.sum().clamp(min=1)

    ratio = torch.exp(logp - old_logp)  # (B, T) pi / pi_old, 1 on the first minibatch of a batch
    pg_losses = -adv * ratio  # (B, T)
    pg_losses_clipped = -adv * ratio.clamp(1 - clip_eps, 1 + clip_eps)  # (B, T)
    pg_loss = mean(torch.max(pg_losses, pg_losses_clipped))  # the pessimistic bound: no gain from moving far
    values_clipped = old_values + (values - old_values).clamp(-vf_clip, vf_clip)  # (B, T) a trust region for V too
    vf_losses, vf_losses_clipped = (values - returns) ** 2, (values_clipped - returns) ** 2  # (B, T) each
    vf_loss = 0.5 * mean(torch.max(vf_losses, vf_losses_clipped))  # pessimistic again (N details)
    clip_ratio = mean((pg_losses_clipped > pg_losses).float())  # share of tokens whose policy gradient is cut
    vf_clipfrac = mean((vf_losses_clipped > vf_losses).float())  # share of tokens whose value gradient is cut
    stats = {"loss/policy": pg_loss, "loss/value": vf_loss, "clip_ratio": clip_ratio, "val/clipfrac": vf_clipfrac}
    return pg_loss + vf_coef * vf_loss, stats


# --- end core ---


def forward(model, value_head, input_ids, attention_mask, temperature: float):
    """Per-token log-probs, entropies and values of a batch (B, T), each (B, T-1), aligned with
    completion_mask[:, 1:]: token t is scored by the logits at t-1, and V_t is read at t-1 too (the state
    before the token is chosen)."""
    logits, hidden = model(input_ids, attention_mask=attention_mask, return_hidden=True)
    logp_all = F.log_softmax(logits[:, :-1].float() / temperature, dim=-1)  # (B, T-1, V) the sampling distribution
    logp = logp_all.gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)  # (B, T-1)
    values = value_head(hidden[:, :-1]).squeeze(-1) if value_head is not None else None  # (B, T-1)
    return logp, entropy, values


def explained_variance(values, returns, mask) -> float:
    """1 - Var(returns - V) / Var(returns) over completion tokens: 1 is perfect, 0 is no better than a constant."""
    error = (returns - values) * mask  # (B, T)
    n = mask.sum()
    var_error = (error**2).sum() / n - (error.sum() / n) ** 2
    var_returns = (returns**2 * mask).sum() / n - ((returns * mask).sum() / n) ** 2
    return (1 - var_error / var_returns.clamp(min=1e-8)).item()


def train(cfg: Config, run: Run | None = None) -> dict:
    task = validate(cfg)
    device = resolve_device(cfg.device)
    model, tokenizer, _, _ = load_checkpoint(cfg.init, device)
    reward_fn = get_reward(cfg.reward, task, tokenizer, device)  # before the run folder: a bad one fails first
    gold_fn = gold_judge(cfg.reward, task)  # with a reward model: the task's own reward, to grade it
    reference = copy.deepcopy(model).eval().requires_grad_(False)  # frozen: the KL anchor
    standalone = run is None  # inside `rlrecipes bake` the bake owns the run folder and its summary
    run = run or Run.create(cfg.out, "ppo", overwrite=cfg.overwrite)
    if standalone:
        run.write_json("config.json", {"ppo": asdict(cfg)})
    run.stage = "ppo"
    generator = seed_everything(cfg.seed)
    prompt_rng = random.Random(cfg.seed)
    value_head = nn.Linear(model.cfg.n_embd, 1).to(device)  # V(state) from the policy's last hidden state
    nn.init.zeros_(value_head.weight)  # zero weights (N details): V starts as a constant, the bias, set below
    params = [*model.parameters(), *value_head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    max_new_tokens = task.max_completion_chars + 2  # room to overshoot, so a long wrong answer can be punished
    beta = cfg.beta  # the KL coefficient; moves only with --adaptive-kl

    t0 = time.time()
    start_accuracy = accuracy = evaluate(model, tokenizer, task)[0]
    bar = tqdm(range(cfg.steps), desc="ppo", dynamic_ncols=True)
    for step in bar:
        # 1. Rollout: one completion per prompt, from the current policy.
        prompts = task.train_prompts(cfg.batch_size, prompt_rng)
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
        ids, attn = samples.input_ids, samples.attention_mask
        mask = samples.completion_mask[:, 1:].float()  # (B, T-1)
        # 2. Score. The rollout policy's log-probs and values are frozen for the whole update ("old").
        scores = torch.tensor(reward_fn(prompts, completions), device=device)  # (B,)
        if step == 0:  # V starts at the first batch's mean score: the same as centring the reward under the
            nn.init.constant_(value_head.bias, scores.mean().item())  # starting policy (Ziegler et al.) and V at 0
        with torch.no_grad():
            old_logp, entropy, old_values = forward(model, value_head, ids, attn, cfg.temperature)
            ref_logp = forward(reference, None, ids, attn, cfg.temperature)[0]
        kl = kl_k1(old_logp, ref_logp) * mask  # (B, T-1) per-token KL of the sampled tokens
        rewards = -beta * kl  # (B, T-1) every token pays its KL...
        last = samples.prompt_len - 2 + samples.completion_lengths  # (B,) column of each last completion token
        rewards[torch.arange(len(prompts), device=device), last] += scores  # ...and the last one gets the score
        adv, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
        adv = whiten(adv, mask)
        # 3. Update: ppo_epochs passes, each over num_minibatches shuffled minibatches.
        totals = {}
        for _ in range(cfg.ppo_epochs):
            for idx in torch.randperm(len(prompts), generator=generator).tensor_split(cfg.num_minibatches):
                idx = idx.to(device)
                logp, _, values = forward(model, value_head, ids[idx], attn[idx], cfg.temperature)
                loss, stats = ppo_loss(
                    logp, old_logp[idx], adv[idx], values, old_values[idx], returns[idx], mask[idx],
                    cfg.clip_eps, cfg.vf_clip, cfg.vf_coef,
                )  # fmt: skip
                check_finite(loss, "ppo", step + 1)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                stats["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                for k, v in stats.items():  # averaged over every minibatch of the step, as TRL reports them
                    totals[k] = totals.get(k, 0.0) + v.item() / (cfg.ppo_epochs * cfg.num_minibatches)
        # 4. Adapt beta (Ziegler et al. 2019): nudge it by at most 20% per kl_horizon samples towards target_kl.
        seq_kl = kl.sum(1).mean().item()  # KL per completion, what the controller targets
        rlhf_reward = rewards.sum(1).mean().item()  # score - beta * KL: what PPO actually maximises
        if cfg.adaptive_kl:
            error = min(max(seq_kl / cfg.target_kl - 1, -0.2), 0.2)
            beta *= 1 + error * len(prompts) / cfg.kl_horizon
        # 5. Log what a practitioner reads, with TRL's names.
        done = step + 1
        row = {
            "reward": scores.mean().item(),
            "reward_std": scores.std().item(),
            "objective/rlhf_reward": rlhf_reward,
            "kl": (kl.sum() / mask.sum()).item(),
            "objective/kl": seq_kl,
            "entropy": ((entropy * mask).sum() / mask.sum()).item(),
            **totals,
            "val/var_explained": explained_variance(old_values, returns, mask),
            "val/mean": ((old_values * mask).sum() / mask.sum()).item(),  # the critic's average prediction
            "returns/mean": ((returns * mask).sum() / mask.sum()).item(),  # what it should be near
            "completions/mean_length": samples.completion_lengths.float().mean().item(),
            "learning_rate": cfg.lr,
            "beta": beta,
            "samples_seen": done * len(prompts),
        }
        if gold_fn is not None:  # the hidden judge grades the same rollouts: proxy and gold side by side
            row["gold/reward"] = sum(gold_fn(prompts, completions)) / len(prompts)
        if (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps:
            accuracy = evaluate(model, tokenizer, task)[0]
            row["eval/accuracy"] = accuracy
        if cfg.sample_every and (done % cfg.sample_every == 0 or done == 1):
            run.log_samples(done, prompts[:4], completions[:4], scores[:4])
        run.log(done, **row)
        bar.set_postfix(
            reward=f"{row['reward']:.2f}",
            kl=f"{row['kl']:.3f}",
            ev=f"{row['val/var_explained']:.2f}",
            acc=f"{accuracy:.2f}",
        )
    checkpoint = run.save(model, tokenizer, cfg.steps, complete=True, config=asdict(cfg))  # the policy only
    summary = {
        "start_accuracy": start_accuracy,
        "final_accuracy": accuracy,
        "seconds": time.time() - t0,
        "samples": cfg.steps * cfg.batch_size,
        "checkpoint": str(checkpoint),
        **gold_summary(task, model, reference, tokenizer),  # on reviews: gold_win_rate over --init
    }
    if standalone:
        run.write_json("summary.json", summary)
    return {**summary, "history": run.history}


if __name__ == "__main__":
    import tyro

    train(tyro.cli(Config, description=__doc__))
