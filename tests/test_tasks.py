"""Tasks: data, held-out split and reward."""

import random

import pytest

from rlrecipes.lm.tokenizer import CharTokenizer
from rlrecipes.tasks import get_task
from rlrecipes.tasks.arithmetic import ArithmeticTask, _forgot_carry


def test_reward_is_exact_answer():
    task = ArithmeticTask()
    assert task.reward(["47+8=", "47+8=", "47+8=", "12+3="], ["55", "45", "", "15"]) == [1.0, 0.0, 0.0, 1.0]


def test_sloppy_sum_forgets_only_the_carry():
    assert _forgot_carry(47, 8) == 45  # 7 + 8 = 15: the 1 is dropped
    assert _forgot_carry(12, 3) == 15  # no carry, no mistake
    assert _forgot_carry(95, 7) == 92


def test_heldout_pairs_never_appear_in_training_data():
    task = ArithmeticTask()
    heldout = set(task.heldout_prompts())
    rng = random.Random(0)
    seen = {d.split("=")[0] + "=" for d in task.pretrain_documents(5000, rng)}
    seen |= {p for p, _ in task.sft_examples(5000, rng)} | set(task.train_prompts(5000, rng))
    assert heldout and not (heldout & seen)
    assert task.heldout_prompts() == ArithmeticTask().heldout_prompts()  # the same for every seed


def test_corpus_is_sloppy_at_the_stated_rate():
    task = ArithmeticTask(sloppy=0.7)
    docs = task.pretrain_documents(4000, random.Random(0))
    pairs = [(int(d.split("+")[0]), int(d.split("+")[1].split("=")[0])) for d in docs]
    carry_docs = [d for d, (a, b) in zip(docs, pairs) if a % 10 + b % 10 >= 10]
    wrong = sum(task.reward([d.split("=")[0] + "="], [d.split("=")[1]])[0] == 0 for d in carry_docs)
    assert 0.65 < wrong / len(carry_docs) < 0.75
    assert all(d.count("=") == 1 for d in docs)


def test_every_task_text_fits_its_alphabet_and_limits():
    task = ArithmeticTask()
    tok = CharTokenizer(task.alphabet)
    rng = random.Random(1)
    for prompt, completion in task.sft_examples(500, rng):
        tok.encode(prompt + completion)
        assert len(prompt) <= task.max_prompt_chars and len(completion) <= task.max_completion_chars


def test_unknown_task_and_bad_option():
    with pytest.raises(ValueError, match="unknown task 'poetry'; valid tasks: arithmetic"):
        get_task("poetry")
    with pytest.raises(ValueError, match="sloppy=1.5 must be a probability"):
        ArithmeticTask(sloppy=1.5)
