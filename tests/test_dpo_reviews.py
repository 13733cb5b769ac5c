"""DPO, ORPO and KTO on the reviews task: pairs sampled from the SFT model and labelled by the hidden gold judge,
`gold_win_rate` in every summary, and the issue's target: DPO's policy beats the SFT model in the gold judge's eyes
on held-out prompts at least 70% of the time."""

import json

import pytest

from rlrecipes.preferences import load_pairs, task_pairs
from rlrecipes.recipes import dpo, kto, orpo
from rlrecipes.runs import load_checkpoint
from rlrecipes.tasks import get_task


def test_reviews_pairs_are_the_models_samples_labelled_by_the_gold_judge(reviews_sft):
    task = get_task("reviews")
    model, tokenizer, _, _ = load_checkpoint(reviews_sft)
    pairs = task_pairs(task, 200, 0, model, tokenizer)
    assert 150 <= len(pairs) <= 200  # one pair a prompt, ties dropped
    assert task_pairs(task, 200, 0, model, tokenizer) == pairs  # the same seed, the same pairs
    heldout = set(task.heldout_prompts())
    assert all(p["prompt"] not in heldout and p["chosen"] != p["rejected"] for p in pairs)
    prompts = [p["prompt"] for p in pairs]
    agree = [c > r for c, r in zip(task.reward(prompts, [p["chosen"] for p in pairs]),
                                   task.reward(prompts, [p["rejected"] for p in pairs]))]  # fmt: skip
    # labels are a noisy Bradley-Terry draw at temperature 0.1: most, not all, follow the judge (measured 0.85)
    assert 0.75 <= sum(agree) / len(agree) < 1.0


def test_a_task_without_pairs_says_so():
    with pytest.raises(ValueError, match=r"task='maze' has no built-in preference pairs .*pass --pairs"):
        task_pairs(get_task("maze"), 10, 0)


@pytest.mark.parametrize("module", [dpo, orpo, kto], ids=["dpo", "orpo", "kto"])
def test_smoke_on_reviews_samples_its_own_pairs_and_reports_gold_win_rate(module, reviews_sft, tmp_path):
    out = tmp_path / module.__name__.rsplit(".", 1)[-1]
    cfg = module.Config(init=reviews_sft, task="reviews", n_pairs=16, steps=2, batch_size=4, eval_every=0,
                        device="cpu", out=str(out))  # fmt: skip
    module.train(cfg)
    summary = json.loads((out / "summary.json").read_text())
    assert 0.0 <= summary["gold_win_rate"] <= 1.0
    assert 10 <= len(load_pairs(out / "pairs.jsonl")) <= 16  # the sampled pairs are kept in the run folder


@pytest.mark.slow
def test_dpo_beats_the_sft_model_by_the_gold_judge(reviews_sft, reviews_rm, tmp_path):
    """DPO with its defaults (beta 0.1, lr 3e-4, RPO alpha 1) on the pairs the reward model learned from (the SFT
    model's own samples, gold-labelled with 14% label noise), 60 steps of 32 pairs. Measured (seed 0): gold win
    rate 0.801 over the SFT model (100 steps: 0.784; seeds 1, 2 at 100 steps: 0.776, 0.769), about 23 s on one
    core, 17 s of it training. Asserted: 0.70, the target; the sampling error of the rate is about 0.02."""
    pairs = str(reviews_rm["dir"] / "pairs.jsonl")
    cfg = dpo.Config(init=reviews_sft, task="reviews", pairs=pairs, steps=60, eval_every=0, seed=0, device="cpu",
                     out=str(tmp_path / "dpo"))  # fmt: skip
    result = dpo.train(cfg)
    assert result["gold_win_rate"] >= 0.70, result["gold_win_rate"]
    accuracies = [row["rewards/accuracies"] for row in result["history"] if "rewards/accuracies" in row]
    assert sum(accuracies[-10:]) / 10 >= 0.6  # the implicit reward ranks most training pairs as the labels do
