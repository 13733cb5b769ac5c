"""IceMaze: FrozenLake with the knobs a learner wants to turn.

Cross a frozen lake from S to G without falling into a hole H. The state is the tile index
`row * ncol + col`; the four actions are 0 left, 1 down, 2 right, 3 up (FrozenLake's order). On a
slippery lake the agent moves the intended way with probability 1 - slip_prob and slides to each of
the two perpendicular directions with probability slip_prob / 2 (never backwards). Reaching G pays 1;
the episode ends in G or H, or is truncated after `max_episode_steps`.

With the defaults, everything (maps, transition table `P`, rewards, slip rule) is gymnasium's
FrozenLake-v1, so any FrozenLake tutorial applies. What IceMaze adds:
    step_penalty   a reward added on every step (e.g. -0.01): makes long detours cost something
    hole_penalty   the reward for falling into a hole (e.g. -1): makes risk cost something
    slip_prob      how slippery the ice is (FrozenLake's slippery lake is slip_prob = 2/3)
    tables()       P as numpy arrays, for the exact dynamic-programming algorithms
    clear errors   a bad map or option fails at once with a message that says what is valid

    import gymnasium as gym, rlrecipes.icemaze
    env = gym.make("rlrecipes/IceMaze-v0", map_name="8x8", is_slippery=True)

The time limit lives in the env itself (so the exact algorithms know the horizon). gym.make's own
`max_episode_steps=` keyword adds gymnasium's TimeLimit wrapper on top, which can only shorten
episodes; to lengthen them pass `IceMaze(max_episode_steps=...)` directly.
"""

from dataclasses import dataclass, field
from typing import ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces, utils

from rlrecipes.icemaze.maps import MAPS, check_map

LEFT, DOWN, RIGHT, UP = 0, 1, 2, 3
ACTION_NAMES = ["Left", "Down", "Right", "Up"]
MOVES = {LEFT: (0, -1), DOWN: (1, 0), RIGHT: (0, 1), UP: (-1, 0)}  # (d_row, d_col)


class IceMaze(gym.Env):
    metadata: ClassVar[dict] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        render_mode: str | None = None,
        desc: list[str] | None = None,
        map_name: str = "4x4",
        is_slippery: bool = True,
        slip_prob: float | None = None,
        step_penalty: float = 0.0,
        hole_penalty: float = 0.0,
        max_episode_steps: int | None = None,
    ):
        if desc is None and map_name not in MAPS:
            raise ValueError(f"unknown map_name={map_name!r}; built-in maps are {sorted(MAPS)} (or pass desc=[...])")
        rows = check_map(MAPS[map_name] if desc is None else desc)
        if slip_prob is not None and not 0.0 <= slip_prob <= 1.0:
            raise ValueError(f"slip_prob={slip_prob} is a probability and must be in [0, 1]")
        if slip_prob and not is_slippery:
            raise ValueError(f"slip_prob={slip_prob} but is_slippery=False; set is_slippery=True to use it")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps={max_episode_steps} must be at least 1")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode={render_mode!r} is not supported; use one of {self.metadata['render_modes']}"
            )

        self.desc = np.asarray(rows, dtype="c")  # (nrow, ncol) of single bytes, exactly like FrozenLake's
        self.nrow, self.ncol = nrow, ncol = self.desc.shape
        self.is_slippery = is_slippery
        # FrozenLake's slippery lake: 1/3 intended, 1/3 each perpendicular, i.e. 2/3 of the time you slip.
        self.slip_prob = (2.0 / 3.0 if slip_prob is None else slip_prob) if is_slippery else 0.0
        self.step_penalty, self.hole_penalty = step_penalty, hole_penalty
        # FrozenLake's registered limits: 100 steps on 4x4, 200 on 8x8 (and on anything bigger than 4x4).
        self.max_episode_steps = max_episode_steps or (100 if nrow * ncol <= 16 else 200)
        self.render_mode = render_mode
        self.observation_space = spaces.Discrete(nrow * ncol)
        self.action_space = spaces.Discrete(4)

        def move(row: int, col: int, a: int) -> tuple[int, float, bool]:
            """(next_state, reward, terminated) for moving in direction a from (row, col); edges block."""
            row = min(max(row + MOVES[a][0], 0), nrow - 1)
            col = min(max(col + MOVES[a][1], 0), ncol - 1)
            letter = rows[row][col]
            reward = {"G": 1.0, "H": hole_penalty}.get(letter, 0.0) + step_penalty
            return row * ncol + col, reward, letter in "GH"

        # P[s][a] = [(prob, next_state, reward, terminated), ...]: FrozenLake's format and order, so the
        # perpendicular slides come as (a - 1) % 4, a, (a + 1) % 4 even when some have probability 0.
        self.P = {s: {a: [] for a in range(4)} for s in range(nrow * ncol)}
        for row in range(nrow):
            for col in range(ncol):
                s = row * ncol + col
                for a in range(4):
                    if rows[row][col] in "GH":  # the episode is over: absorbing, nothing more to earn
                        self.P[s][a].append((1.0, s, 0.0, True))
                    elif is_slippery:
                        side = self.slip_prob / 2.0
                        for b in [(a - 1) % 4, a, (a + 1) % 4]:
                            self.P[s][a].append((1.0 - self.slip_prob if b == a else side, *move(row, col, b)))
                    else:
                        self.P[s][a].append((1.0, *move(row, col, a)))
        # Cumulative probabilities, so step() picks an outcome with one uniform number.
        self._cumprobs = {s: {a: np.cumsum([t[0] for t in ts]) for a, ts in acts.items()} for s, acts in self.P.items()}
        self.start_state = "".join(rows).index("S")
        self.goal = self.desc.ravel() == b"G"  # (S,) True on goal tiles
        self.terminal = np.isin(self.desc.ravel(), [b"G", b"H"])  # (S,) True where the episode ends
        self.s, self.lastaction, self.elapsed = self.start_state, None, 0

    def tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """P as arrays: T[s, a, s'] transition probabilities (S, A, S), R[s, a] expected reward (S, A),
        terminal[s] True on G and H tiles (S,). An episode ends exactly when it enters a terminal tile."""
        n_states = self.observation_space.n
        T, R = np.zeros((n_states, 4, n_states)), np.zeros((n_states, 4))
        for s, acts in self.P.items():
            for a, outcomes in acts.items():
                for prob, s_next, reward, _ in outcomes:
                    T[s, a, s_next] += prob
                    R[s, a] += prob * reward
        return T, R, self.terminal

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        self.s, self.lastaction, self.elapsed = self.start_state, None, 0
        return int(self.s), {"prob": 1.0}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        outcomes = self.P[self.s][action]
        i = int(np.searchsorted(self._cumprobs[self.s][action], self.np_random.random(), side="right"))
        prob, s_next, reward, terminated = outcomes[min(i, len(outcomes) - 1)]  # min: guard against float round-off
        self.s, self.lastaction = s_next, action
        self.elapsed += 1
        # Truncated (time is up) is not terminated: a learner should still bootstrap from s_next.
        truncated = self.elapsed >= self.max_episode_steps
        return int(s_next), float(reward), bool(terminated), truncated, {"prob": prob}

    def render(self) -> str | None:
        if self.render_mode is None:
            gym.logger.warn('render() needs a render mode: IceMaze(render_mode="ansi")')
            return None
        grid = [[c.decode() for c in line] for line in self.desc.tolist()]
        row, col = divmod(self.s, self.ncol)
        grid[row][col] = utils.colorize(grid[row][col], "red", highlight=True)
        header = f"  ({ACTION_NAMES[self.lastaction]})\n" if self.lastaction is not None else "\n"
        return header + "\n".join("".join(line) for line in grid) + "\n"


# --- shared by every algorithm: what they return, and how we score a policy by playing it ---


@dataclass
class Result:
    """What a learning algorithm hands back."""

    policy: np.ndarray  # (S,) greedy action in each state: what gets evaluated
    curve: list[float]  # undiscounted return of each training episode, in order
    success_curve: list[tuple[int, float]] = field(default_factory=list)  # (episode, exact success of greedy policy)
    Q: np.ndarray | None = None  # (S, A) action values, for value-based methods
    V: np.ndarray | None = None  # (S,) state values: max_a Q, or the learned baseline / critic
    logits: np.ndarray | None = None  # (S, A) softmax policy preferences, for policy-gradient methods


def rollout(env: IceMaze, policy: np.ndarray, seed: int | None = None) -> tuple[list[int], float]:
    """Play one episode with a deterministic policy; return the states visited (start first) and the return."""
    s, _ = env.reset(seed=seed)
    states, total, done = [s], 0.0, False
    while not done:
        s, reward, terminated, truncated, _ = env.step(int(policy[s]))
        states.append(s)
        total += reward
        done = terminated or truncated
    return states, total


def evaluate(env: IceMaze, policy: np.ndarray, episodes: int = 1000, seed: int = 0) -> float:
    """Fraction of `episodes` seeded rollouts that end on a goal tile (a noisy estimate of success_probability)."""
    wins = 0
    for i in range(episodes):
        states, _ = rollout(env, policy, seed=seed + i)
        wins += bool(env.goal[states[-1]])
    return wins / max(episodes, 1)


def check_gamma(gamma: float) -> None:
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(
            f"gamma={gamma} is outside [0, 1]; the discount is 0 (only the next reward counts) to 1 (no discount)"
        )


def check_episodes(episodes: int, eval_every: int = 1) -> None:
    if episodes < 0:
        raise ValueError(f"episodes={episodes} is negative; give the number of training episodes, 0 or more")
    if eval_every < 1:
        raise ValueError(f"eval_every={eval_every} must be at least 1 (episodes between success measurements)")


def linear_decay(start: float, end: float, fraction: float, episode: int, episodes: int) -> float:
    """Go from `start` to `end` in a straight line over the first `fraction` of training, then stay at `end`."""
    progress = episode / max(fraction * episodes, 1)
    return end + (start - end) * max(0.0, 1.0 - progress)
