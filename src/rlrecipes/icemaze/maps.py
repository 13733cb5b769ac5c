"""IceMaze maps: the two built-in lakes, a checker with clear errors, and a random map maker.

A map is a list of equal-length strings, one letter per tile:
S start (exactly one), F frozen (safe), H hole (the episode ends, no reward), G goal (reward 1).
"""

from collections import deque

import numpy as np

# The same lakes as gymnasium's FrozenLake-v1, so results can be compared with anything written about it.
MAPS: dict[str, list[str]] = {
    "4x4": ["SFFF", "FHFH", "FFFH", "HFFG"],
    "8x8": [
        "SFFFFFFF",
        "FFFFFFFF",
        "FFFHFFFF",
        "FFFFFHFF",
        "FFFHFFFF",
        "FHHFFFHF",
        "FHFFHFHF",
        "FFFHFFFG",
    ],
}
LETTERS = "SFHG"


def goal_reachable(desc: list[str]) -> bool:
    """Breadth-first search from S over non-hole tiles: can any G be reached at all?"""
    nrow, ncol = len(desc), len(desc[0])
    start = next((r, c) for r in range(nrow) for c in range(ncol) if desc[r][c] == "S")
    seen, frontier = {start}, deque([start])
    while frontier:
        r, c = frontier.popleft()
        if desc[r][c] == "G":
            return True
        for nr, nc in ((r, c - 1), (r + 1, c), (r, c + 1), (r - 1, c)):
            if 0 <= nr < nrow and 0 <= nc < ncol and (nr, nc) not in seen and desc[nr][nc] != "H":
                seen.add((nr, nc))
                frontier.append((nr, nc))
    return False


def check_map(desc: list[str]) -> list[str]:
    """Return the map as a list of strings, or raise ValueError saying exactly what is wrong with it."""
    if isinstance(desc, str) or len(desc) == 0:
        raise ValueError(f"desc={desc!r} is not a map: give a non-empty list of strings such as {MAPS['4x4']}")
    if isinstance(desc, np.ndarray) and desc.dtype.kind == "S":  # FrozenLake's desc: (nrow, ncol) single bytes
        desc = [b"".join(row).decode() for row in desc]
    rows = [str(row) for row in desc]
    if len({len(row) for row in rows}) != 1 or len(rows[0]) == 0:
        raise ValueError(
            f"map rows have different lengths {[len(row) for row in rows]}; every row must be equally long"
        )
    bad = sorted(set("".join(rows)) - set(LETTERS))
    if bad:
        raise ValueError(f"map has unknown letters {bad}; valid letters are S (start), F (frozen), H (hole), G (goal)")
    n_start, n_goal = "".join(rows).count("S"), "".join(rows).count("G")
    if n_start != 1:
        raise ValueError(f"map has {n_start} start tiles 'S'; it needs exactly one")
    if n_goal == 0:
        raise ValueError("map has no goal tile 'G'; it needs at least one")
    if not goal_reachable(rows):
        raise ValueError(f"no goal 'G' is reachable from 'S' without crossing a hole in map {rows}")
    return rows


def generate_map(size: int = 8, p_frozen: float = 0.8, seed: int | None = None) -> list[str]:
    """A random size x size map, S top-left and G bottom-right, each other tile frozen with probability p_frozen.

    Maps where G can't be reached are thrown away and drawn again, so the result is always solvable.
    """
    if size < 2:
        raise ValueError(f"size={size} is too small; a map needs at least 2x2 tiles")
    if not 0.0 < p_frozen <= 1.0:
        raise ValueError(f"p_frozen={p_frozen} must be in (0, 1]: with no frozen tiles there is no path to G")
    rng = np.random.default_rng(seed)
    while True:
        tiles = rng.choice(["F", "H"], size=(size, size), p=[p_frozen, 1.0 - p_frozen])
        tiles[0, 0], tiles[-1, -1] = "S", "G"
        desc = ["".join(row) for row in tiles]
        if goal_reachable(desc):
            return desc
