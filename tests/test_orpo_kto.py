"""ORPO and KTO: each loss against a worked example, gradient signs, KTO's reference point, bad values, a
smoke run of each CLI command, and a short learning test of each from the shared pretrained checkpoint."""

import json
import math

import pytest
import torch

from rlrecipes.recipes import kto, orpo
from rlrecipes.runs import load_checkpoint

# One pair (B = 1), layout (2B, T): row 0 the chosen completion (2 tokens), row 1 the rejected one (3 tokens).
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
LOGP = torch.tensor([[-0.5, -0.5, 0.0], [-1.0, -1.0, -1.0]])  # per-token averages: chosen -0.5, rejected -1.0


# --- ORPO math ---


def test_log_odds_is_log_p_over_1_minus_p():
    for p in (0.01, 0.3, 0.5, 0.9, 0.999):
        assert orpo.log_odds(torch.tensor([math.log(p)])).item() == pytest.approx(math.log(p / (1 - p)), rel=1e-5)
    assert torch.isfinite(orpo.log_odds(torch.tensor([0.0]))).all()  # P = 1: capped, not infinite


def test_orpo_against_a_worked_example():
    loss, stats = orpo.orpo_loss(LOGP, MASK, lam=0.1)
    # P_c = e^-0.5 = 0.60653, odds_c = 0.60653 / 0.39347 = 1.54149, log odds_c = 0.43275
    # P_r = e^-1.0 = 0.36788, odds_r = 0.36788 / 0.63212 = 0.58198, log odds_r = -0.54132
    # log odds ratio = 0.97408; -log sigmoid(0.97408) = log(1 + e^-0.97408) = 0.32030
    # NLL of the chosen = -(-0.5 - 0.5) / 2 tokens = 0.5;  loss = 0.5 + 0.1 * 0.32030 = 0.53203
    ratio = math.log(1.5414941 / 0.5819767)
    assert ratio == pytest.approx(0.97408, abs=1e-5)
    assert stats["log_odds_chosen"].item() == pytest.approx(ratio, abs=1e-5)
    assert stats["log_odds_ratio"].item() == pytest.approx(-math.log(1 + math.exp(-ratio)), abs=1e-5)
    assert stats["nll_loss"].item() == pytest.approx(0.5)
    assert loss.item() == pytest.approx(0.5 + 0.1 * 0.32030, abs=1e-5)
    assert stats["rewards/chosen"].item() == pytest.approx(-0.05)  # lambda * average log-prob, as TRL logs it
    assert stats["rewards/accuracies"].item() == 1.0


def test_orpo_with_lambda_zero_is_sft_on_the_chosen():
    loss, stats = orpo.orpo_loss(LOGP, MASK, lam=0.0)
    assert loss.item() == pytest.approx(stats["nll_loss"].item())


def test_orpo_odds_ratio_term_raises_the_chosen_and_lowers_the_rejected():
    logp = LOGP.clone().requires_grad_()
    loss, stats = orpo.orpo_loss(logp, MASK, lam=1.0)
    (loss - stats["nll_loss"]).backward()  # the odds-ratio term alone (the NLL only ever raises the chosen)
    assert (logp.grad[0, MASK[0].bool()] < 0).all() and (logp.grad[1, MASK[1].bool()] > 0).all()
    assert (logp.grad[~MASK.bool()] == 0).all()


# --- KTO math ---


def kto_batch(log_ratios: list[float], mismatched: list[float]):
    """One-token completions, the reference at 0: each row's log pi/ref is the number given."""
    logp = torch.tensor(log_ratios + mismatched)[:, None]  # (2B, 1)
    return logp, torch.zeros_like(logp), torch.ones_like(logp)


def test_kto_against_a_worked_example():
    logp, ref_logp, mask = kto_batch([1.0, -0.5], [0.4, 0.2])
    desirable = torch.tensor([True, False])
    loss, stats = kto.kto_loss(logp, ref_logp, mask, desirable, beta=2.0, desirable_weight=1.0, undesirable_weight=0.75)
    # z0 = mean(0.4, 0.2) = 0.3
    # desirable, r = 1.0:    v = 1.0 * sigmoid(2 * (1.0 - 0.3)) = sigmoid(1.4) = 0.80218;     loss 1 - v = 0.19782
    # undesirable, r = -0.5: v = 0.75 * sigmoid(2 * (0.3 + 0.5)) = 0.75 * 0.83202 = 0.62401;  loss 0.75 - v = 0.12599
    # mean = (0.19782 + 0.12599) / 2 = 0.16190
    assert loss.item() == pytest.approx(0.16190, abs=1e-5)
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert loss.item() == pytest.approx(((1 - sigmoid(1.4)) + (0.75 - 0.75 * sigmoid(1.6))) / 2)
    assert stats["kl"].item() == pytest.approx(0.3)
    assert stats["rewards/chosen"].item() == pytest.approx(2.0)  # beta * r
    assert stats["rewards/rejected"].item() == pytest.approx(-1.0)
    assert stats["rewards/margins"].item() == pytest.approx(3.0)


def test_kto_reference_point_is_clamped_at_zero_and_not_trained_through():
    logp, ref_logp, mask = kto_batch([1.0, -0.5], [-0.4, -0.2])  # a negative KL estimate: noise, clamped to 0
    logp.requires_grad_()
    loss, stats = kto.kto_loss(logp, ref_logp, mask, torch.tensor([True, False]), beta=2.0)
    assert stats["kl"].item() == 0.0
    loss.backward()
    assert torch.equal(logp.grad[2:], torch.zeros(2, 1))  # the mismatched rows only set z0, a constant
    assert logp.grad[0].item() < 0 < logp.grad[1].item()  # desirable up, undesirable down


def test_kto_at_the_reference_is_half_of_lambda():
    logp, ref_logp, mask = kto_batch([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    loss, _ = kto.kto_loss(logp, ref_logp, mask, torch.tensor([True, False, True]), beta=0.1, undesirable_weight=0.5)
    assert loss.item() == pytest.approx((0.5 + 0.25 + 0.5) / 3)  # sigmoid(0) = 1/2 of each lambda is still to win


# --- bad values ---


@pytest.mark.parametrize(
    "module, field, value, message",
    [
        (orpo, "lam", -0.1, r"lam=-0.1 must be 0 \(plain SFT on the chosen\) or positive"),
        (orpo, "lr", 0.0, r"lr=0.0 must be greater than 0"),
        (orpo, "init", None, r"orpo needs --init"),
        (orpo, "pairs", "missing.jsonl", r"pairs='missing.jsonl' is not a file"),
        (kto, "beta", 0.0, r"beta=0.0 must be greater than 0"),
        (kto, "beta", -1.0, r"beta=-1.0 must be greater than 0"),
        (kto, "desirable_weight", 0.0, r"desirable_weight=0.0 must be greater than 0"),
        (kto, "undesirable_weight", -1.0, r"undesirable_weight=-1.0 must be greater than 0"),
        (kto, "batch_size", 1, r"batch_size=1 must be at least 2"),
        (kto, "init", None, r"kto needs --init"),
    ],
)
def test_bad_values_fail_before_training(module, field, value, message):
    with pytest.raises(ValueError, match=message):
        module.validate(module.Config(**{"init": "pretrain.safetensors", field: value}))


@pytest.mark.parametrize("module", [orpo, kto], ids=["orpo", "kto"])
def test_a_bad_pairs_file_fails_naming_its_line_before_any_work(module, tmp_path):
    good = {"prompt": "soup at ivy:", "chosen": "lovely soup.", "rejected": "bland soup."}
    bad = tmp_path / "bad.jsonl"
    missing = {"prompt": good["prompt"], "chosen": good["chosen"]}
    for line, message in [({**good, "rejected": good["chosen"]}, r"line 2: chosen == rejected"),
                          ({**good, "chosen": ""}, r"line 2: 'chosen' is an empty completion"),
                          (missing, r"line 2: missing field 'rejected'")]:  # fmt: skip
        bad.write_text(json.dumps(good) + "\n" + json.dumps(line) + "\n")
        cfg = module.Config(init="missing.safetensors", task="reviews", pairs=str(bad), out=str(tmp_path / "run"))
        with pytest.raises(ValueError, match=message):  # the pairs are checked before the checkpoint is even read
            module.train(cfg)
    assert not (tmp_path / "run").exists()


# --- smoke ---


@pytest.mark.parametrize("name, keys", [("orpo", ["nll_loss", "log_odds_ratio"]), ("kto", ["kl"])])
def test_cli_runs_a_few_steps_and_moves_every_parameter(trained_models, tmp_path, name, keys):
    from rlrecipes.cli import main

    out = tmp_path / name
    args = ["run", name, "--init", trained_models["pretrain"], "--steps", "2", "--batch-size", "4", "--n-pairs", "16"]
    assert main([*args, "--eval-every", "0", "--device", "cpu", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    before, _, _, _ = load_checkpoint(trained_models["pretrain"])
    after, _, _, _ = load_checkpoint(summary["checkpoint"])
    for (param, p0), p1 in zip(before.named_parameters(), after.parameters()):
        assert not torch.equal(p0, p1), f"{name}: {param} did not change"
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ["rewards/chosen", "rewards/rejected", "rewards/margins", "loss", "grad_norm", "learning_rate", *keys]:
        assert key in row, key


# --- learning ---


@pytest.mark.slow
def test_orpo_lifts_held_out_accuracy_from_the_pretrained_model(trained_models, tmp_path):
    """Measured (seed 0): 0.588 -> 0.728 in 30 steps, about 3 s on one core. Asserted: +0.1."""
    cfg = orpo.Config(init=trained_models["pretrain"], steps=30, eval_every=0, device="cpu", out=str(tmp_path / "o"))
    result = orpo.train(cfg)
    assert result["final_accuracy"] >= result["start_accuracy"] + 0.1, result


@pytest.mark.slow
def test_kto_lifts_held_out_accuracy_from_the_pretrained_model(trained_models, tmp_path):
    """Measured (seed 0): 0.588 -> 0.706 in 60 steps, about 7 s on one core. Asserted: +0.05."""
    cfg = kto.Config(init=trained_models["pretrain"], steps=60, eval_every=0, device="cpu", out=str(tmp_path / "k"))
    result = kto.train(cfg)
    assert result["final_accuracy"] >= result["start_accuracy"] + 0.05, result
