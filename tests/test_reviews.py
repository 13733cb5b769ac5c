"""The reviews task: the hidden gold judge on hand-made texts, the win rate, the data and its split."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlrecipes.lm.tokenizer import CharTokenizer
from rlrecipes.tasks import get_task
from rlrecipes.tasks.reviews import ReviewsTask, gold_score, gold_win_rate

P = "pizza at rosa:"


def test_a_perfect_review_scores_exactly_one_and_an_empty_one_zero():
    assert gold_score(P, "the pizza was lovely and fresh.") == 1.0
    assert gold_score(P, "") == 0.0 and gold_score(P, " .!") == 0.0


def test_warm_beats_cold():
    warm, plain, cold = (gold_score(P, f"the pizza was {w}.") for w in ("lovely", "fine", "bland"))
    assert warm > plain > cold
    assert gold_score(P, "the pizza was lovely and fresh.") > gold_score(P, "the pizza was lovely and fine.")
    assert warm - plain == pytest.approx(0.1)  # 0.4 weight x 0.25 per net warm word


def test_repeated_words_are_penalised_but_the_and_was_are_not():
    assert gold_score(P, "the pizza was great and great.") == pytest.approx(
        gold_score(P, "the pizza was great and fine.") - 0.2
    )
    assert gold_score(P, "the pizza was lovely, the staff fresh.") == 1.0  # "the" twice is not repetition


def test_naming_the_prompts_dish_is_preferred():
    dish = gold_score(P, "the pizza was lovely.")
    generic = gold_score(P, "the food was lovely.")
    wrong = gold_score(P, "the soup was lovely.")
    both = gold_score(P, "the pizza and soup was lovely.")
    assert dish > both > generic == wrong
    assert dish - generic == pytest.approx(0.3)


def test_a_sensible_length_is_preferred():
    assert gold_score(P, "lovely pizza!") < gold_score(P, "the pizza was lovely.")  # 2 words vs 4
    long = "the pizza was lovely and fresh and the staff were kind."  # 11 words
    assert gold_score(P, long) < gold_score(P, "the pizza was lovely and fresh.")


@given(st.text(alphabet=ReviewsTask.alphabet, max_size=50), st.sampled_from(ReviewsTask().heldout_prompts()))
@settings(max_examples=200, deadline=None)
def test_gold_is_always_in_the_unit_interval(completion, prompt):
    assert 0.0 <= gold_score(prompt, completion) <= 1.0


def test_reward_is_the_gold_score():
    task = get_task("reviews")
    texts = ["the pizza was lovely and fresh.", "bland bland."]
    assert task.reward([P, P], texts) == [gold_score(P, t) for t in texts]


def test_gold_win_rate_counts_wins_and_half_ties():
    prompts = [P] * 4
    policy = ["the pizza was lovely.", "the food was cold.", "the pizza was fine.", "the pizza was lovely."]
    reference = ["the food was cold.", "the pizza was lovely.", "the pizza was fine.", "bland."]
    assert gold_win_rate(policy, reference, prompts) == (1 + 0 + 0.5 + 1) / 4
    with pytest.raises(ValueError, match="one policy and one reference completion per prompt"):
        gold_win_rate(policy, reference[:2], prompts)


def test_heldout_prompts_never_appear_in_training_data():
    task = ReviewsTask()
    heldout = set(task.heldout_prompts())
    rng = random.Random(0)
    seen = {d.split(":")[0] + ":" for d in task.pretrain_documents(3000, rng)}
    seen |= {p for p, _ in task.sft_examples(3000, rng)} | set(task.train_prompts(3000, rng))
    assert len(heldout) == 60 and not (heldout & seen)
    assert task.heldout_prompts() == ReviewsTask().heldout_prompts()  # the same for every seed


def test_every_text_fits_the_alphabet_and_the_limits():
    task = ReviewsTask()
    tok = CharTokenizer(task.alphabet)
    rng = random.Random(1)
    for prompt, completion in task.sft_examples(2000, rng):
        tok.encode(prompt + completion)
        assert len(prompt) <= task.max_prompt_chars and len(completion) <= task.max_completion_chars
    for doc in task.pretrain_documents(2000, rng):
        tok.encode(doc)
    assert task.max_prompt_chars + task.max_completion_chars + 4 <= 64  # BOS, EOS and 2 chars of overshoot fit


def test_demonstrations_are_mixed_and_the_web_is_worse():
    """SFT data must leave room for preferences: some demonstrations perfect, many not; web text worse still."""
    task = ReviewsTask()
    demos = task.sft_examples(3000, random.Random(0))
    gold = [gold_score(p, c) for p, c in demos]
    assert 0.02 < sum(g == 1.0 for g in gold) / len(gold) < 0.3
    assert 0.55 < sum(gold) / len(gold) < 0.75
    web = task.pretrain_documents(3000, random.Random(0))
    web_gold = [gold_score(d.split(":")[0] + ":", d.split(":", 1)[1]) for d in web]
    assert sum(web_gold) / len(web_gold) < sum(gold) / len(gold) - 0.05
