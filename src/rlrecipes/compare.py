"""`rlrecipes compare`: the bake-off. Several RL recipes, one starting model, one sample budget.

    rlrecipes compare reinforce rloo grpo ppo --task arithmetic

Every algorithm starts from the same SFT checkpoint (`--init`, or one this command trains first with
the bake's settings), with the same seed, and may sample the same number of completions: each runs
`budget // samples_per_step` steps with its own default hyper-parameters. The figure puts reward, KL,
entropy and completion length against samples seen, so algorithms that sample differently per step
are compared fairly.
"""

import importlib
import time
from dataclasses import dataclass
from pathlib import Path

import tyro

from rlrecipes.plots import plot_comparison
from rlrecipes.runs import Run, load_checkpoint, resolve_device, run_dir_for
from rlrecipes.tasks import get_task

# No RL from sampled rewards; or, expert_iteration, RL in rounds with no per-step sample budget to match.
NOT_RL = ("pretrain", "sft", "dpo", "orpo", "kto", "reward_model", "best_of_n", "expert_iteration")


@dataclass
class Config:
    recipes: tyro.conf.Positional[tuple[str, ...]] = ("reinforce", "rloo", "grpo", "ppo")  # the algorithms to compare
    task: str = "arithmetic"  # the task every algorithm trains and is evaluated on
    samples: int = 10240  # completions each algorithm may sample (its budget)
    init: str | None = None  # the SFT checkpoint all start from (default: pretrain + SFT one first)
    seed: int = 0  # the same seed for every algorithm
    device: str = "auto"  # auto | cpu | cuda | mps
    out: str | None = None  # run folder (default runs/compare-<timestamp>)
    overwrite: bool = False  # replace whatever --out holds


def recipe_module(name: str):
    from rlrecipes.cli import RECIPES

    rl = [n for n in RECIPES if n not in NOT_RL]
    if name not in rl:
        raise ValueError(f"cannot compare {name!r}: choose RL recipes from {', '.join(rl)}")
    return importlib.import_module(RECIPES[name][0])


def samples_per_step(cfg) -> int:
    return cfg.batch_size * getattr(cfg, "group_size", 1)


def compare(cfg: Config) -> dict:
    get_task(cfg.task)
    resolve_device(cfg.device)
    if not cfg.recipes:
        raise ValueError("name at least one recipe to compare, e.g. rlrecipes compare grpo rloo")
    if cfg.samples < 1:
        raise ValueError(f"samples={cfg.samples} must be at least 1")
    modules = {name: recipe_module(name) for name in dict.fromkeys(cfg.recipes)}
    if cfg.init:
        load_checkpoint(cfg.init)  # a bad checkpoint fails now, before any work
    run_dir = run_dir_for(cfg.out, "compare")
    init = cfg.init or str(run_dir / "base" / "sft.safetensors")
    common = {"task": cfg.task, "seed": cfg.seed, "device": cfg.device}
    configs = {}
    for name, module in modules.items():
        steps = max(1, cfg.samples // samples_per_step(module.Config(**common)))
        configs[name] = module.Config(init=init, steps=steps, eval_every=0, out=str(run_dir / name), **common)
        module.validate(configs[name])  # every bad value fails before any work starts
    run = Run.create(str(run_dir), "compare", overwrite=cfg.overwrite)
    if not cfg.init:
        make_sft_model(run.dir, common)

    results, histories = {}, {}
    for name, module in modules.items():
        t0 = time.time()
        result = module.train(configs[name])
        per_step = samples_per_step(configs[name])
        histories[name] = [{**r, "samples": r["step"] * per_step} for r in result["history"] if r["step"] > 0]
        results[name] = {
            "start_accuracy": result["start_accuracy"],
            "final_accuracy": result["final_accuracy"],
            "seconds": time.time() - t0,
            "samples": configs[name].steps * per_step,
            "steps": configs[name].steps,
        }
    keys = ["reward", "kl", "entropy", "completions/mean_length"]
    plot_comparison(
        histories, keys, "samples", run.dir / "compare.png", f"bake-off on {cfg.task}: same start, same budget"
    )
    summary = {"task": cfg.task, "init": init, "run_dir": str(run.dir), "algorithms": results}
    run.write_json("summary.json", summary)
    return summary


def make_sft_model(run_dir: Path, common: dict) -> None:
    """The bake's pretrain and SFT stages, so every algorithm has the same, fair starting point."""
    from rlrecipes.recipes import pretrain, sft

    base = Run.create(str(run_dir / "base"), "base")
    pretrain.train(pretrain.Config(**common), base)
    sft.train(sft.Config(init=str(base.dir / "pretrain.safetensors"), **common), base)
