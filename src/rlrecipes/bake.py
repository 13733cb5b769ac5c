"""`rlrecipes bake`: the whole home recipe in one run folder, on a laptop CPU in a few minutes.

    pretrain (sloppy web text)  ->  SFT (clean demonstrations)  ->  GRPO (reward = right answer)

After each stage the model answers the held-out prompts with greedy decoding; the table, the plots
and report.md show what each stage changed. Each stage is the ordinary recipe (recipes/*.py) run
with the settings below, so everything here can also be done one stage at a time with `rlrecipes run`.
"""

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rlrecipes.plots import plot_accuracy, plot_curves
from rlrecipes.recipes import grpo, pretrain, sft
from rlrecipes.runs import Run, checkpoint_complete, checkpoint_meta, load_checkpoint, resolve_device, run_dir_for
from rlrecipes.tasks import complete, evaluate, get_task

RECIPES = {"pretrain": pretrain, "sft": sft, "grpo": grpo}  # the stages, in order
N_SHOWN = 8  # held-out prompts whose completions the report shows before and after RL


@dataclass
class Config:
    task: str = "arithmetic"  # the task every stage trains and is evaluated on
    pretrain_steps: int = 1000  # pretraining steps (the longest stage)
    sft_steps: int = 30  # SFT steps: short on purpose, so RL has mistakes left to fix
    sft_examples: int = 300  # distinct SFT demonstrations
    grpo_steps: int = 150  # GRPO steps
    group_size: int = 8  # GRPO completions per prompt
    seed: int = 0  # same seed, same bake (on the CPU)
    device: str = "auto"  # auto | cpu | cuda | mps
    init: str | None = None  # skip pretraining and start SFT from this checkpoint or run folder
    out: str | None = None  # run folder (default runs/bake-<timestamp>)
    resume: bool = False  # finish an interrupted bake in --out: done stages are kept, the current one resumes
    overwrite: bool = False  # replace whatever --out holds


def stage_configs(cfg: Config, run_dir: Path) -> dict:
    common = {"task": cfg.task, "seed": cfg.seed, "device": cfg.device}
    return {
        "pretrain": pretrain.Config(steps=cfg.pretrain_steps, resume=cfg.resume, **common),
        "sft": sft.Config(
            init=cfg.init or str(run_dir / "pretrain.safetensors"),
            steps=cfg.sft_steps,
            n_examples=cfg.sft_examples,
            resume=cfg.resume,
            **common,
        ),
        "grpo": grpo.Config(
            init=str(run_dir / "sft.safetensors"), steps=cfg.grpo_steps, group_size=cfg.group_size, **common
        ),
    }


def bake(cfg: Config) -> dict:
    task = get_task(cfg.task)
    resolve_device(cfg.device)
    if cfg.init and cfg.init.startswith("hf:"):
        raise ValueError(
            "bake --init takes a TinyGPT checkpoint or run folder; for hf:PATH run the stages one by one: rlrecipes run sft --init hf:PATH, then rlrecipes run grpo"
        )
    if cfg.init:
        load_checkpoint(cfg.init)  # a bad --init fails now, before the run folder is touched
    run_dir = run_dir_for(cfg.out, "bake")
    configs = stage_configs(cfg, run_dir)
    for name, recipe in RECIPES.items():  # every stage's settings are checked before any work starts
        recipe.validate(configs[name])
    run = Run.create(str(run_dir), "bake", cfg.resume, cfg.overwrite)
    run.write_json("config.json", {"bake": asdict(cfg), **{k: asdict(v) for k, v in configs.items()}})

    t0 = time.time()
    results = {}
    for name, recipe in RECIPES.items():
        if name == "pretrain" and cfg.init:
            continue
        if cfg.resume and checkpoint_complete(checkpoint_meta(run.dir / f"{name}.json")):
            model, tokenizer, _, _ = load_checkpoint(run.dir / f"{name}.safetensors")
            results[name] = {"final_accuracy": evaluate(model, tokenizer, task)[0], "seconds": 0.0, "resumed": True}
            continue
        results[name] = recipe.train(configs[name], run)
    seconds = time.time() - t0

    # Before and after: the same held-out prompts, answered greedily by the SFT model and the RL model.
    shown = task.heldout_prompts()[:N_SHOWN]
    answers = {}
    for name in ("sft", "grpo"):
        model, tokenizer, _, _ = load_checkpoint(run.dir / f"{name}.safetensors")
        answers[name] = complete(model, tokenizer, shown, task.max_completion_chars + 2)
    rewards = {name: task.reward(shown, answers[name]) for name in answers}
    samples = [
        {
            "prompt": p,
            "before_rl": answers["sft"][i],
            "after_rl": answers["grpo"][i],
            "reward_before": rewards["sft"][i],
            "reward_after": rewards["grpo"][i],
        }
        for i, p in enumerate(shown)
    ]
    if "pretrain" in results:
        base_accuracy = results["pretrain"]["final_accuracy"]
    else:  # started from --init: its accuracy is the base
        model, tokenizer, _, _ = load_checkpoint(cfg.init)
        base_accuracy = evaluate(model, tokenizer, task)[0]
    summary = {
        "task": cfg.task,
        "run_dir": str(run.dir),
        "base_accuracy": base_accuracy,
        "sft_accuracy": results["sft"]["final_accuracy"],
        "final_accuracy": results["grpo"]["final_accuracy"],
        "seconds": seconds,
        "stage_seconds": {name: r["seconds"] for name, r in results.items()},
        "samples_before_after": samples,
    }
    run.write_json("summary.json", summary)
    write_report(run, summary)
    return summary


def write_report(run: Run, summary: dict) -> None:
    rows = run.metrics()
    lm_rows = [r for r in rows if r["stage"] in ("pretrain", "sft")]
    rl_rows = [r for r in rows if r["stage"] == "grpo"]
    plot_curves(lm_rows, ["loss", "eval/accuracy"], run.dir / "loss.png", "pretraining and SFT", by_stage=True)
    rl_keys = ["reward", "kl", "completions/mean_length", "entropy", "eval/accuracy"]
    plot_curves(rl_rows, rl_keys, run.dir / "rl.png", "GRPO", smooth=10)
    stages = ["base", "sft", "grpo"]
    accs = [summary["base_accuracy"], summary["sft_accuracy"], summary["final_accuracy"]]
    plot_accuracy(stages, accs, run.dir / "accuracy.png", f"held-out accuracy ({summary['task']})")

    lines = [
        f"# Bake report: {summary['task']}",
        "",
        "| stage | held-out accuracy | seconds |",
        "| --- | --- | --- |",
    ]
    for stage, acc in zip(["pretrain", "sft", "grpo"], accs):
        lines.append(f"| {stage} | {acc:.3f} | {summary['stage_seconds'].get(stage, 0.0):.1f} |")
    lines += [
        "",
        f"Total: {summary['seconds']:.0f} s.",
        "",
        "![accuracy after each stage](accuracy.png)",
        "",
        "## Pretraining and SFT",
        "Next-token loss falls as the model learns the corpus; held-out accuracy (greedy) is measured every few steps.",
        "",
        "![loss](loss.png)",
        "",
        "## GRPO",
        "Reward is the fraction of sampled answers that are right; KL is the k3 estimate of KL(policy || SFT model);",
        "entropy is the mean entropy of the next-token distribution over completion tokens.",
        "",
        "![rl curves](rl.png)",
        "",
        "## The same held-out prompts before and after RL (greedy)",
        "",
        "| prompt | after SFT | after GRPO |",
        "| --- | --- | --- |",
    ]
    for s in summary["samples_before_after"]:
        mark = lambda r: "right" if r >= 1 else "wrong"  # noqa: E731
        lines.append(
            f"| `{s['prompt']}` | `{s['before_rl']}` ({mark(s['reward_before'])}) | `{s['after_rl']}` ({mark(s['reward_after'])}) |"
        )
    (run.dir / "report.md").write_text("\n".join(lines) + "\n")
