"""IceMaze as text: read a small frozen lake, write the moves that cross it. "SFFH/FHFF/FFFH/HFFG:" -> "RRDDDR".

The same problem as the IceMaze chapter, solved by a different kind of policy. There a table holds one
action per tile of ONE lake; here the tiny LLM reads a lake it has never seen and writes a whole plan.
The prompt is the map, row by row, rows joined by "/", then ":". The completion is a string of moves in
FrozenLake's action order, L (0 left), D (1 down), R (2 right), U (3 up), then EOS.

The reward plays the moves in the real `IceMaze` env (not slippery) and pays 1.0 for an answer that is
exactly a walk ending on G, else 0.0. Bumping into the edge keeps you in place, as in FrozenLake. The
episode ends in G or in a hole, and the answer must end with it: any character after that (or one that is
not a move) makes the answer malformed, like "85" followed by more digits in arithmetic. Why so strict:
if moves after G were ignored, nothing would teach the model to stop, and GRPO's per-sequence mean lets
failed answers grow long (measured: length and KL drift up within 40 steps).

Why RL has something to do here: the pretraining corpus is "web text" written by careless walkers. Each
overlooks every hole with probability `sloppy`, plans a shortest route on the lake they think they see
(with a habit: right before down when both are as short) and walks it; the text stops where they fall in.
The base model learns the habit and walks straight into holes. SFT on shortest routes (breadth-first
search) teaches it to look; a short SFT leaves it right on some lakes and wrong on others, which is what
GRPO needs. Held-out lakes never appear in any training data, so success on them measures reading a map,
not remembering one.

Lakes are `generate_map(size, p_frozen)`: S top-left, G bottom-right, solvable. Each distinct lake counts
once (a 4x4 lake has only 3,828 solvable maps, and the common nearly-empty ones teach little). On 4x4 every
solvable lake has a route of 6 moves, right and down only, but not every right-and-down route is safe.
"""

import hashlib
import random
from collections import deque
from functools import lru_cache

from rlrecipes.icemaze import IceMaze, generate_map

MOVES = "LDRU"  # FrozenLake's action order: 0 left, 1 down, 2 right, 3 up
STEP = {"L": (0, -1), "D": (1, 0), "R": (0, 1), "U": (-1, 0)}  # (d_row, d_col)
HABIT = "RDLU"  # the order in which a planner tries moves: right before down when both are as short
N_HELDOUT = 400  # distinct lakes kept out of every training set, for evaluation
HELDOUT_SHARE = 5  # one lake in this many (by a hash of its text) is held out
POOL_SEEDS = 10_000  # generate_map seeds whose lakes form the sampling pool (about 1 s, once per process)


def render(rows: list[str]) -> str:
    return "/".join(rows) + ":"


def parse(prompt: str) -> list[str]:
    return prompt.strip().rstrip(":").split("/")


def is_heldout(rows: list[str]) -> bool:
    """A fixed split by a hash of the map's text: the same lakes are held out for every seed and setting."""
    return int(hashlib.sha256(("maze:" + "/".join(rows)).encode()).hexdigest(), 16) % HELDOUT_SHARE == 0


def distances_to_goal(rows: list[str]) -> dict[tuple[int, int], int]:
    """Breadth-first search backwards from G over tiles that are not holes: moves needed from each tile."""
    n_row, n_col = len(rows), len(rows[0])
    goal = next((r, c) for r in range(n_row) for c in range(n_col) if rows[r][c] == "G")
    dist, frontier = {goal: 0}, deque([goal])
    while frontier:
        r, c = frontier.popleft()
        for dr, dc in STEP.values():
            nr, nc = r + dr, c + dc
            if 0 <= nr < n_row and 0 <= nc < n_col and (nr, nc) not in dist and rows[nr][nc] != "H":
                dist[nr, nc] = dist[r, c] + 1
                frontier.append((nr, nc))
    return dist


@lru_cache(maxsize=65536)  # a 4x4 lake has 3,828 solvable maps: the careless walkers reuse them all the time
def _shortest_path(rows: tuple[str, ...], order: str) -> str:
    dist = distances_to_goal(rows)
    pos = next((r, c) for r in range(len(rows)) for c in range(len(rows[0])) if rows[r][c] == "S")
    moves = ""
    while dist[pos] > 0:
        move = next(m for m in order if dist.get((pos[0] + STEP[m][0], pos[1] + STEP[m][1])) == dist[pos] - 1)
        pos, moves = (pos[0] + STEP[move][0], pos[1] + STEP[move][1]), moves + move
    return moves


def shortest_path(rows: list[str], order: str = HABIT) -> str:
    """A shortest route from S to G: at each tile, the first move in `order` that gets one step closer."""
    return _shortest_path(tuple(rows), order)


def careless_walk(rows: list[str], sloppy: float, rng: random.Random) -> str:
    """A walk as the web writes it: the walker overlooks each hole with probability `sloppy`, plans a shortest
    route (with the habit) on the lake they think they see, and walks it on the real lake; the text stops
    where they reach G or fall in."""
    seen = ["".join("F" if tile == "H" and rng.random() < sloppy else tile for tile in row) for row in rows]
    plan, (r, c) = shortest_path(seen), (0, 0)
    for i, move in enumerate(plan):
        r, c = r + STEP[move][0], c + STEP[move][1]
        if rows[r][c] in "GH":
            return plan[: i + 1]
    raise AssertionError("unreachable: a plan on the seen lake ends on G")


@lru_cache(maxsize=8)
def _pool(size: int, p_frozen: float) -> tuple[list[list[str]], list[list[str]]]:
    """(training lakes, held-out lakes): the distinct lakes of generate_map's first POOL_SEEDS seeds, split by
    `is_heldout`; at most N_HELDOUT held out, in seed order. Sampling from a pool is 50x faster than calling
    generate_map for each of 100,000 pretraining documents."""
    train, heldout = {}, {}
    for seed in range(POOL_SEEDS):
        rows = generate_map(size, p_frozen, seed=seed)
        if not is_heldout(rows):
            train.setdefault("/".join(rows), rows)
        elif len(heldout) < N_HELDOUT:
            heldout.setdefault("/".join(rows), rows)
    return list(train.values()), list(heldout.values())


@lru_cache(maxsize=4096)  # building the env's transition table costs more than a walk: reuse it per lake
def _env(lake: str) -> IceMaze:
    return IceMaze(desc=lake.split("/"), is_slippery=False)


class MazeTask:
    name = "maze"
    alphabet = "SFHG/:" + MOVES  # tiles, row separator, end of prompt, moves

    def __init__(
        self,
        size: int = 4,
        p_frozen: float = 0.75,
        sloppy: float = 0.7,
        hole_penalty: float = 0.0,
        invalid_penalty: float = 0.0,
    ):
        """size x size lakes, each tile ice with probability p_frozen; `sloppy`: how often the web's walkers
        overlook a hole. Shaping, off by default (see docs/maze.md): `hole_penalty` is the reward for falling
        in, `invalid_penalty` for a malformed answer. Both only rank failures: a success is always exactly
        1.0, so the held-out success rate (the share of rewards >= 1) means the same with or without them."""
        if not 3 <= size <= 6:
            raise ValueError(f"size={size} must be between 3 and 6 (a size x size lake; 4 is the default)")
        if not 0.5 <= p_frozen <= 1.0:
            raise ValueError(f"p_frozen={p_frozen} must be in [0.5, 1]: the chance that a tile is ice, not a hole")
        if not 0.0 <= sloppy <= 1.0:
            raise ValueError(f"sloppy={sloppy} must be a probability in [0, 1]")
        for name, value in [("hole_penalty", hole_penalty), ("invalid_penalty", invalid_penalty)]:
            if not -1.0 <= value <= 0.0:
                raise ValueError(
                    f"{name}={value} is the reward of a failure, so a cost is negative: use a value in [-1, 0]"
                )
        self.size, self.p_frozen, self.sloppy = size, p_frozen, sloppy
        self.hole_penalty, self.invalid_penalty = hole_penalty, invalid_penalty
        self.max_prompt_chars = size * size + size  # size rows, size - 1 separators, ":"
        self.max_completion_chars = 2 * (size - 1)  # right and down only; on 4x4 every solvable lake has one
        # Lakes of 5x5 and up can need a detour (left or up): keep the ones whose shortest route fits the limit.
        fits = lambda rows: len(shortest_path(rows)) <= self.max_completion_chars  # noqa: E731
        train, heldout = _pool(size, p_frozen)
        self.train_maps, self.heldout_maps = [m for m in train if fits(m)], [m for m in heldout if fits(m)]

    def pretrain_documents(self, n: int, rng: random.Random) -> list[str]:
        return [render(rows) + careless_walk(rows, self.sloppy, rng) for rows in rng.choices(self.train_maps, k=n)]

    def sft_examples(self, n: int, rng: random.Random) -> list[tuple[str, str]]:
        return [(render(rows), shortest_path(rows)) for rows in rng.choices(self.train_maps, k=n)]

    def train_prompts(self, n: int, rng: random.Random) -> list[str]:
        return [render(rows) for rows in rng.choices(self.train_maps, k=n)]

    def heldout_prompts(self) -> list[str]:
        return [render(rows) for rows in self.heldout_maps]

    def play(self, prompt: str, completion: str) -> tuple[float, bool]:
        """Walk the completion's moves on the prompt's lake in the real env: (reward, success)."""
        env = _env("/".join(parse(prompt)))
        s, _ = env.reset()
        fell, malformed, over = False, False, False
        for char in completion.strip():
            if over or char not in MOVES:  # text after the episode ended, or not a move: not a walk
                malformed = True
                break
            s, _, terminated, truncated, _ = env.step(MOVES.index(char))
            over = terminated or truncated  # in G or in a hole (or out of time): the episode is over
            fell = terminated and not env.goal[s]
        if env.goal[s] and not malformed:  # on G, and nothing after it
            return 1.0, True
        return (self.hole_penalty if fell else 0.0) + (self.invalid_penalty if malformed else 0.0), False

    def reward(self, prompts: list[str], completions: list[str]) -> list[float]:
        return [self.play(p, c)[0] for p, c in zip(prompts, completions)]
