"""Pictures of IceMaze: values and greedy policy on the map, one episode's path, learning curves.

Built on matplotlib's object-oriented API (matplotlib.figure.Figure, which renders with Agg), so
nothing here touches pyplot's global state or needs a display. Each function saves a PNG and
returns the Figure, which a notebook shows if it is the last line of a cell.
"""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from rlrecipes.icemaze.env import IceMaze, Result

ARROWS = ["←", "↓", "→", "↑"]  # actions 0 left, 1 down, 2 right, 3 up
TILE_COLORS = {"S": "#cfe8ff", "F": "#e8f4ff", "H": "#1f2a44", "G": "#ffd54f"}


def _letters(env: IceMaze) -> list[str]:
    return [row.tobytes().decode() for row in env.desc]


def plot_values_policy(
    env: IceMaze, V: np.ndarray, policy: np.ndarray, path: str | Path | None = None, title: str = ""
) -> Figure:
    """Heat-map of V(s) with the greedy action drawn as an arrow on every tile where the episode goes on."""
    letters = _letters(env)
    size = 0.6 * max(env.ncol, 4)
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.subplots()
    image = ax.imshow(np.asarray(V, dtype=float).reshape(env.nrow, env.ncol), cmap="viridis")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="V(s)")
    for s in range(env.nrow * env.ncol):
        row, col = divmod(s, env.ncol)
        letter = letters[row][col]
        if letter == "H":  # holes are painted over: their value is 0 by definition and nothing is chosen there
            ax.add_patch(_square(col, row, TILE_COLORS["H"]))
        elif letter == "G":
            ax.add_patch(_square(col, row, TILE_COLORS["G"]))
            ax.text(col, row, "G", ha="center", va="center", fontsize=12, fontweight="bold")
        else:
            ax.text(col, row - 0.05, ARROWS[int(policy[s])], ha="center", va="center", fontsize=14, color="white")
            ax.text(col, row + 0.32, f"{V[s]:.2f}", ha="center", va="center", fontsize=6, color="white")
    _grid(ax, env)
    ax.set_title(title or "values and greedy policy", fontsize=9)
    return _save(fig, path)


def plot_episode(env: IceMaze, states: list[int], path: str | Path | None = None, title: str = "") -> Figure:
    """The map with one episode's path through it (start to end, each step nudged so repeats stay visible)."""
    letters = _letters(env)
    fig = Figure(figsize=(0.6 * max(env.ncol, 4), 0.6 * max(env.nrow, 4)))
    ax = fig.subplots()
    for row, line in enumerate(letters):
        for col, letter in enumerate(line):
            ax.add_patch(_square(col, row, TILE_COLORS[letter]))
            if letter in "SG":
                ax.text(col, row, letter, ha="center", va="center", fontsize=12, fontweight="bold", color="#555")
    rows, cols = np.divmod(np.asarray(states), env.ncol)
    jitter = np.random.default_rng(0).uniform(-0.2, 0.2, size=(2, len(states)))  # seeded: same picture every time
    ax.plot(cols + jitter[0], rows + jitter[1], "-", color="#d84315", lw=1.2, alpha=0.8)
    ax.plot(cols[-1] + jitter[0, -1], rows[-1] + jitter[1, -1], "o", color="#d84315", ms=8)
    end = {"G": "reached the goal", "H": "fell in a hole"}.get(letters[rows[-1]][cols[-1]], "ran out of time")
    _grid(ax, env)
    ax.set_xlim(-0.5, env.ncol - 0.5)
    ax.set_ylim(env.nrow - 0.5, -0.5)
    ax.set_title(title or f"{len(states) - 1} steps, {end}", fontsize=9)
    return _save(fig, path)


def plot_learning(
    results: dict[str, Result], optimal: float, path: str | Path | None = None, title: str = ""
) -> Figure:
    """Left: exact success of each greedy policy during training, against the optimal policy's.
    Right: the return of the training episodes themselves (moving average), exploration included."""
    fig = Figure(figsize=(11, 4))
    ax_success, ax_return = fig.subplots(1, 2)
    for name, result in results.items():
        if result.success_curve:
            episodes, success = zip(*result.success_curve)
            ax_success.plot(episodes, success, label=name, lw=1.3)
        if result.curve:
            window = max(1, min(200, len(result.curve) // 20))  # about 20 windows per run, at most 200 episodes each
            smooth = np.convolve(result.curve, np.ones(window) / window, mode="valid")
            ax_return.plot(np.arange(window, len(result.curve) + 1), smooth, label=name, lw=1.3)
    ax_success.axhline(optimal, color="black", ls="--", lw=1, label=f"optimal ({optimal:.3f})")
    ax_success.set(xlabel="training episode", ylabel="P(reach G), greedy policy, exact", ylim=(-0.02, 1.02))
    ax_success.set_title("how good is what it has learned?", fontsize=9)
    ax_return.set(xlabel="training episode", ylabel="return per episode (moving average)")
    ax_return.set_title("how well does it do while it is learning?", fontsize=9)
    for ax in (ax_success, ax_return):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _square(col: int, row: int, color: str) -> Rectangle:
    return Rectangle((col - 0.5, row - 0.5), 1, 1, facecolor=color, edgecolor="none")


def _grid(ax, env: IceMaze) -> None:
    ax.set_xticks(np.arange(-0.5, env.ncol), minor=True)
    ax.set_yticks(np.arange(-0.5, env.nrow), minor=True)
    ax.grid(which="minor", color="white", lw=1)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)


def _save(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig
