"""Preference data: the JSONL format (TRL's), its errors with line numbers, and the arithmetic pairs."""

import json
import random

import pytest

from rlrecipes.preferences import arithmetic_pairs, load_pairs, save_pairs, unpaired
from rlrecipes.tasks import get_task
from rlrecipes.tasks.arithmetic import _forgot_carry

PAIRS = [
    {"prompt": "47+38=", "chosen": "85", "rejected": "75"},
    {"prompt": "12+34=", "chosen": "46", "rejected": "56"},
]


def test_round_trip_and_no_temp_file_left(tmp_path):
    path = tmp_path / "pairs.jsonl"
    save_pairs(path, PAIRS)
    assert load_pairs(path) == PAIRS
    assert [json.loads(line) for line in path.read_text().splitlines()] == PAIRS  # one object per line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl"]  # written to a temp name, then renamed
    save_pairs(path, PAIRS[:1])  # overwrites whole
    assert load_pairs(path) == PAIRS[:1]


def test_extra_fields_and_blank_lines_are_ignored(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({**PAIRS[0], "score": 0.9}) + "\n\n" + json.dumps(PAIRS[1]) + "\n")
    assert load_pairs(path) == PAIRS


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ('{"prompt": "1+1=", "chosen": "2"', r"line 3: invalid JSON"),
        ('{"prompt": "1+1=", "chosen": "2"}', r"line 3: missing field 'rejected'"),
        ('{"prompt": "1+1=", "chosen": "2", "rejected": "2"}', r"line 3: chosen == rejected \('2'\)"),
        ('{"prompt": "1+1=", "chosen": "", "rejected": "3"}', r"line 3: 'chosen' is an empty completion"),
        ('{"prompt": "1+1=", "chosen": "2", "rejected": ""}', r"line 3: 'rejected' is an empty completion"),
        ('{"prompt": "1+1=", "chosen": 2, "rejected": "3"}', r"line 3: field 'chosen' must be a string, got int"),
        ('["1+1=", "2", "3"]', r"line 3: expected an object with prompt, chosen, rejected, got list"),
    ],
)
def test_a_bad_line_fails_with_its_line_number(tmp_path, bad_line, message):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(PAIRS[0]) + "\n\n" + bad_line + "\n" + json.dumps(PAIRS[1]) + "\n")  # line 2 is blank
    with pytest.raises(ValueError, match=message):
        load_pairs(path)


def test_missing_or_empty_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_pairs(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="holds no pairs"):
        load_pairs(tmp_path / "empty.jsonl")


def test_save_refuses_a_bad_pair_and_writes_nothing(tmp_path):
    path = tmp_path / "pairs.jsonl"
    with pytest.raises(ValueError, match=r"pair 2: chosen == rejected"):
        save_pairs(path, [PAIRS[0], {"prompt": "1+1=", "chosen": "2", "rejected": "2"}])
    assert not any(tmp_path.iterdir())


def test_arithmetic_pairs_come_from_the_training_split_and_reject_careless_sums():
    task = get_task("arithmetic")
    pairs = arithmetic_pairs(task, 400, random.Random(0))
    heldout = set(task.heldout_prompts())
    n_carry = 0
    for pair in pairs:
        a, b = map(int, pair["prompt"].rstrip("=").split("+"))
        assert pair["prompt"] not in heldout
        assert pair["chosen"] == str(a + b)
        if a % 10 + b % 10 >= 10:  # forgot the carry: the pretraining corpus's habit
            n_carry += 1
            assert pair["rejected"] == str(_forgot_carry(a, b)) != pair["chosen"]
        else:  # a carry where none was due
            assert pair["rejected"] == str(a + b + 10)
    assert 0.3 < n_carry / len(pairs) < 0.6  # both kinds, about as often as in the data (45% of sums carry)
    assert arithmetic_pairs(task, 400, random.Random(0)) == pairs  # the same seed, the same pairs


def test_carries_only_keeps_the_carry_problems():
    task = get_task("arithmetic")
    for pair in arithmetic_pairs(task, 200, random.Random(1), carries_only=True):
        a, b = map(int, pair["prompt"].rstrip("=").split("+"))
        assert a % 10 + b % 10 >= 10 and pair["rejected"] == str(_forgot_carry(a, b))


def test_unpaired_splits_each_pair_into_a_thumbs_up_and_a_thumbs_down():
    assert unpaired(PAIRS) == [
        ("47+38=", "85", True),
        ("47+38=", "75", False),
        ("12+34=", "46", True),
        ("12+34=", "56", False),
    ]
