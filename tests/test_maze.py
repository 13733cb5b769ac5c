"""The maze task: IceMaze as text. Reward against hand-made lakes, BFS demonstrations, the held-out split,
the alphabet and limits, clear errors; and one learning test: pretrain -> SFT -> GRPO raises held-out success."""

import random

import pytest

from rlrecipes.icemaze import generate_map
from rlrecipes.lm.tokenizer import CharTokenizer
from rlrecipes.tasks import get_task
from rlrecipes.tasks.maze import (
    N_HELDOUT,
    MazeTask,
    careless_walk,
    distances_to_goal,
    is_heldout,
    parse,
    render,
    shortest_path,
)

LAKE = "SFFH/FHFF/FFFH/HFFG:"  # S F F H
#                                F H F F
#                                F F F H
#                                H F F G


@pytest.fixture(scope="module")
def task() -> MazeTask:
    return MazeTask()


def test_prompt_round_trip():
    rows = ["SFFH", "FHFF", "FFFH", "HFFG"]
    assert render(rows) == LAKE and parse(LAKE) == rows


@pytest.mark.parametrize(
    "moves, expected",
    [
        ("RRDDDR", 1.0),  # right, right, down to the bottom row, right to G
        ("DDRRDR", 1.0),  # another safe route
        ("DRRDDR", 0.0),  # down then right lands on the hole at (1, 1)
        ("RRR", 0.0),  # straight into the hole at (0, 3)
        ("RRDD", 0.0),  # safe, but stops short of G
        ("", 0.0),
        ("UURRDDDR", 1.0),  # bumping into the top edge keeps you in place, as in FrozenLake
        ("LLLRRDDDR", 1.0),  # the same on the left edge
        ("RRDDDRLU", 0.0),  # the episode ends in G, the answer must end with it: going on is wrong
        ("RRDDDRRR", 0.0),  # even bumping into the edge after G
        ("RRRDDDDR", 0.0),  # the episode ends in the hole: moves after it can't climb out
        ("RRDDDR\n", 1.0),  # surrounding whitespace is not a move
    ],
)
def test_reward_walks_the_real_env(task, moves, expected):
    assert task.reward([LAKE], [moves]) == [expected]


def test_a_character_that_is_not_a_move_makes_the_answer_wrong(task):
    assert task.reward([LAKE] * 3, ["RRD:DDR", "RRDDDRS", "xRRDDDR"]) == [0.0, 0.0, 0.0]


def test_shaping_only_ranks_failures(task):
    shaped = MazeTask(hole_penalty=-1.0, invalid_penalty=-0.5)
    walks = ["RRDDDR", "DR", "RRDD", "RR/DDDR", "RRDDDRL", "RRRD"]
    assert shaped.reward([LAKE] * 6, walks) == [1.0, -1.0, 0.0, -0.5, -0.5, -1.5]  # the last: fell, then went on
    assert task.reward([LAKE] * 6, walks) == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert shaped.play(LAKE, "RRDDDR") == (1.0, True) and task.play(LAKE, "RRDD") == (0.0, False)


def test_shortest_path_by_hand():
    assert shortest_path(parse(LAKE)) == "RRDDDR"  # right before down whenever both are as short
    assert shortest_path(parse(LAKE), order="DRLU") == "DDRDRR"
    assert distances_to_goal(parse(LAKE))[0, 0] == 6
    assert shortest_path(["SHFF", "FHFF", "FFFH", "HHFG"]) == "DDRRDR"


def test_demonstrations_are_shortest_and_reach_g(task):
    examples = task.sft_examples(2000, random.Random(0))
    rewards = task.reward([p for p, _ in examples], [c for _, c in examples])
    assert all(r == 1.0 for r in rewards)
    for prompt, moves in examples[:300]:
        assert len(moves) == distances_to_goal(parse(prompt))[0, 0] == 6  # on 4x4 every route is 6 moves


def test_bigger_lakes_keep_demonstrations_shortest():
    for seed in range(200):
        rows = generate_map(6, 0.7, seed=seed)
        moves = shortest_path(rows)
        assert len(moves) == distances_to_goal(rows)[0, 0]
        assert MazeTask(size=6, p_frozen=0.7).reward([render(rows)], [moves]) == [1.0]


def test_careless_walkers_are_right_sometimes(task):
    docs = task.pretrain_documents(4000, random.Random(0))
    prompts, walks = [d[:20] for d in docs], [d[20:] for d in docs]
    success = sum(task.reward(prompts, walks)) / len(docs)
    assert 0.2 < success < 0.5  # plausible text, often wrong (0.31 with the defaults)
    assert all(set(w) <= set("RD") and len(w) <= 6 for w in walks)
    rows = parse(LAKE)
    assert careless_walk(rows, 0.0, random.Random(0)) == shortest_path(rows)  # sees every hole: the BFS route
    assert careless_walk(rows, 1.0, random.Random(0)) == "RRR"  # sees none: right, right, right, into the hole


def test_heldout_lakes_never_appear_in_training_data(task):
    heldout = set(task.heldout_prompts())
    assert len(heldout) == len(task.heldout_prompts()) == N_HELDOUT  # distinct lakes
    assert all(is_heldout(parse(p)) for p in heldout)
    rng = random.Random(0)
    seen = {d[: task.max_prompt_chars] for d in task.pretrain_documents(20_000, rng)}
    seen |= {p for p, _ in task.sft_examples(5000, rng)} | set(task.train_prompts(5000, rng))
    assert not heldout & seen
    assert not any(is_heldout(parse(p)) for p in seen)
    assert task.heldout_prompts() == MazeTask().heldout_prompts()  # the same for every seed


def test_text_fits_alphabet_and_limits(task):
    tok = CharTokenizer(task.alphabet)
    rng = random.Random(1)
    docs = task.pretrain_documents(1000, rng)
    for prompt, completion in task.sft_examples(1000, rng) + [(d[:20], d[20:]) for d in docs]:
        tok.encode(prompt + completion)
        assert len(prompt) == task.max_prompt_chars and len(completion) <= task.max_completion_chars
    for prompt in task.heldout_prompts() + task.train_prompts(100, rng):
        assert len(prompt) <= task.max_prompt_chars and set(prompt) <= set(task.alphabet)


def test_registered_and_bad_options_are_clear():
    assert isinstance(get_task("maze"), MazeTask)
    with pytest.raises(ValueError, match="size=9 must be between 3 and 6"):
        MazeTask(size=9)
    with pytest.raises(ValueError, match="p_frozen=0.2 must be in"):
        MazeTask(p_frozen=0.2)
    with pytest.raises(ValueError, match="sloppy=1.5 must be a probability"):
        MazeTask(sloppy=1.5)
    with pytest.raises(ValueError, match="hole_penalty=0.1 is the reward of a failure"):
        MazeTask(hole_penalty=0.1)


# The learning test: the whole recipe at reduced settings (about 75 s of one CPU core). Measured on four seeds:
# SFT lands at 0.70-0.75 held-out success, GRPO adds 0.06-0.13 in 40 steps; the margin asked for is 0.05.
MARGIN = 0.05


@pytest.mark.slow
def test_pretrain_sft_grpo_raise_heldout_success(tmp_path):
    from rlrecipes.recipes import grpo, pretrain, sft

    common = dict(task="maze", seed=0, device="cpu")
    base = pretrain.train(
        pretrain.Config(out=str(tmp_path / "pretrain"), steps=600, eval_every=0, save_every=0, **common)
    )
    tuned = sft.train(
        sft.Config(
            init=str(tmp_path / "pretrain"),
            out=str(tmp_path / "sft"),
            steps=12,
            n_examples=300,
            eval_every=0,
            save_every=0,
            **common,
        )
    )
    rl = grpo.train(
        grpo.Config(init=str(tmp_path / "sft"), out=str(tmp_path / "grpo"), steps=40, lr=1.5e-4, eval_every=0, **common)
    )
    print(
        f"held-out success: base {base['final_accuracy']:.3f}, SFT {tuned['final_accuracy']:.3f}, GRPO {rl['final_accuracy']:.3f}"
    )
    assert 0.0 < base["final_accuracy"] < 0.3  # the habit: right on the lakes where it happens to be safe
    assert 0.5 < tuned["final_accuracy"] < 0.9  # SFT taught it to look, and left work for RL
    assert rl["final_accuracy"] >= tuned["final_accuracy"] + MARGIN
