"""Preference data: pairs of completions of one prompt, one preferred over the other.

A pair is a dict in TRL's format, and a file of pairs is JSONL, one pair a line:

    {"prompt": "47+38=", "chosen": "85", "rejected": "75"}

DPO, IPO, SimPO and ORPO learn from pairs. KTO learns from unpaired examples, each a completion and a
thumbs up or down: `(prompt, completion, desirable)`; `unpaired()` makes them from pairs.

Where pairs come from when a recipe is not given a file (`task_pairs`):

- arithmetic: no reward model or human is needed. The right sum is chosen and a careless sum rejected:
  the carry forgotten (the pretraining corpus's habit, so the very mistake the base model makes) or, on a
  problem with no carry, a carry added anyway (the mistake a model makes once it has learnt "add ten"
  without learning when).
- reviews: the way RLHF data are made. The model being tuned (the SFT model) writes two reviews of a
  prompt and the task's hidden gold judge picks one through a noisy Bradley-Terry draw
  (`bradley_terry_labels`), as a tired annotator would. The reward model learns from the same kind of
  pairs (`sample_pairs`, K samples a prompt) and saves them as pairs.jsonl in its run folder, so DPO can
  be given exactly the data the reward model saw.
"""

import itertools
import json
import math
import os
import random
from pathlib import Path

import torch

from rlrecipes.tasks import complete
from rlrecipes.tasks.arithmetic import _forgot_carry

FIELDS = ("prompt", "chosen", "rejected")
TASKS_WITH_PAIRS = ("arithmetic", "reviews")  # tasks that can make their own pairs (`task_pairs`)
LABEL_TEMPERATURE = 0.1  # the simulated annotator's default: about 14% of the SFT model's pairs get flipped


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


def bradley_terry_labels(judge, prompts, completions_a, completions_b, temperature: float, rng: random.Random):
    """Label pairs as a noisy annotator would: a is chosen over b with probability

        P(a > b) = sigmoid((gold_a - gold_b) / temperature)

    so close calls are near coin flips and clear ones rarely flipped. `judge(prompts, completions)` is the
    hidden gold score (a task's reward). Pairs the judge scores equal are dropped (the annotator has no
    preference), and so are pairs with an empty completion. Returns TRL-style pairs and stats: the label
    noise (share of labels that contradict the gold ordering), the noise the temperature predicts, ties."""
    if not temperature > 0:
        raise ValueError(f"temperature={temperature} must be greater than 0 (0.05 labels almost every pair right)")
    gold_a, gold_b = judge(prompts, completions_a), judge(prompts, completions_b)
    pairs, flipped, expected, ties = [], 0, 0.0, 0
    for prompt, a, b, g_a, g_b in zip(prompts, completions_a, completions_b, gold_a, gold_b):
        if g_a == g_b or not a or not b:
            ties += g_a == g_b
            continue
        a_wins = rng.random() < 1 / (1 + math.exp(-(g_a - g_b) / temperature))
        pairs.append({"prompt": prompt, "chosen": a if a_wins else b, "rejected": b if a_wins else a})
        flipped += a_wins != (g_a > g_b)
        expected += 1 / (1 + math.exp(abs(g_a - g_b) / temperature))  # sigmoid(-|margin| / T)
    n = max(len(pairs), 1)
    return pairs, {"label_noise": flipped / n, "expected_label_noise": expected / n, "ties_dropped": ties}


def sample_pairs(
    model, tokenizer, task, prompts, k: int, temperature: float, label_temperature: float, generator, rng
) -> tuple[list[dict], dict]:
    """k samples of the model for every prompt (at `temperature`); every two of them compared by the task's gold
    judge through `bradley_terry_labels`. The pairs of one prompt come out next to each other, so training can
    keep them in one batch (`group_by_prompt`)."""
    was_training = model.training
    model.eval()
    samples = [complete(model, tokenizer, prompts, task.max_completion_chars + 2, greedy=False,
                        temperature=temperature, generator=generator) for _ in range(k)]  # fmt: skip
    model.train(was_training)
    which = list(itertools.combinations(range(k), 2))  # (a, b) for every pair of the k samples
    prompts_ab = [p for p in prompts for _ in which]
    a = [samples[i][n] for n in range(len(prompts)) for i, _ in which]
    b = [samples[j][n] for n in range(len(prompts)) for _, j in which]
    return bradley_terry_labels(task.reward, prompts_ab, a, b, label_temperature, rng)


def group_by_prompt(pairs: list[dict]) -> list[list[dict]]:
    """Runs of consecutive pairs that share a prompt: the comparisons among one prompt's k samples."""
    groups = []
    for pair in pairs:
        if groups and groups[-1][0]["prompt"] == pair["prompt"]:
            groups[-1].append(pair)
        else:
            groups.append([pair])
    return groups


def task_pairs(task, n: int, seed: int, model=None, tokenizer=None) -> list[dict]:
    """A task's own preference pairs, for a recipe given no --pairs file. arithmetic: n pairs made from the training
    split (`arithmetic_pairs`). reviews: n training prompts, two samples of `model` each (temperature 1), labelled by
    the gold judge at LABEL_TEMPERATURE; ties are dropped, so about 10% fewer than n pairs come back."""
    if task.name == "arithmetic":
        return arithmetic_pairs(task, n, random.Random(seed))
    if task.name == "reviews":
        rng = random.Random(seed)
        generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
        prompts = task.train_prompts(n, rng)
        pairs, _ = sample_pairs(model, tokenizer, task, prompts, 2, 1.0, LABEL_TEMPERATURE, generator, rng)
        if not pairs:
            raise ValueError(f"n_pairs={n}: every sampled pair was a tie; raise --n-pairs")
        return pairs
    raise ValueError(f"task={task.name!r} has no built-in preference pairs ({', '.join(TASKS_WITH_PAIRS)} do); "
                     "pass --pairs FILE.jsonl")  # fmt: skip
