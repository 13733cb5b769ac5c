"""REINFORCE: the loss against hand-computed numbers, the baseline, the masks, bad values, a smoke run,
and a learning test from the shared SFT checkpoint."""

import json
from pathlib import Path

import pytest
import torch

from rlrecipes.recipes.reinforce import Config, moving_average_baseline, reinforce_loss, train, validate
from rlrecipes.runs import load_checkpoint

# Two completions, T = 5 positions: prompt (mask 0), completion tokens (mask 1), right padding (mask 0).
MASK = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 1, 0, 0]], dtype=torch.float)


def logps(seed=0):
    g = torch.Generator().manual_seed(seed)
    return -torch.rand(MASK.shape, generator=g) * 3  # (N, T) log-probs are <= 0


# --- math ---


def test_loss_is_minus_mean_advantage_times_sequence_logprob():
    logp = torch.tensor([[-9.0, -9.0, -0.5, -1.0, -2.0], [-9.0, -9.0, -0.25, -7.0, -7.0]])
    rewards, baseline = torch.tensor([1.0, 0.0]), 0.25
    loss, stats = reinforce_loss(logp, logp, rewards, baseline, MASK)
    # completion 1: adv 0.75, log pi = -3.5; completion 2: adv -0.25, log pi = -0.25
    assert loss.item() == pytest.approx(-(0.75 * -3.5 + -0.25 * -0.25) / 2)
    assert stats["adv_mean"].item() == pytest.approx(0.25)
    assert stats["kl"].item() == 0.0 and stats["kl_k1"].item() == 0.0  # policy == reference


def test_constant_reward_with_its_moving_average_baseline_gives_zero_gradient():
    rewards = torch.full((2,), 0.7)
    avg = 0.0
    for n in range(3):  # the baseline is the same constant after any number of batches (bias-corrected)
        avg, baseline = moving_average_baseline(avg, n, rewards, decay=0.9)
        assert baseline == pytest.approx(0.7)
    logp = logps().requires_grad_()
    loss, _ = reinforce_loss(logp, logp.detach(), rewards, baseline, MASK)
    loss.backward()
    assert torch.allclose(logp.grad, torch.zeros_like(logp), atol=1e-7)


def test_moving_average_is_bias_corrected_and_only_from_past_batches():
    avg, b1 = moving_average_baseline(0.0, 0, torch.tensor([1.0, 0.0]), decay=0.9)
    assert b1 == pytest.approx(0.5)  # after one batch: that batch's mean, not 0.1 * it
    avg, b2 = moving_average_baseline(avg, 1, torch.tensor([1.0, 1.0]), decay=0.9)
    assert b2 == pytest.approx((0.9 * 0.1 * 0.5 + 0.1 * 1.0) / (1 - 0.9**2))  # weights 0.09 and 0.1


def test_without_a_baseline_every_right_answer_is_pushed_up():
    logp = logps().requires_grad_()
    loss, _ = reinforce_loss(logp, logp.detach(), torch.tensor([1.0, 1.0]), 0.0, MASK)
    loss.backward()
    assert (logp.grad[MASK.bool()] < 0).all()  # gradient descent raises every completion token's log-prob


def test_masked_logprobs_change_nothing():
    """Prompt tokens and padding (mask 0) neither enter the loss nor get a gradient."""
    rewards = torch.tensor([1.0, 0.0])
    logp = logps().requires_grad_()
    loss, stats = reinforce_loss(logp, logp.detach() - 0.1, rewards, 0.3, MASK)
    loss.backward()
    assert (logp.grad[~MASK.bool()] == 0).all()
    changed = logps().masked_fill(~MASK.bool(), -50.0)  # garbage on every masked position
    loss2, stats2 = reinforce_loss(changed, changed - 0.1, rewards, 0.3, MASK)
    assert loss2.item() == pytest.approx(loss.item())
    assert stats2["kl"].item() == pytest.approx(stats["kl"].item())


# --- bad values ---


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("lr", 0.0, r"lr=0.0 must be greater than 0"),
        ("lr", -1e-3, r"lr=-0.001 must be greater than 0"),
        ("baseline", "mean", r"baseline='mean' is not one of moving_average, none"),
        ("baseline_decay", 1.0, r"baseline_decay=1.0 must be in \[0, 1\)"),
        ("batch_size", 0, r"batch_size=0 must be at least 1"),
        ("temperature", 0.0, r"temperature=0.0 must be greater than 0"),
        ("init", None, r"reinforce needs --init"),
    ],
)
def test_bad_values_fail_before_training(field, value, message):
    with pytest.raises(ValueError, match=message):
        validate(Config(**{"init": "sft.safetensors", field: value}))


# --- smoke ---


def test_a_few_steps_move_every_parameter(sft_checkpoint, tmp_path):
    cfg = Config(init=sft_checkpoint, steps=2, batch_size=16, eval_every=0, device="cpu", out=str(tmp_path / "r"))
    result = train(cfg)
    before, _, _, _ = load_checkpoint(sft_checkpoint)
    after, _, _, _ = load_checkpoint(result["checkpoint"])
    for (name, p0), p1 in zip(before.named_parameters(), after.parameters()):
        assert not torch.equal(p0, p1), f"{name} did not change"
    assert set(result) >= {"start_accuracy", "final_accuracy", "seconds", "samples", "checkpoint", "history"}
    assert result["samples"] == 32 and [r["step"] for r in result["history"]] == [0, 1, 2]
    row = result["history"][-1]
    for key in ("reward", "reward_std", "baseline", "adv_std", "kl", "entropy", "completions/mean_length", "grad_norm"):
        assert key in row
    assert json.loads((Path(cfg.out) / "summary.json").read_text())["samples"] == 32
    assert "reinforce" in json.loads((Path(cfg.out) / "config.json").read_text())


def test_cli_runs_and_lists_its_flags(sft_checkpoint, tmp_path, capsys):
    from rlrecipes.cli import main

    assert main(["run", "reinforce", "--help"]) == 0
    assert "--baseline-decay" in capsys.readouterr().out
    out = str(tmp_path / "cli")
    args = ["run", "reinforce", "--init", sft_checkpoint, "--steps", "1", "--batch-size", "8", "--eval-every", "0"]
    assert main([*args, "--device", "cpu", "--out", out]) == 0
    assert (Path(out) / "summary.json").exists()
    assert main(["run", "reinforce", "--init", sft_checkpoint, "--baseline", "mean", "--out", out]) == 2


# --- learning ---


@pytest.mark.slow
def test_accuracy_rises_from_the_sft_checkpoint(sft_checkpoint, tmp_path):
    """30 steps of 128 samples (3,840), about 5-15 s on 2 cores. Measured from the shared SFT model (0.718):
    0.812, 0.828, 0.806 for seeds 0, 1, 2, so the margin (+0.05) leaves room for another CPU's arithmetic."""
    cfg = Config(init=sft_checkpoint, steps=30, batch_size=128, lr=1e-4, eval_every=0, seed=0, device="cpu")
    cfg.out = str(tmp_path / "learn")
    result = train(cfg)
    assert result["final_accuracy"] >= result["start_accuracy"] + 0.05, result
