"""`rlrecipes icemaze ALGORITHM [flags]`: train (or solve) IceMaze, print how good the policy is, save pictures.

    rlrecipes icemaze q-learning --map 8x8 --slippery --episodes 10000 --seed 0 --out runs/q8
    rlrecipes icemaze compare --map 4x4          # every learner on one map, one figure
    rlrecipes icemaze q-learning --help          # every hyper-parameter is a flag

Each run folder gets values_policy.png (V as a heat-map, greedy actions as arrows), episode.png (one
evaluation episode's path), learning_curve.png (learners only) and summary.json (the numbers).
"""

import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import tyro

from rlrecipes.icemaze import actor_critic, monte_carlo, q_learning, reinforce, sarsa, value_iteration
from rlrecipes.icemaze.env import IceMaze, check_episodes, check_gamma, evaluate, rollout
from rlrecipes.icemaze.maps import MAPS
from rlrecipes.icemaze.render import plot_episode, plot_learning, plot_values_policy
from rlrecipes.icemaze.value_iteration import policy_evaluation, policy_iteration, success_probability

# name -> (its Config, the function that trains with it)
LEARNERS = {
    "monte-carlo": (monte_carlo.Config, monte_carlo.monte_carlo),
    "q-learning": (q_learning.Config, q_learning.q_learning),
    "sarsa": (sarsa.Config, sarsa.sarsa),
    "reinforce": (reinforce.Config, reinforce.reinforce),
    "actor-critic": (actor_critic.Config, actor_critic.actor_critic),
}
SOLVERS = {"value-iteration": value_iteration.value_iteration, "policy-iteration": policy_iteration}
COMMANDS = [*SOLVERS, *LEARNERS, "compare"]


@dataclass
class EnvArgs:
    map: str = "4x4"  # built-in map: 4x4 or 8x8 (FrozenLake's)
    slippery: bool = True  # the ice slips: the intended move happens with probability 1 - slip_prob
    slip_prob: float | None = None  # chance of sliding sideways instead (default 2/3, FrozenLake's; needs --slippery)
    step_penalty: float = 0.0  # reward added on every step, e.g. -0.01 to make dawdling cost something
    hole_penalty: float = 0.0  # reward for falling into a hole, e.g. -1
    max_episode_steps: int | None = None  # time limit (default 100 on 4x4, 200 on bigger maps)

    def make(self) -> IceMaze:
        if self.map not in MAPS:  # checked here too, so the error comes before any folder is made
            raise ValueError(f"unknown map {self.map!r}; built-in maps are {sorted(MAPS)}")
        return IceMaze(
            map_name=self.map,
            is_slippery=self.slippery,
            slip_prob=self.slip_prob,
            step_penalty=self.step_penalty,
            hole_penalty=self.hole_penalty,
            max_episode_steps=self.max_episode_steps,
        )


@dataclass
class RunArgs:
    out: Path | None = None  # run folder (default runs/icemaze-ALGORITHM-TIMESTAMP)
    overwrite: bool = False  # allow writing into a folder that already holds a run (a summary.json)
    eval_episodes: int = 1000  # seeded rollouts of the final greedy policy, for the measured success rate

    def __post_init__(self):
        if self.eval_episodes < 1:
            raise ValueError(f"eval_episodes={self.eval_episodes} must be at least 1")


@dataclass
class CompareConfig:
    episodes: int | None = None  # training episodes for every learner (default: each learner's own default)
    gamma: float = 0.99  # discount for every learner and for the optimal policy
    seed: int = 0  # seed for every learner

    def __post_init__(self):
        check_episodes(self.episodes or 0)
        check_gamma(self.gamma)


C = TypeVar("C")


@dataclass
class Args(Generic[C]):
    algo: C  # the algorithm's own hyper-parameters
    env: EnvArgs = field(default_factory=EnvArgs)
    run: RunArgs = field(default_factory=RunArgs)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(
            f"usage: rlrecipes icemaze ALGORITHM [flags]\n\nALGORITHM is one of: {', '.join(COMMANDS)}\n"
            "add --help after an algorithm to see its flags"
        )
        return 0 if argv else 2
    name, flags = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown algorithm {name!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    config_type = (
        value_iteration.Config if name in SOLVERS else CompareConfig if name == "compare" else LEARNERS[name][0]
    )
    try:  # tyro exits on --help or a bad flag; hand its exit code back instead of ending the caller's process
        args = tyro.cli(
            Args[config_type], args=flags, prog=f"rlrecipes icemaze {name}", config=(tyro.conf.OmitArgPrefixes,)
        )
    except SystemExit as exit:
        return int(exit.code or 0)
    try:
        env = args.env.make()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = args.run.out or Path("runs") / f"icemaze-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (out / "summary.json").exists() and not args.run.overwrite:
        print(
            f"error: {out} already holds a run (summary.json); pass --overwrite or choose another --out",
            file=sys.stderr,
        )
        return 2
    out.mkdir(parents=True, exist_ok=True)

    summary = {"algorithm": name, "env": asdict(args.env), "config": asdict(args.algo)}
    try:  # e.g. gamma = 1 with a policy that never ends an episode: its values are infinite
        if name == "compare":
            summary |= run_compare(env, args.algo, out)
        else:
            summary |= run_one(name, env, args.algo, args.run.eval_episodes, out)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = json.dumps(summary, indent=2, ensure_ascii=False, default=str)
    (out / "summary.json").write_text(text + "\n", encoding="utf-8")
    print(f"wrote {out}/: {', '.join(sorted(p.name for p in out.iterdir()))}")
    return 0


def run_one(name: str, env: IceMaze, cfg, eval_episodes: int, out: Path) -> dict:
    """Solve or train; measure the greedy policy (rollouts and exact) against the optimal one; save pictures."""
    optimal = value_iteration.optimal_success(env, cfg.gamma)
    start = time.perf_counter()
    if name in SOLVERS:
        V, policy = SOLVERS[name](env, cfg.gamma)
        result, values_title = None, f"{name}: optimal V and policy (gamma={cfg.gamma})"
    else:
        result = LEARNERS[name][1](env, cfg, progress=True)
        policy = result.policy
        # REINFORCE without a baseline learns no values: show the exact values of its greedy policy instead.
        V = result.V if result.V is not None else policy_evaluation(env, policy, cfg.gamma)
        values_title = f"{name}: {'learned' if result.V is not None else 'exact'} V and greedy policy"
    seconds = time.perf_counter() - start
    numbers = {
        "seconds": round(seconds, 3),
        "success_rate": evaluate(env, policy, eval_episodes),  # noisy: rollouts with the env's time limit
        "eval_episodes": eval_episodes,
        "success_probability": success_probability(env, policy),  # exact, same time limit
        "optimal_success_probability": optimal,
        "policy": _arrows(env, policy),
    }
    if result is not None:
        tail = result.curve[-max(1, len(result.curve) // 10) :]
        numbers |= {"episodes": len(result.curve), "train_return_last_10pct": float(np.mean(tail)) if tail else None}
        plot_learning({name: result}, optimal, out / "learning_curve.png", title=_describe(env, name))

    plot_values_policy(env, V, policy, out / "values_policy.png", title=values_title)
    states, _ = rollout(env, policy, seed=0)
    plot_episode(env, states, out / "episode.png")
    print(_describe(env, name) + f", {seconds:.1f} s; probability of reaching G:")
    print(f"  {'its greedy policy, ' + str(eval_episodes) + ' rollouts':<36}{numbers['success_rate']:.3f}")
    print(f"  {'its greedy policy, exact from P':<36}{numbers['success_probability']:.3f}")
    print(f"  {'the optimal policy, exact from P':<36}{optimal:.3f}")
    return numbers


def run_compare(env: IceMaze, cfg: CompareConfig, out: Path) -> dict:
    """Every learner on the same lake with the same seed and gamma; one figure, one table."""
    optimal = value_iteration.optimal_success(env, cfg.gamma)
    results, rows = {}, {}
    for name, (config_type, train) in LEARNERS.items():
        learner_cfg = replace(config_type(), gamma=cfg.gamma, seed=cfg.seed)
        if cfg.episodes is not None:
            learner_cfg = replace(learner_cfg, episodes=cfg.episodes)
        start = time.perf_counter()
        results[name] = train(env, learner_cfg, progress=True)
        rows[name] = {
            "episodes": learner_cfg.episodes,
            "seconds": round(time.perf_counter() - start, 3),
            "success_probability": success_probability(env, results[name].policy),
        }
    plot_learning(results, optimal, out / "compare.png", title=_describe(env, "compare"))
    print(_describe(env, "compare") + f": optimal policy succeeds with probability {optimal:.3f} (exact)")
    print(f"  {'algorithm':<14}{'episodes':>9}{'seconds':>9}{'success (exact)':>17}{'of optimal':>12}")
    for name, row in rows.items():
        fraction = row["success_probability"] / optimal if optimal > 0 else float("nan")
        print(
            f"  {name:<14}{row['episodes']:>9}{row['seconds']:>9.1f}{row['success_probability']:>17.3f}{fraction:>12.0%}"
        )
    return {"optimal_success_probability": optimal, "results": rows}


def _arrows(env: IceMaze, policy: np.ndarray) -> list[str]:
    """The policy as rows of arrows, with the map's letter on tiles where the episode is over."""
    letters = [row.tobytes().decode() for row in env.desc]
    return [
        "".join(letters[r][c] if letters[r][c] in "GH" else "←↓→↑"[policy[r * env.ncol + c]] for c in range(env.ncol))
        for r in range(env.nrow)
    ]


def _describe(env: IceMaze, name: str) -> str:
    ice = f"slippery (slip_prob {env.slip_prob:.2f})" if env.is_slippery else "not slippery"
    return f"IceMaze {env.nrow}x{env.ncol}, {ice}, {name}"


if __name__ == "__main__":
    sys.exit(main())
