"""GRPO: the core on hand-made tensors, bad values, determinism, and a learning test."""

import pytest
import torch

from rlrecipes.lm.kl import kl_k1, kl_k2, kl_k3
from rlrecipes.recipes import grpo
from rlrecipes.recipes.grpo import group_advantages, grpo_loss


def test_group_advantages_have_zero_mean_and_unit_scale_per_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    adv = group_advantages(rewards, group_size=4).view(2, 4)
    assert torch.allclose(adv.mean(1), torch.zeros(2), atol=1e-6)
    assert adv[0, 0] > 0 and adv[0, 1] < 0  # right beats wrong inside its group
    assert torch.allclose(adv.std(1), torch.ones(2), atol=1e-3)
    same = group_advantages(torch.ones(4), group_size=4)
    assert torch.equal(same, torch.zeros(4))  # a group that all agree teaches nothing


def test_one_pass_ratio_is_one_and_nothing_is_clipped():
    logp = torch.randn(4, 5, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0, 0]] * 4, dtype=torch.float)
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    loss, stats = grpo_loss(logp, logp.detach(), logp.detach(), adv, mask, 0.2, 0.2, beta=0.1)
    assert stats["clip_ratio"] == 0 and stats["kl"] == 0
    loss.backward()
    # with ratio 1, the gradient is REINFORCE's: -adv / n_tokens for each completion token, 0 elsewhere
    expected = -adv[:, None] * mask / mask.sum(1, keepdim=True) / len(adv)
    assert torch.allclose(logp.grad, expected, atol=1e-6)


def test_clipping_stops_the_gradient_beyond_the_trust_region():
    old = torch.zeros(2, 1)
    logp = torch.tensor([[0.5], [-0.5]], requires_grad=True)  # ratios e^0.5 = 1.65 and e^-0.5 = 0.61
    adv = torch.tensor([1.0, -1.0])  # both would move further out: clipped
    loss, stats = grpo_loss(logp, old, old, adv, torch.ones(2, 1), 0.2, 0.2, beta=0.0)
    loss.backward()
    assert stats["clip_ratio"] == 1.0 and torch.equal(logp.grad, torch.zeros(2, 1))


def test_masked_tokens_change_nothing():
    logp = torch.randn(2, 4)
    mask = torch.tensor([[0, 1, 1, 0], [0, 0, 1, 1]], dtype=torch.float)
    adv = torch.tensor([1.0, -1.0])
    other = logp.clone()
    other[mask == 0] = 5.0  # prompt and padding positions
    a, _ = grpo_loss(logp, logp - 0.1, logp, adv, mask, 0.2, 0.2, 0.05)
    b, _ = grpo_loss(other, other - 0.1, logp.masked_fill(mask == 0, -3.0), adv, mask, 0.2, 0.2, 0.05)
    assert torch.allclose(a, b)


def test_loss_types_average_as_their_papers_say():
    per_token = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])  # -surrogate per token with adv = -1, ratio = 1
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    logp = torch.zeros(2, 3)
    adv = torch.tensor([-1.0, -1.0])
    loss = {
        t: grpo_loss(logp, logp, logp, adv, mask, 0.2, 0.2, 0.0, t, max_len=4)[0].item()
        for t in ("grpo", "dapo", "dr_grpo")
    }
    assert loss["grpo"] == pytest.approx((2 / 2 + 3 / 3) / 2)  # per completion, then per batch
    assert loss["dapo"] == pytest.approx(5 / 5)  # per token over the batch
    assert loss["dr_grpo"] == pytest.approx(5 / (2 * 4))  # by the constant: completions x max length
    assert per_token.sum() == 5


def test_dr_grpo_advantages_are_not_scaled():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert group_advantages(rewards, 4, scale=False).tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25])


def test_sequence_level_ratio_is_the_geometric_mean_of_token_ratios():
    old = torch.zeros(1, 3)
    logp = torch.tensor([[0.05, 0.15, 0.5]])  # the third token is padding; ratios stay inside the clip
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    adv = torch.tensor([1.0])
    seq, _ = grpo_loss(logp, old, old, adv, mask, 0.2, 0.2, 0.0, level="sequence")
    assert seq.item() == pytest.approx(-torch.exp(torch.tensor(0.1)).item())  # exp(mean(0.05, 0.15))
    tok, _ = grpo_loss(logp, old, old, adv, mask, 0.2, 0.2, 0.0, level="token")
    assert tok.item() == pytest.approx(-(torch.exp(torch.tensor(0.05)) + torch.exp(torch.tensor(0.15))).item() / 2)


def test_clip_higher_lets_good_tokens_grow_further():
    old = torch.zeros(1, 1)
    logp = torch.tensor([[0.25]], requires_grad=True)  # ratio 1.28: outside 1.2, inside 1.3
    adv = torch.tensor([1.0])
    _, symmetric = grpo_loss(logp, old, old, adv, torch.ones(1, 1), 0.2, 0.2, 0.0)
    _, higher = grpo_loss(logp, old, old, adv, torch.ones(1, 1), 0.2, 0.3, 0.0)
    assert symmetric["clip_ratio"] == 1.0 and higher["clip_ratio"] == 0.0


def test_kl_estimators():
    logp = torch.log(torch.tensor([0.5, 0.2, 0.3]))
    assert torch.equal(kl_k3(logp, logp), torch.zeros(3)) and torch.equal(kl_k1(logp, logp), torch.zeros(3))
    ref = torch.log(torch.tensor([0.2, 0.5, 0.3]))
    assert (kl_k3(logp, ref) >= 0).all() and (kl_k2(logp, ref) >= 0).all()
    assert (kl_k1(logp, ref) < 0).any()  # k1 can be negative per sample; k3 never is
    # k3 is unbiased: its expectation under p equals the exact KL(p || q)
    p, q = torch.tensor([0.5, 0.2, 0.3]), torch.tensor([0.2, 0.5, 0.3])
    exact = (p * (p / q).log()).sum()
    assert torch.allclose((p * kl_k3(p.log(), q.log())).sum(), exact, atol=1e-6)
    assert torch.allclose((p * kl_k1(p.log(), q.log())).sum(), exact, atol=1e-6)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("group_size", 1, "group_size=1 must be at least 2"),
        ("lr", 0.0, "lr=0.0 must be greater than 0"),
        ("clip_eps", 1.5, r"clip_eps=1.5 must be in \(0, 1\)"),
        ("beta", -0.1, "beta=-0.1 must be 0"),
        ("kl_every", -1, "kl_every=-1 must be 0"),
        ("save_every", -1, "save_every=-1 must be 0"),
        ("task", "poetry", "unknown task 'poetry'"),
        ("loss_type", "bnpo", "loss_type='bnpo' is not one of grpo, dapo, dr_grpo"),
        ("importance_sampling_level", "word", "importance_sampling_level='word' must be 'token' or 'sequence'"),
        ("clip_eps_high", 0.1, r"clip_eps_high=0.1 must be in \[clip_eps, 1\)"),
        ("device", "tpu", "device='tpu' is not one of"),
    ],
)
def test_bad_values_fail_before_any_work(tmp_path, field, value, message):
    cfg = grpo.Config(init="anything", out=str(tmp_path / "run"), **{field: value})
    with pytest.raises(ValueError, match=message):
        grpo.train(cfg)
    assert not (tmp_path / "run").exists()  # nothing was created


def test_grpo_needs_init(tmp_path):
    with pytest.raises(ValueError, match="grpo needs --init"):
        grpo.train(grpo.Config(out=str(tmp_path / "run")))


def _short(sft_checkpoint, out, **kw):
    cfg = dict(init=sft_checkpoint, out=str(out), steps=4, batch_size=8, group_size=4, eval_every=0, device="cpu")
    return grpo.train(grpo.Config(**{**cfg, **kw}))


def test_same_seed_same_run(sft_checkpoint, tmp_path):
    a = _short(sft_checkpoint, tmp_path / "a", updates_per_batch=2, beta=0.05)["history"]
    b = _short(sft_checkpoint, tmp_path / "b", updates_per_batch=2, beta=0.05)["history"]
    c = _short(sft_checkpoint, tmp_path / "c", updates_per_batch=2, beta=0.05, seed=1)["history"]
    assert a == b
    steps = [r for r in a if r["step"] > 0]  # step 0 holds the starting accuracy only
    assert [r["loss"] for r in steps] != [r["loss"] for r in c if r["step"] > 0]
    assert all("kl" in r and "clip_ratio" in r for r in steps)


@pytest.mark.parametrize(
    "variant",
    [
        {"scale_rewards": False, "loss_type": "dr_grpo"},
        {"loss_type": "dapo", "clip_eps_high": 0.28, "updates_per_batch": 2},
        {"importance_sampling_level": "sequence", "updates_per_batch": 2},
        {"drop_zero_std_groups": True, "beta": 0.04},
    ],
    ids=["dr_grpo", "dapo", "gspo", "dynamic_sampling"],
)
def test_every_variant_runs_and_learns_something(sft_checkpoint, tmp_path, variant):
    history = _short(sft_checkpoint, tmp_path / "v", **variant)["history"]
    steps = [r for r in history if r["step"] > 0]
    assert len(steps) == 4 and all(r["grad_norm"] > 0 for r in steps)
    if variant.get("updates_per_batch", 1) > 1:
        assert any(r["clip_ratio"] >= 0 for r in steps)


def test_beta_zero_runs_the_reference_only_on_the_steps_that_log_kl(sft_checkpoint, tmp_path, monkeypatch):
    """With beta = 0 the reference forward only feeds the kl metric (TRL skips it): it runs on step 1, every
    kl_every steps and the last; kl is logged on exactly those steps, never as a stand-in 0."""
    grad_modes = []  # one entry per sequence_logprobs call: False = reference (no grad), True = policy
    real = grpo.sequence_logprobs
    monkeypatch.setattr(
        grpo, "sequence_logprobs", lambda *a, **k: grad_modes.append(torch.is_grad_enabled()) or real(*a, **k)
    )
    history = _short(sft_checkpoint, tmp_path / "r", steps=5, kl_every=2)["history"]
    steps = [r for r in history if r["step"] > 0]
    assert [r["step"] for r in steps if "kl" in r] == [1, 2, 4, 5]
    assert grad_modes.count(False) == 4 and grad_modes.count(True) == 5
    assert all(r["kl"] > 0 for r in steps if r["step"] > 1 and "kl" in r)  # the policy has moved from its start


def test_every_parameter_moves(sft_checkpoint, tmp_path):
    from rlrecipes.runs import load_checkpoint

    result = _short(sft_checkpoint, tmp_path / "r", lr=1e-3)
    before, _, _, _ = load_checkpoint(sft_checkpoint)
    after, _, _, _ = load_checkpoint(result["checkpoint"])
    unchanged = [n for (n, p), q in zip(before.named_parameters(), after.parameters()) if torch.equal(p, q)]
    assert unchanged == [], unchanged


def test_save_every_keeps_a_loadable_checkpoint_at_each_multiple(sft_checkpoint, tmp_path):
    from rlrecipes.runs import load_checkpoint, resolve_checkpoint

    result = _short(sft_checkpoint, tmp_path / "r", lr=1e-3, save_every=2)
    kept = sorted(p.name for p in (tmp_path / "r").glob("grpo-step-*.safetensors"))
    assert kept == ["grpo-step-0002.safetensors", "grpo-step-0004.safetensors"]
    (mid, _, mid_state, _), (last, _, last_state, _) = (load_checkpoint(tmp_path / "r" / name) for name in kept)
    final, _, _, _ = load_checkpoint(result["checkpoint"])
    start, _, _, _ = load_checkpoint(sft_checkpoint)
    assert (mid_state["step"], last_state["step"]) == (2, 4)
    assert all(torch.equal(p, q) for p, q in zip(last.parameters(), final.parameters()))  # step 4 is the end
    assert not torch.equal(mid.tok_emb.weight, final.tok_emb.weight)  # a snapshot on the way, not a copy of it
    assert not torch.equal(mid.tok_emb.weight, start.tok_emb.weight)
    assert resolve_checkpoint(tmp_path / "r") == tmp_path / "r" / "grpo.safetensors"  # --init DIR: the final one


@pytest.mark.slow
def test_grpo_raises_heldout_accuracy(trained_models, tmp_path):
    """From the shared SFT model, 40 GRPO steps (10,240 samples, about 20 s) lift held-out accuracy by 0.10 or more."""
    result = grpo.train(
        grpo.Config(init=trained_models["sft"], out=str(tmp_path / "g"), steps=40, eval_every=0, device="cpu")
    )
    assert result["start_accuracy"] == pytest.approx(trained_models["sft_accuracy"])
    assert result["final_accuracy"] >= result["start_accuracy"] + 0.10, result
    rewards = [r["reward"] for r in result["history"] if r["step"] > 0]
    assert sum(rewards[-10:]) / 10 > sum(rewards[:10]) / 10  # the sampled reward rose too
