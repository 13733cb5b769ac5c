"""Preference data: pairs of completions of one prompt, one preferred over the other.

A pair is a dict in TRL's format, and a file of pairs is JSONL, one pair a line:

    {"prompt": "47+38=", "chosen": "85", "rejected": "75"}

DPO, IPO, SimPO and ORPO learn from pairs. KTO learns from unpaired examples, each a completion and a
thumbs up or down: `(prompt, completion, desirable)`; `unpaired()` makes them from pairs.

For the arithmetic task no reward model or human is needed to make pairs: the right sum is chosen and a
careless sum rejected: the carry forgotten (the pretraining corpus's habit, so the very mistake the base
model makes) or, on a problem with no carry, a carry added anyway (the mistake a model makes once it has
learnt "add ten" without learning when).
"""

import json
import os
import random
from pathlib import Path

from rlrecipes.tasks.arithmetic import _forgot_carry

FIELDS = ("prompt", "chosen", "rejected")


def check_pair(pair, where: str) -> dict:
    """The pair if it is valid; else a ValueError saying where (e.g. "pairs.jsonl line 3") and why."""
    if not isinstance(pair, dict):
        raise ValueError(f"{where}: expected an object with {', '.join(FIELDS)}, got {type(pair).__name__}")
    for name in FIELDS:
        if name not in pair:
            raise ValueError(f"{where}: missing field {name!r}; every pair needs {', '.join(FIELDS)}")
        if not isinstance(pair[name], str):
            raise ValueError(f"{where}: field {name!r} must be a string, got {type(pair[name]).__name__}")
    for name in ("chosen", "rejected"):
        if not pair[name]:
            raise ValueError(f"{where}: {name!r} is an empty completion; a preference needs two real answers")
    if pair["chosen"] == pair["rejected"]:
        raise ValueError(f"{where}: chosen == rejected ({pair['chosen']!r}); a pair must prefer one answer to another")
    return {name: pair[name] for name in FIELDS}


def load_pairs(path: str | Path) -> list[dict]:
    """Every pair of a JSONL file (blank lines skipped); a bad line fails with its line number."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"pairs file {str(path)!r} does not exist; give a JSONL file of prompt/chosen/rejected pairs")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            pair = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} line {number}: invalid JSON ({err.msg})") from None
        pairs.append(check_pair(pair, f"{path} line {number}"))
    if not pairs:
        raise ValueError(f"{path} holds no pairs; each line should be {json.dumps(dict.fromkeys(FIELDS, '...'))}")
    return pairs


def save_pairs(path: str | Path, pairs: list[dict]) -> None:
    """Write pairs as JSONL, atomically: a reader sees the old file or the whole new one, never half."""
    path = Path(path)
    # every pair is checked before anything is written
    lines = [json.dumps(check_pair(p, f"pair {i}")) + "\n" for i, p in enumerate(pairs, start=1)]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(lines))
    os.replace(tmp, path)


def _phantom_carry(a: int, b: int) -> int:
    """The over-correction: a carry added to the tens where none was due."""
    return a + b + 10


def arithmetic_pairs(task, n: int, rng: random.Random, carries_only: bool = False) -> list[dict]:
    """n pairs from the task's training split, the right sum always chosen. On a carry problem the careless sum
    (the carry forgotten, the pretraining corpus's habit) is rejected; on any other problem, a carry added where
    none was due. Without those second pairs nothing tells the model *when* to carry, and it learns to always add
    ten (`carries_only=True` shows it; docs/dpo.md has the numbers)."""
    problems = [(a, b) for a, b in task.train_pairs if a % 10 + b % 10 >= 10 or not carries_only]
    pairs = []
    for a, b in rng.choices(problems, k=n):
        careless = _forgot_carry(a, b) if a % 10 + b % 10 >= 10 else _phantom_carry(a, b)
        pairs.append({"prompt": task.prompt(a, b), "chosen": str(a + b), "rejected": str(careless)})
    return pairs


def unpaired(pairs: list[dict]) -> list[tuple[str, str, bool]]:
    """KTO's data: each pair becomes two independent examples, (prompt, chosen, True) and (prompt, rejected, False)."""
    return [ex for p in pairs for ex in ((p["prompt"], p["chosen"], True), (p["prompt"], p["rejected"], False))]
