"""Reward model and best-of-N: the cores by hand, Bradley-Terry labelling, bad values, smoke runs, and a
learning test on the reviews task (pretrain -> SFT -> pairs -> reward model -> best-of-N)."""

import json
import math
import random

import pytest
import torch
import torch.nn as nn

from rlrecipes.cli import main
from rlrecipes.lm.model import GPTConfig, TinyGPT
from rlrecipes.lm.tokenizer import CharTokenizer
from rlrecipes.preferences import bradley_terry_labels, group_by_prompt, load_pairs, save_pairs
from rlrecipes.recipes import best_of_n, reward_model
from rlrecipes.recipes.best_of_n import kl_bound
from rlrecipes.recipes.reward_model import bradley_terry_loss, calibration, last_token_scores, load_reward_model
from rlrecipes.runs import CheckpointError, load_checkpoint, save_checkpoint
from rlrecipes.tasks import evaluate
from rlrecipes.tasks.reviews import ReviewsTask, gold_win_rate

# --- math ---


def test_bradley_terry_loss_is_log2_at_zero_margin_and_matches_a_hand_computation():
    loss, stats = bradley_terry_loss(torch.zeros(3), torch.zeros(3))
    assert loss.item() == pytest.approx(math.log(2)) and stats["accuracy"] == 0  # a tie is not a right answer
    r_c, r_r = torch.tensor([2.0, 0.0, 1.0]), torch.tensor([1.0, 1.0, 1.0])
    loss, stats = bradley_terry_loss(r_c, r_r)
    by_hand = sum(-math.log(1 / (1 + math.exp(-m))) for m in (1.0, -1.0, 0.0)) / 3
    assert loss.item() == pytest.approx(by_hand) and stats["accuracy"].item() == pytest.approx(1 / 3)
    shifted, _ = bradley_terry_loss(r_c + 5, r_r + 5)  # only differences matter
    assert shifted.item() == pytest.approx(loss.item())


def test_the_loss_pushes_chosen_up_and_rejected_down():
    r_c, r_r = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    bradley_terry_loss(r_c, r_r)[0].backward()
    assert (r_c.grad < 0).all() and (r_r.grad > 0).all()  # gradient descent raises r_chosen, lowers r_rejected
    assert torch.allclose(r_c.grad, -r_r.grad)


def test_scores_are_read_at_the_last_real_token():
    hidden = torch.arange(2 * 5 * 1, dtype=torch.float).view(2, 5, 1)  # hidden[b, t] = 5b + t
    mask = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 1, 1, 1]])  # row 0: left and right padding
    head = nn.Linear(1, 1)
    nn.init.ones_(head.weight)
    nn.init.zeros_(head.bias)
    assert last_token_scores(hidden, mask, head).tolist() == [3.0, 9.0]


def test_kl_bound_of_best_of_n():
    assert kl_bound(1) == 0.0
    assert kl_bound(2) == pytest.approx(math.log(2) - 0.5)
    values = [kl_bound(n) for n in (1, 2, 4, 8, 16, 32)]
    assert values == sorted(values) and values[-1] < math.log(32)


def test_best_of_n_picks_the_top_score_among_the_first_n():
    scores = torch.tensor([[0.1, 0.9, 0.5, 2.0], [3.0, 0.0, 1.0, 4.0]])
    assert best_of_n.best_of_n(scores, 1).tolist() == [0, 0]
    assert best_of_n.best_of_n(scores, 3).tolist() == [1, 0]
    assert best_of_n.best_of_n(scores, 4).tolist() == [3, 3]


def test_calibration_of_uninformed_and_of_confident_scores():
    bins, ece = calibration(torch.zeros(100))  # always 0.5: each pair counted both ways, half right
    assert len(bins) == 1 and bins[0]["observed"] == 0.5 and ece == pytest.approx(0.0)
    bins, ece = calibration(torch.full((100,), 10.0))  # sure, and always right
    assert ece < 1e-3 and [b["observed"] for b in bins] == [0.0, 1.0]


# --- Bradley-Terry labels and pairs files ---


def numeric_judge(prompts, completions):
    return [float(c or 0) for c in completions]


def test_label_noise_matches_the_bradley_terry_rate():
    """Gold margins of 0.1 at temperature 0.1: each label is flipped with probability sigmoid(-1) = 0.269."""
    n = 4000
    pairs, stats = bradley_terry_labels(numeric_judge, ["p"] * n, ["0.6"] * n, ["0.5"] * n, 0.1, random.Random(0))
    expected = 1 / (1 + math.e)
    assert stats["expected_label_noise"] == pytest.approx(expected)
    assert abs(stats["label_noise"] - expected) < 0.02  # 4000 draws: the standard error is 0.007
    assert sum(p["chosen"] == "0.5" for p in pairs) / n == pytest.approx(stats["label_noise"])
    _, cold = bradley_terry_labels(numeric_judge, ["p"] * n, ["0.6"] * n, ["0.5"] * n, 0.01, random.Random(0))
    assert cold["label_noise"] < 0.001  # a sharp annotator: sigmoid(-10)


def test_ties_and_empty_completions_are_dropped():
    pairs, stats = bradley_terry_labels(
        numeric_judge, ["p"] * 3, ["0.5", "0.7", "0.9"], ["0.5", "", "0.1"], 0.1, random.Random(0)
    )
    assert (
        stats["ties_dropped"] == 1 and len(pairs) == 1 and {pairs[0]["chosen"], pairs[0]["rejected"]} == {"0.9", "0.1"}
    )
    with pytest.raises(ValueError, match="temperature=0 must be greater than 0"):
        bradley_terry_labels(numeric_judge, ["p"], ["1"], ["0"], 0, random.Random(0))


def test_pairs_round_trip_through_jsonl_and_group_by_prompt(tmp_path):
    task = ReviewsTask()
    prompts = [p for p in task.train_prompts(50, random.Random(0)) for _ in range(3)]
    a, b = (
        ["the pizza was lovely.", "bland.", "the food was fine."] * 50,
        ["cold cold.", "the soup was tasty.", "okay!"] * 50,
    )
    pairs, _ = bradley_terry_labels(task.reward, prompts, a, b, 0.1, random.Random(0))
    save_pairs(tmp_path / "pairs.jsonl", pairs)
    loaded = load_pairs(tmp_path / "pairs.jsonl")
    assert loaded == pairs and set(loaded[0]) == {"prompt", "chosen", "rejected"}
    groups = group_by_prompt(loaded)
    assert sum(len(g) for g in groups) == len(pairs) and all(len({p["prompt"] for p in g}) == 1 for g in groups)


# --- bad values ---


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("init", None, "reward_model needs --init"),
        ("init", "hf:gpt2", "saved in a TinyGPT checkpoint"),
        ("task", "poetry", "unknown task 'poetry'"),
        ("completions_per_prompt", 1, "completions_per_prompt=1 must be at least 2"),
        ("n_prompts", 0, "n_prompts=0 must be at least 1"),
        ("label_temperature", 0.0, "label_temperature=0.0 must be greater than 0"),
        ("lr", -1.0, "lr=-1.0 must be greater than 0"),
        ("baseline_steps", -1, "baseline_steps=-1 must be 0 or more"),
        ("pairs", "missing.jsonl", "pairs file 'missing.jsonl' does not exist"),
        ("device", "tpu", "device='tpu' is not one of"),
    ],
)
def test_reward_model_bad_values_fail_before_any_work(tmp_path, field, value, message):
    cfg = reward_model.Config(init="anything", out=str(tmp_path / "run"))
    setattr(cfg, field, value)
    with pytest.raises(ValueError, match=message):
        reward_model.train(cfg)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("reward_model", None, "best_of_n needs --reward-model"),
        ("ns", (4, 2), r"ns=\(4, 2\) must be distinct positive integers in increasing order"),
        ("ns", (0, 1), "must be distinct positive integers"),
        ("ns", (1, 512), "N up to 256"),
        ("repeats", 0, "repeats=0 must be at least 1"),
        ("temperature", 0.0, "temperature=0.0 must be greater than 0"),
    ],
)
def test_best_of_n_bad_values_fail_before_any_work(tmp_path, field, value, message):
    cfg = best_of_n.Config(init="anything", reward_model="anything", out=str(tmp_path / "run"))
    setattr(cfg, field, value)
    with pytest.raises(ValueError, match=message):
        best_of_n.train(cfg)
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_without_a_reward_head_is_a_clear_error(tmp_path):
    model = TinyGPT(GPTConfig(vocab_size=CharTokenizer(ReviewsTask.alphabet).vocab_size, n_layer=1, n_embd=16))
    save_checkpoint(tmp_path / "sft.safetensors", model, CharTokenizer(ReviewsTask.alphabet), {"complete": True})
    with pytest.raises(CheckpointError, match="holds no reward head"):
        load_reward_model(tmp_path / "sft.safetensors")


# --- smoke: a tiny random model, a few steps, through the CLI ---


def test_smoke_reward_model_then_best_of_n_through_the_cli(tmp_path, capsys):
    torch.manual_seed(0)
    tokenizer = CharTokenizer(ReviewsTask.alphabet)
    init = save_checkpoint(
        tmp_path / "tiny.safetensors",
        TinyGPT(GPTConfig(tokenizer.vocab_size, 64, 1, 2, 16)),
        tokenizer,
        {"complete": True},
    )
    rm_dir, bon_dir = tmp_path / "rm", tmp_path / "bon"
    args = [
        "--init",
        str(init),
        "--n-prompts",
        "16",
        "--heldout-samples",
        "2",
        "--baseline-steps",
        "5",
        "--device",
        "cpu",
    ]
    assert main(["run", "reward_model", *args, "--out", str(rm_dir)]) == 0
    summary = json.loads((rm_dir / "summary.json").read_text())
    for key in ("heldout_accuracy", "baseline_heldout_accuracy", "label_noise", "calibration_error", "n_pairs"):
        assert summary[key] is not None
    assert (rm_dir / "calibration.png").exists() and load_pairs(rm_dir / "pairs.jsonl")
    before, _, _, _ = load_checkpoint(init)
    after, _, _, extra = load_checkpoint(rm_dir / "reward_model.safetensors")
    for (name, p0), p1 in zip(before.named_parameters(), after.parameters()):
        assert not torch.equal(p0, p1), f"{name} did not change"
    assert extra["reward_head.weight"].abs().sum() > 0 and extra["reward_head.bias"].shape == (1,)
    reward = load_reward_model(rm_dir)
    scores = reward(["pizza at rosa:"] * 2, ["the pizza was lovely.", "x" * 200])  # too long: cut, not an error
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)

    assert main(["run", "best_of_n", "--init", str(init), "--reward-model", str(rm_dir), "--ns", "1", "2",
                 "--repeats", "1", "--device", "cpu", "--out", str(bon_dir)]) == 0  # fmt: skip
    summary = json.loads((bon_dir / "summary.json").read_text())
    assert summary["ns"] == [1, 2] and len(summary["gold_win_rate"]) == 2 and summary["kl_bound"][0] == 0.0
    assert (bon_dir / "best_of_n.png").exists() and "win rate vs SFT" in capsys.readouterr().out


# --- learning: the reviews pipeline ---


@pytest.fixture(scope="session")
def reviews_pipeline(reviews_sft, reviews_rm, tmp_path_factory) -> dict:
    """The reward model (shared, from conftest) and a best-of-N run on top of the SFT model, once per session."""
    out = tmp_path_factory.mktemp("reviews")
    bon = best_of_n.train(best_of_n.Config(init=reviews_sft, reward_model=str(reviews_rm["dir"]), ns=(1, 4, 16),
                                           repeats=4, seed=0, device="cpu", out=str(out / "bon")))  # fmt: skip
    return {"rm": {**reviews_rm["summary"], "history": reviews_rm["history"]}, "bon": bon, "rm_dir": reviews_rm["dir"]}


@pytest.mark.slow
def test_reward_model_learns_the_gold_ordering_from_noisy_labels(reviews_pipeline):
    rm = reviews_pipeline["rm"]
    # The simulated annotator (temperature 0.1) contradicts the gold judge on about 14% of pairs.
    assert 0.10 < rm["label_noise"] < 0.18 and abs(rm["label_noise"] - rm["expected_label_noise"]) < 0.02
    assert rm["n_pairs"] > 8000 and rm["n_heldout_pairs"] > 800
    # Measured 0.862 (bag of characters 0.776): it orders unseen prompts' pairs better than its own labels do.
    assert rm["heldout_accuracy"] >= 0.80
    assert rm["heldout_accuracy"] >= rm["baseline_heldout_accuracy"]
    assert rm["heldout_accuracy"] > 1 - rm["label_noise"]
    assert rm["calibration_error"] < 0.1 and (reviews_pipeline["rm_dir"] / "calibration.png").exists()
    losses = [r["loss"] for r in rm["history"]]
    assert sum(losses[-50:]) / 50 < sum(losses[:10]) / 10 - 0.1


@pytest.mark.slow
def test_best_of_n_wins_against_the_sft_model(reviews_pipeline, reviews_sft):
    bon = reviews_pipeline["bon"]
    assert 0.4 < bon["gold_win_rate"][0] < 0.65  # N = 1 is the SFT model against itself
    assert bon["gold_win_rate"][-1] >= 0.70  # measured 0.87 at N = 16
    assert bon["gold_reward"][-1] > bon["gold_reward"][0] + 0.1
    assert bon["rm_score"] == sorted(bon["rm_score"])  # the proxy always rises with N; the gold need not
    assert all(g <= o + 1e-6 for g, o in zip(bon["gold_reward"], bon["oracle_gold_reward"]))
    # evaluate() on this task counts perfect reviews; a policy against itself wins exactly half
    model, tokenizer, _, _ = load_checkpoint(reviews_sft)
    accuracy, prompts, completions = evaluate(model, tokenizer, ReviewsTask())
    assert 0.0 <= accuracy <= 1.0 and len(completions) == 60
    assert gold_win_rate(completions, completions, prompts) == 0.5
