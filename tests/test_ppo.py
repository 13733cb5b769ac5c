"""PPO: the core against plain loops and hand-made numbers, bad values, a smoke run, a learning run."""

import json
import subprocess
import sys

import pytest
import torch

from rlrecipes.recipes import ppo
from rlrecipes.runs import load_checkpoint


def completion_mask(prompt_lens, completion_lens, T):
    """(B, T) float mask: zeros over each row's prompt, ones over its completion, zeros over padding."""
    mask = torch.zeros(len(prompt_lens), T)
    for i, (p, c) in enumerate(zip(prompt_lens, completion_lens)):
        mask[i, p : p + c] = 1
    return mask


def gae_loop(rewards, values, gamma, lam):
    """Generalized advantage estimation for one episode, as Schulman et al. 2016 write it (plain floats)."""
    adv, last, n = [0.0] * len(rewards), 0.0, len(rewards)
    for t in reversed(range(n)):
        next_value = values[t + 1] if t + 1 < n else 0.0
        delta = rewards[t] + gamma * next_value - values[t]
        last = delta + gamma * lam * last
        adv[t] = last
    return adv


# --- math ---


def test_gae_matches_a_plain_loop():
    torch.manual_seed(0)
    prompt_lens, completion_lens, T = [3, 1, 4, 2], [4, 6, 1, 3], 8
    mask = completion_mask(prompt_lens, completion_lens, T)
    rewards, values = torch.randn(4, T), torch.randn(4, T)
    adv, returns = ppo.gae(rewards * mask, values, mask, gamma=0.9, lam=0.8)
    for i, (p, c) in enumerate(zip(prompt_lens, completion_lens)):
        expected = gae_loop(rewards[i, p : p + c].tolist(), values[i, p : p + c].tolist(), 0.9, 0.8)
        torch.testing.assert_close(adv[i, p : p + c], torch.tensor(expected))
        torch.testing.assert_close(returns[i, p : p + c], torch.tensor(expected) + values[i, p : p + c])
    assert (adv[mask == 0] == 0).all() and (returns[mask == 0] == 0).all()


def test_gae_with_lam_1_and_gamma_1_is_the_return_minus_the_value():
    torch.manual_seed(1)
    mask = completion_mask([2, 0, 3], [5, 7, 2], 7)
    rewards, values = torch.randn(3, 7) * mask, torch.randn(3, 7)
    adv, returns = ppo.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    reward_to_go = rewards.flip(1).cumsum(1).flip(1)  # (B, T) sum of the rewards from t to the end
    torch.testing.assert_close(adv, (reward_to_go - values) * mask)
    torch.testing.assert_close(returns, reward_to_go * mask)


def test_gae_ignores_whatever_sits_off_the_mask():
    torch.manual_seed(2)
    mask = completion_mask([2, 4], [3, 1], 7)
    rewards, values = torch.randn(2, 7) * mask, torch.randn(2, 7)
    noisy_values = torch.where(mask.bool(), values, torch.randn(2, 7) * 100)  # prompt and padding: garbage
    noisy_rewards = torch.where(mask.bool(), rewards, torch.randn(2, 7) * 100)
    for a, b in zip(ppo.gae(rewards, values, mask, 0.95, 0.9), ppo.gae(noisy_rewards, noisy_values, mask, 0.95, 0.9)):
        torch.testing.assert_close(a, b)


def test_whiten_is_zero_mean_unit_variance_on_the_mask_only():
    torch.manual_seed(3)
    mask = completion_mask([1, 3, 0], [4, 2, 5], 6)
    x = torch.randn(3, 6) * 5 + 2
    w = ppo.whiten(x, mask)
    kept = w[mask.bool()]
    assert abs(kept.mean().item()) < 1e-5 and abs(kept.std(correction=0).item() - 1) < 1e-4
    assert (w[mask == 0] == 0).all()


def loss_inputs(seed=0, B=4, T=6):
    torch.manual_seed(seed)
    mask = completion_mask([1, 2, 0, 3], [3, 4, 6, 1], T)
    logp = (torch.randn(B, T) - 1).requires_grad_()
    values = torch.randn(B, T).requires_grad_()
    adv, returns = torch.randn(B, T) * mask, torch.randn(B, T) * mask
    return logp, adv, values, returns, mask


def test_ppo_loss_at_ratio_one_is_reinforce():
    logp, adv, values, returns, mask = loss_inputs()
    loss, stats = ppo.ppo_loss(logp, logp.detach(), adv, values, values.detach(), returns, mask, 0.2, 0.2, vf_coef=0.0)
    loss.backward()
    # REINFORCE: loss = -mean_tok adv * logp, so d loss / d logp = -adv / n_tokens on the mask, 0 elsewhere
    torch.testing.assert_close(logp.grad, -adv * mask / mask.sum())
    assert stats["clip_ratio"] == 0
    torch.testing.assert_close(stats["loss/policy"], -(adv * mask).sum() / mask.sum())  # ratio = 1


def test_ppo_loss_ignores_prompt_and_padding_tokens():
    logp, adv, values, returns, mask = loss_inputs(seed=1)
    old_logp, old_values = logp.detach() - 0.1, values.detach() + 0.05
    loss, _ = ppo.ppo_loss(logp, old_logp, adv, values, old_values, returns, mask, 0.2, 0.2, 0.5)
    off = ~mask.bool()
    garbage = lambda x: torch.where(off, torch.randn_like(x) * 100, x)  # noqa: E731
    loss2, _ = ppo.ppo_loss(
        garbage(logp.detach()), garbage(old_logp), garbage(adv), garbage(values.detach()), garbage(old_values),
        garbage(returns), mask, 0.2, 0.2, 0.5,
    )  # fmt: skip
    torch.testing.assert_close(loss, loss2)
    loss.backward()
    assert (logp.grad[off] == 0).all() and (values.grad[off] == 0).all()


def test_policy_loss_is_clipped_where_the_ratio_left_the_trust_region():
    mask = torch.ones(1, 4)
    old_logp = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 1.5, 0.5, 1.1]])).requires_grad_()  # ratios 1.5, 1.5, 0.5, 1.1
    adv = torch.tensor([[1.0, -1.0, -1.0, 2.0]])
    zero = torch.zeros(1, 4)
    loss, stats = ppo.ppo_loss(logp, old_logp, adv, zero, zero, zero, mask, clip_eps=0.2, vf_clip=0.2, vf_coef=0.0)
    loss.backward()
    # token 0: ratio 1.5 > 1.2 with adv > 0, clipped (no gradient); token 1: adv < 0, the unclipped term is worse:
    # kept; token 2: ratio 0.5 < 0.8 with adv < 0, clipped; token 3: inside the range, kept
    assert stats["clip_ratio"].item() == pytest.approx(0.5)
    assert logp.grad[0, 0] == 0 and logp.grad[0, 2] == 0
    assert logp.grad[0, 1] != 0 and logp.grad[0, 3] != 0
    assert loss.item() == pytest.approx((-1.2 + 1.5 + 0.8 - 2.2) / 4)  # max(-adv * ratio, -adv * clip(ratio))


def test_value_loss_is_clipped_around_the_rollout_value():
    mask, zero = torch.ones(1, 2), torch.zeros(1, 2)
    returns, old_values = torch.ones(1, 2), zero
    values = torch.tensor([[0.5, -0.5]], requires_grad=True)  # token 0 moves towards the return, token 1 away
    loss, stats = ppo.ppo_loss(zero, zero, zero, values, old_values, returns, mask, 0.2, vf_clip=0.2, vf_coef=1.0)
    loss.backward()
    # token 0: clipped to 0.2, (0.2 - 1)^2 = 0.64 > (0.5 - 1)^2 = 0.25: the pessimistic, clipped loss, no gradient
    # token 1: unclipped (-0.5 - 1)^2 = 2.25 > clipped (-0.2 - 1)^2 = 1.44: the unclipped loss, with its gradient
    assert stats["loss/value"].item() == pytest.approx(0.5 * (0.64 + 2.25) / 2)
    assert stats["val/clipfrac"].item() == pytest.approx(0.5)
    assert values.grad[0, 0] == 0
    assert values.grad[0, 1].item() == pytest.approx(0.5 * 2 * (-0.5 - 1) / 2)


# --- bad values ---


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("clip_eps", 0.0, r"clip_eps=0.0 must be in \(0, 1\)"),
        ("clip_eps", 1.5, r"clip_eps=1.5 must be in \(0, 1\)"),
        ("gamma", 1.1, r"gamma=1.1 must be in \[0, 1\]"),
        ("gamma", -0.1, r"gamma=-0.1 must be in \[0, 1\]"),
        ("lam", 2.0, r"lam=2.0 must be in \[0, 1\]"),
        ("beta", -0.01, r"beta=-0.01 must be 0 \(no KL penalty\) or positive"),
        ("ppo_epochs", 0, r"ppo_epochs=0 must be at least 1"),
        ("num_minibatches", 0, r"num_minibatches=0 must be at least 1"),
        ("num_minibatches", 65, r"num_minibatches=65 must be at most batch_size=64"),
        ("vf_coef", -1.0, r"vf_coef=-1.0 must be 0"),
        ("vf_clip", 0.0, r"vf_clip=0.0 must be greater than 0"),
        ("lr", 0.0, r"lr=0.0 must be greater than 0"),
    ],
)
def test_bad_values_fail_before_training_with_a_clear_message(field, value, match):
    with pytest.raises(ValueError, match=match):
        ppo.validate(ppo.Config(init="unused", **{field: value}))


def test_missing_init_and_adaptive_kl_without_beta_are_clear_errors():
    with pytest.raises(ValueError, match="ppo needs --init"):
        ppo.validate(ppo.Config())
    with pytest.raises(ValueError, match="beta=0 would stay 0"):
        ppo.validate(ppo.Config(init="unused", adaptive_kl=True, beta=0.0))


# --- smoke ---

TINY = dict(steps=3, batch_size=8, eval_every=0, sample_every=1, device="cpu")


@pytest.mark.parametrize("adaptive_kl", [False, True])
def test_a_few_steps_move_the_policy_and_the_value_head(sft_checkpoint, tmp_path, adaptive_kl):
    out = tmp_path / "run"
    cfg = ppo.Config(init=sft_checkpoint, out=str(out), adaptive_kl=adaptive_kl, kl_horizon=16, **TINY)
    result = ppo.train(cfg)
    history = result["history"]
    assert [row["step"] for row in history] == [1, 2, 3]
    before, _, _, _ = load_checkpoint(sft_checkpoint)
    after, _, state, extra = load_checkpoint(result["checkpoint"])  # a plain TinyGPT checkpoint: the policy only
    assert state["complete"] and not extra
    unchanged = [n for n, p in after.named_parameters() if torch.equal(p, before.state_dict()[n])]
    assert not unchanged, f"parameters that did not move: {unchanged}"
    # The value head starts as a constant (zero weights, bias = the first batch's mean score), so at step 1 it
    # explains exactly nothing; once its weights have moved its predictions differ from token to token.
    assert history[0]["val/var_explained"] == pytest.approx(0.0, abs=1e-5)
    assert history[-1]["val/var_explained"] != pytest.approx(0.0, abs=1e-5)
    assert history[-1]["val/mean"] != pytest.approx(history[0]["val/mean"], abs=1e-6)
    for key in ("reward", "reward_std", "kl", "entropy", "clip_ratio", "loss/policy", "loss/value", "grad_norm"):
        assert all(torch.isfinite(torch.tensor(row[key])) for row in history), key
    betas = [row["beta"] for row in history]
    assert (betas[-1] != cfg.beta) if adaptive_kl else all(b == cfg.beta for b in betas)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 3 * 8 and set(json.loads((out / "config.json").read_text())) == {"ppo"}
    assert (out / "samples.jsonl").exists() and len((out / "metrics.jsonl").read_text().splitlines()) == 3


def test_the_cli_runs_ppo(sft_checkpoint, tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "rlrecipes.cli", "run", "ppo", "--init", sft_checkpoint, "--steps", "2"]
    cmd += ["--batch-size", "8", "--eval-every", "0", "--device", "cpu", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "final_accuracy=" in done.stdout and (out / "summary.json").exists()
    bad = subprocess.run(cmd[:5] + ["--init", sft_checkpoint, "--clip-eps", "2"], capture_output=True, text=True)
    assert bad.returncode == 2 and "clip_eps=2.0 must be in (0, 1)" in bad.stderr
    help_ = subprocess.run(cmd[:5] + ["--help"], capture_output=True, text=True)
    assert help_.returncode == 0 and "--vf-clip" in help_.stdout and "GAE lambda" in help_.stdout


# --- learning ---


@pytest.mark.slow
def test_ppo_raises_heldout_accuracy(sft_checkpoint, tmp_path):
    """25 steps of 64 samples (1,600 completions) from the shared SFT model. Measured on 2 shared cores
    (one torch thread): about 15-20 s, held-out accuracy 0.718 -> 0.81-0.84 over seeds 0-3 (+0.09 to
    +0.12); we ask for +0.05."""
    cfg = ppo.Config(init=sft_checkpoint, out=str(tmp_path / "learn"), steps=25, eval_every=0, seed=0, device="cpu")
    result = ppo.train(cfg)
    assert result["final_accuracy"] >= result["start_accuracy"] + 0.05, result
    # The critic. On this task and budget it learns the average return and little more (docs/ppo.md, "What we
    # saw"): measured val/var_explained over the last 10 steps is -0.01 to +0.01. What we can ask is that it is
    # no worse than the constant it started as; a critic that adds noise (e.g. its bias left at 0) sits near -0.5.
    late = result["history"][-10:]
    assert sum(row["val/var_explained"] for row in late) / len(late) > -0.1
