"""RLOO: the leave-one-out baseline against a plain loop, the KL penalty, the masks, bad values, a smoke
run, and a learning test from the shared SFT checkpoint."""

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlrecipes.recipes.rloo import Config, leave_one_out_advantages, rloo_loss, train, validate
from rlrecipes.runs import load_checkpoint

# Two completions of one prompt (k = 2), T = 5 positions: prompt (mask 0), completion (1), padding (0).
MASK = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 1, 0, 0]], dtype=torch.float)


def logps(seed=0, shape=MASK.shape):
    g = torch.Generator().manual_seed(seed)
    return -torch.rand(shape, generator=g) * 3  # (N, T) log-probs are <= 0


# --- math ---


def loop_advantages(rewards: list[float], k: int) -> list[float]:
    """The definition, one sample at a time: r_i minus the mean of the other k - 1 rewards of its prompt."""
    out = []
    for start in range(0, len(rewards), k):
        group = rewards[start : start + k]
        for i, r_i in enumerate(group):
            others = [r for j, r in enumerate(group) if j != i]
            out.append(r_i - sum(others) / len(others))
    return out


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 6), st.integers(1, 4), st.data())
def test_leave_one_out_matches_a_plain_loop_and_sums_to_zero_per_group(k, n_prompts, data):
    rewards = data.draw(st.lists(st.floats(-5, 5), min_size=k * n_prompts, max_size=k * n_prompts))
    adv = leave_one_out_advantages(torch.tensor(rewards, dtype=torch.float64), k)
    assert torch.allclose(adv, torch.tensor(loop_advantages(rewards, k), dtype=torch.float64))
    assert torch.allclose(adv.view(-1, k).sum(1), torch.zeros(len(rewards) // k, dtype=torch.float64), atol=1e-9)


def test_the_baseline_excludes_the_sample_itself():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0])
    adv = leave_one_out_advantages(rewards, 4)
    assert adv.tolist() == pytest.approx([1.0, -1 / 3, -1 / 3, -1 / 3])  # the right one's baseline is 0, not 1/4
    # raising r_0 by 3 moves its own advantage by exactly 3 (its baseline ignores it), the others' by -3 / (k - 1)
    bumped = leave_one_out_advantages(rewards + torch.tensor([3.0, 0, 0, 0]), 4)
    assert (bumped - adv).tolist() == pytest.approx([3.0, -1.0, -1.0, -1.0])
    assert adv.tolist() == pytest.approx((4 / 3 * (rewards - rewards.mean())).tolist())  # k / (k - 1) * (r - mean)


def test_a_unanimous_group_gives_no_gradient():
    logp = logps().requires_grad_()
    loss, stats = rloo_loss(logp, logp.detach(), torch.tensor([1.0, 1.0]), MASK, group_size=2, beta=0.0)
    loss.backward()
    assert torch.equal(logp.grad, torch.zeros_like(logp)) and stats["adv_std"].item() == 0


def test_loss_against_hand_computed_numbers_and_the_kl_penalty_is_paid_in_the_reward():
    logp = torch.tensor([[-9.0, -9.0, -0.5, -1.0, -2.0], [-9.0, -9.0, -0.25, -7.0, -7.0]])
    ref_logp = logp - torch.tensor([[0.0, 0.0, 0.5, 0.5, 0.0], [0.0, 0.0, 0.25, 0.0, 0.0]])  # summed k1: 1.0, 0.25
    rewards = torch.tensor([1.0, 0.0])
    loss, stats = rloo_loss(logp, ref_logp, rewards, MASK, group_size=2, beta=0.0)
    assert loss.item() == pytest.approx(-(1.0 * -3.5 + -1.0 * -0.25) / 2)  # adv = +1, -1
    loss, stats = rloo_loss(logp, ref_logp, rewards, MASK, group_size=2, beta=0.4)
    # shaped rewards: 1 - 0.4 * 1.0 = 0.6 and 0 - 0.4 * 0.25 = -0.1, so adv = +0.7, -0.7
    assert loss.item() == pytest.approx(-(0.7 * -3.5 + -0.7 * -0.25) / 2)
    assert stats["kl_penalty"].item() == pytest.approx(0.625)
    assert stats["kl"].item() > 0


def test_masked_logprobs_change_nothing():
    """Prompt tokens and padding (mask 0) neither enter the loss nor get a gradient, with the KL penalty on."""
    mask = torch.cat([MASK, MASK])  # two prompts, k = 2
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0])
    logp = logps(shape=mask.shape).requires_grad_()
    ref_logp = logp.detach() - 0.2
    loss, stats = rloo_loss(logp, ref_logp, rewards, mask, group_size=2, beta=0.1)
    loss.backward()
    assert (logp.grad[~mask.bool()] == 0).all()
    changed = logps(shape=mask.shape).masked_fill(~mask.bool(), -50.0)  # garbage on every masked position
    loss2, stats2 = rloo_loss(changed, ref_logp.masked_fill(~mask.bool(), 3.0), rewards, mask, group_size=2, beta=0.1)
    assert loss2.item() == pytest.approx(loss.item())
    assert stats2["kl"].item() == pytest.approx(stats["kl"].item())


# --- bad values ---


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("group_size", 1, r"group_size=1 must be at least 2"),
        ("group_size", 0, r"group_size=0 must be at least 2"),
        ("lr", 0.0, r"lr=0.0 must be greater than 0"),
        ("lr", -1e-4, r"lr=-0.0001 must be greater than 0"),
        ("beta", -0.1, r"beta=-0.1 must be 0 \(no KL penalty\) or positive"),
        ("steps", 0, r"steps=0 must be at least 1"),
        ("init", None, r"rloo needs --init"),
    ],
)
def test_bad_values_fail_before_training(field, value, message):
    with pytest.raises(ValueError, match=message):
        validate(Config(**{"init": "sft.safetensors", field: value}))


# --- smoke ---


def test_a_few_steps_move_every_parameter(sft_checkpoint, tmp_path):
    cfg = Config(init=sft_checkpoint, steps=2, batch_size=8, group_size=4, beta=0.05, eval_every=0, device="cpu")
    cfg.out = str(tmp_path / "r")
    result = train(cfg)
    before, _, _, _ = load_checkpoint(sft_checkpoint)
    after, _, _, _ = load_checkpoint(result["checkpoint"])
    for (name, p0), p1 in zip(before.named_parameters(), after.parameters()):
        assert not torch.equal(p0, p1), f"{name} did not change"
    assert result["samples"] == 64 and [r["step"] for r in result["history"]] == [0, 1, 2]
    row = result["history"][-1]
    for key in ("reward", "reward_std", "frac_reward_zero_std", "adv_std", "kl", "kl_penalty", "entropy", "grad_norm"):
        assert key in row
    assert json.loads((Path(cfg.out) / "summary.json").read_text())["samples"] == 64


def test_cli_runs_and_lists_its_flags(sft_checkpoint, tmp_path, capsys):
    from rlrecipes.cli import main

    assert main(["run", "rloo", "--help"]) == 0
    assert "--group-size" in capsys.readouterr().out
    out = str(tmp_path / "cli")
    args = ["run", "rloo", "--init", sft_checkpoint, "--steps", "1", "--batch-size", "4", "--eval-every", "0"]
    assert main([*args, "--device", "cpu", "--out", out]) == 0
    assert (Path(out) / "summary.json").exists()
    assert main(["run", "rloo", "--init", sft_checkpoint, "--group-size", "1", "--out", out]) == 2


# --- learning ---


@pytest.mark.slow
def test_accuracy_rises_from_the_sft_checkpoint(sft_checkpoint, tmp_path):
    """30 steps of 64 prompts x 4 samples (7,680), about 6-16 s on 2 cores. Measured from the shared SFT model
    (0.718): 0.816, 0.796, 0.812 for seeds 0, 1, 2, so the margin (+0.05) leaves room for another CPU's arithmetic."""
    cfg = Config(
        init=sft_checkpoint, steps=30, batch_size=64, group_size=4, lr=1e-4, eval_every=0, seed=0, device="cpu"
    )
    cfg.out = str(tmp_path / "learn")
    result = train(cfg)
    assert result["final_accuracy"] >= result["start_accuracy"] + 0.05, result
