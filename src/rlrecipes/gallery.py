"""`rlrecipes gallery NAME`: a training failure on purpose, and its fix, side by side.

    rlrecipes gallery list                                                  the failures, one line each
    rlrecipes gallery kl-blowup --init runs/bake/sft.safetensors            one of them: two runs, a figure
    rlrecipes gallery entropy-collapse --init runs/reviews-sft              the one on the reviews task

--init defaults to runs/bake/sft.safetensors (`rlrecipes bake --out runs/bake`), and for entropy-collapse to
runs/reviews-sft (the reviews commands of docs/reward-models.md).

Each failure runs one recipe twice from the same checkpoint with the same seed: once with the settings
that make it sick, once with the fix. Both are ordinary recipe runs (the command prints the equivalent
`rlrecipes run` commands, so any flag can be changed by hand), in <out>/sick and <out>/fixed. Then one
figure puts the dials that tell the two apart side by side, and a diagnosis with the measured numbers is
printed and written to <out>/diagnosis.md. docs/diagnostics.md reads every dial and every figure.
"""

import importlib
import time
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import tyro

from rlrecipes.plots import plot_comparison
from rlrecipes.runs import Run, load_checkpoint, resolve_device, run_dir_for
from rlrecipes.tasks import complete, get_task

DEFAULT_INIT = "runs/bake/sft.safetensors"  # what `rlrecipes bake --out runs/bake` leaves
REPEATS = 8  # samples per held-out prompt when a failure measures diversity


@dataclass(frozen=True)
class Failure:
    about: str  # one line for `rlrecipes gallery list`
    recipe: str  # the recipe both runs use
    common: dict  # settings both runs share (Config fields)
    sick: dict  # the settings that make the run sick
    fixed: dict  # the fix
    dials: tuple  # the metrics that tell the story, one panel each
    diagnosis: str  # what went wrong, and why the fix works
    init: str = DEFAULT_INIT  # the checkpoint both runs start from unless --init says otherwise
    makes_init: str = "`rlrecipes bake --out runs/bake`"  # how to make `init`
    diversity: bool = False  # also sample each final model REPEATS times per held-out prompt, count distinct ones


FAILURES = {
    "kl-blowup": Failure(
        about="a learning rate 30x too high: KL explodes in one step, reward and accuracy crash to zero",
        recipe="grpo",
        common=dict(steps=20, eval_every=5, kl_every=1),
        sick=dict(lr=1e-2),
        fixed=dict(lr=3e-4),
        dials=("kl", "grad_norm", "reward", "eval/accuracy"),
        diagnosis=(
            "KL to the starting model jumps from 0 to several nats per token after the very first update, and "
            "reward and accuracy fall to zero and stay there: one step too large threw the policy far from the "
            "SFT model, into a region where it writes nonsense. Once every completion earns 0, every group has "
            "zero advantage, grad_norm drops to 0 and nothing can pull it back. The fix is the default learning "
            "rate (3e-4). Watch kl in the first steps of any run: more than about 1 nat per token this early "
            "means the steps are too big."
        ),
    ),
    "reward-hacking": Failure(
        about="a grader that passes what it cannot parse: the proxy reward climbs to 1, real accuracy to 0",
        recipe="grpo",
        common=dict(steps=40, eval_every=5, kl_every=5, lr=6e-4),
        sick=dict(reward="arithmetic-unparsed"),
        fixed=dict(reward="task"),
        dials=("reward", "gold/reward", "kl", "eval/accuracy"),
        diagnosis=(
            "The reward the policy sees climbs to 1 while the exact check on the same samples (gold/reward) and "
            "held-out accuracy fall to 0: the policy found the grader's loophole. arithmetic-unparsed counts a "
            "completion it cannot parse as a pass, and RL needs only one lucky sample with a stray '+' or '=' "
            "to learn that writing one always pays, like a coding agent that learns to exit before the tests "
            "run. Only the reward can fix this: close the loophole (--reward task). Catch it by grading a "
            "sample of rollouts with a second, independent check and reading the samples, not only the curve."
        ),
    ),
    "length-exploitation": Failure(
        about="a judge that likes long answers: completions grow to the length limit, exact answers vanish",
        recipe="grpo",
        common=dict(steps=40, eval_every=5, kl_every=5, lr=6e-4),
        sick=dict(reward="arithmetic-verbose"),
        fixed=dict(reward="task"),
        dials=("completions/mean_length", "reward", "gold/reward", "eval/accuracy"),
        diagnosis=(
            "Completion length climbs to the sampling limit while the exact check (gold/reward) falls to 0: the "
            "judge pays 0.1 per character and finds the answer at the start, so '85' followed by three junk "
            "digits beats a plain '85'. Reward models trained on human ratings carry the same bias towards long "
            "answers (Singhal et al. 2023), and RL finds it first. Fix the reward (--reward task here; in RLHF, "
            "length-controlled reward models or a length penalty), and always plot completions/mean_length "
            "beside reward."
        ),
    ),
    "value-divergence": Failure(
        about="PPO with rewards of 0 or 100: the value loss is 10^4 times too big and swamps every update",
        recipe="ppo",
        common=dict(steps=30, eval_every=5),
        sick=dict(reward="arithmetic-points"),
        fixed=dict(reward="task"),
        dials=("loss/value", "grad_norm", "entropy", "eval/accuracy"),
        diagnosis=(
            "The value loss sits near 10^3 and never falls, the gradient norm grows step after step, and the "
            "policy learns less than the healthy run that rewards the same answers: the critic cannot follow "
            "returns of 0 or 100. Its clipped update (--vf-clip 0.2) lets each prediction move 0.2 points per "
            "batch, and even at --vf-coef 0.1 the value loss is some 10^4 times the policy loss. Its gradient "
            "dominates the global norm, so clipping that norm to 1 shrinks the policy's share of every update "
            "by the same factor, and what does reach the shared trunk is mostly value regression. The "
            "advantages are whitened and do not care about scale; the value head does. Fix: rewards on a scale "
            "near 1 (--reward task here; reward normalisation in TRL and OpenRLHF)."
        ),
    ),
    "zero-advantage": Failure(
        about="GRPO sampling at temperature 0.1: nine groups in ten agree and teach nothing",
        recipe="grpo",
        common=dict(steps=30, eval_every=5, kl_every=5),
        sick=dict(temperature=0.1),
        fixed=dict(temperature=1.0),
        dials=("frac_reward_zero_std", "reward_std", "reward", "eval/accuracy"),
        diagnosis=(
            "frac_reward_zero_std, the share of groups whose completions all got the same reward, sits near 1: "
            "a group that is all right or all wrong has zero advantage, so its samples cost compute and move "
            "nothing. Cold sampling makes the G completions of a prompt near copies of each other. Fix: sample "
            "at temperature 1 (or raise --group-size); when the cause is prompts that are too easy or too hard, "
            "filter them (DAPO's dynamic sampling, --drop-zero-std-groups here, at least stops them diluting the "
            "loss)."
        ),
    ),
    "entropy-collapse": Failure(
        about="no KL leash, four passes per batch at lr 1e-3: the reviews policy writes one review over and over",
        recipe="grpo",
        common=dict(task="reviews", steps=30, lr=1e-3, updates_per_batch=4, eval_every=10),
        sick=dict(beta=0.0),
        fixed=dict(beta=0.1),
        dials=("entropy", "frac_reward_zero_std", "reward", "clip_ratio"),
        diagnosis=(
            "Entropy falls towards 0 and frac_reward_zero_std climbs towards 1: the eight completions of a prompt "
            "become the same review, those groups have zero advantage, and learning stops. Sampled eight times, "
            "the final model writes one or two different reviews of a held-out prompt where the SFT model wrote "
            "eight. Reward does not show it (it is even a little higher): the judge rates each review alone, so "
            "nothing in the objective pays for variety, and with --beta 0 runs end here (GRPO's defaults too, by "
            "step 60); four passes at lr 1e-3 get there in 15 steps. Where the better answers are rare "
            "now, the same collapse ends exploration before they are found. Fix: a KL leash to the SFT model "
            "(--beta 0.1): the best policy under it keeps the SFT model's spread over the good reviews. A lower "
            "learning rate or one pass only delay the collapse, and DAPO's --clip-eps-high 0.28 did not stop it "
            "here. Watch entropy and the number of distinct completions per prompt, not only reward."
        ),
        init="runs/reviews-sft",
        makes_init="the reviews commands of docs/reward-models.md (`rlrecipes run pretrain --task reviews ... --out "
        "runs/reviews-pt`, then `rlrecipes run sft --task reviews --init runs/reviews-pt ... --out runs/reviews-sft`)",
        diversity=True,
    ),
}


@dataclass
class Config:
    name: tyro.conf.Positional[str]  # the failure to reproduce (`rlrecipes gallery list` shows them)
    init: str | None = None  # the checkpoint both runs start from (default: the failure's own; see the docstring)
    steps: int | None = None  # RL steps of each run (default: the failure's own; fewer for a quick look)
    batch_size: int | None = None  # prompts per step of each run (default: the recipe's)
    seed: int = 0  # the same seed for both runs
    device: str = "auto"  # auto | cpu | cuda | mps
    out: str | None = None  # run folder (default runs/gallery-<name>)
    overwrite: bool = False  # replace whatever --out holds


def arm_configs(cfg: Config, failure: Failure, run_dir: Path) -> dict:
    """The sick and the fixed run's recipe Configs, checked: every bad value fails before any work starts."""
    module = importlib.import_module(f"rlrecipes.recipes.{failure.recipe}")
    init = cfg.init or failure.init
    overrides = {k: v for k, v in (("steps", cfg.steps), ("batch_size", cfg.batch_size)) if v is not None}
    configs = {}
    for arm, flags in (("sick", failure.sick), ("fixed", failure.fixed)):
        settings = {**failure.common, **flags, **overrides}
        configs[arm] = module.Config(init=init, seed=cfg.seed, device=cfg.device, out=str(run_dir / arm), **settings)
        module.validate(configs[arm])
    return configs


def command_line(recipe: str, config) -> str:
    """The `rlrecipes run` command a user types for the same run: every setting that is not the default."""
    defaults = type(config)()
    parts = [f"rlrecipes run {recipe} --init {config.init}"]
    for f in fields(config):
        value, flag = getattr(config, f.name), f.name.replace("_", "-")
        if f.name in ("init", "seed", "out") or value == getattr(defaults, f.name):
            continue
        parts.append((f"--{flag}" if value else f"--no-{flag}") if isinstance(value, bool) else f"--{flag} {value}")
    return " ".join([*parts, f"--seed {config.seed} --out {config.out}"])


def dial_numbers(rows: list[dict], key: str) -> dict | None:
    """A dial's first value, its mean over the last three logged values, its lowest and highest."""
    values = [r[key] for r in rows if r.get(key) is not None]
    if not values:
        return None
    return {"start": values[0], "end": sum(values[-3:]) / len(values[-3:]), "min": min(values), "max": max(values)}


def run_gallery(cfg: Config) -> dict:
    if cfg.name not in FAILURES:
        raise ValueError(f"unknown failure {cfg.name!r}; valid: {', '.join(FAILURES)} (rlrecipes gallery list)")
    failure = FAILURES[cfg.name]
    device = resolve_device(cfg.device)
    init = cfg.init or failure.init
    if not init.startswith("hf:") and not Path(init).exists():
        raise ValueError(
            f"init={init!r} does not exist: make the starting model with {failure.makes_init} "
            f"(it writes {failure.init}), or pass --init CHECKPOINT"
        )
    _, tokenizer, _, _ = load_checkpoint(init)  # a corrupt checkpoint fails now, before any work
    run_dir = run_dir_for(cfg.out, f"gallery-{cfg.name}")
    configs = arm_configs(cfg, failure, run_dir)
    task = configs["sick"].task
    try:  # a model of another task cannot even read the prompts: say so before any run folder exists
        tokenizer.encode(get_task(task).heldout_prompts()[0])
    except ValueError as e:
        raise ValueError(f"init={init!r} is not a {task} model ({e}); {cfg.name} starts from {failure.init}") from None
    run = Run.create(str(run_dir), "gallery", overwrite=cfg.overwrite)
    module = importlib.import_module(f"rlrecipes.recipes.{failure.recipe}")
    commands = {arm: command_line(failure.recipe, config) for arm, config in configs.items()}
    for arm, command in commands.items():  # first, so a reader can rerun either arm by hand while this one runs
        print(f"{arm}: {command}")

    histories, seconds, checkpoints = {}, {}, {"start": init}
    for arm in ("sick", "fixed"):
        t0 = time.time()
        result = module.train(configs[arm])
        histories[arm], checkpoints[arm] = result["history"], result["checkpoint"]
        if not any(r["step"] == 0 for r in histories[arm]):  # PPO logs no step 0: draw both from the same start
            histories[arm].insert(0, {"step": 0, "eval/accuracy": result["start_accuracy"]})
        seconds[arm] = time.time() - t0
    labels = {arm: f"{arm}: {flag_text(flags)}" for arm, flags in (("sick", failure.sick), ("fixed", failure.fixed))}
    diversity = None
    if failure.diversity:  # a final number, not a per-step dial: it goes in the legend, the diagnosis and the summary
        diversity = {name: sampled_diversity(path, task, device, cfg.seed) for name, path in checkpoints.items()}
        labels = {
            arm: f"{text} ({diversity[arm]['distinct']:.1f} distinct of {REPEATS})" for arm, text in labels.items()
        }
    figure = plot_comparison(
        {labels[arm]: histories[arm] for arm in histories},
        list(failure.dials),
        "step",
        run.dir / f"{cfg.name}.png",
        f"{cfg.name}: {failure.about}",
        smooth=1,  # raw points: a failure often happens in one step (kl-blowup), and smoothing would hide it
    )
    numbers = {arm: {k: dial_numbers(histories[arm], k) for k in failure.dials} for arm in histories}
    report = diagnosis_text(cfg.name, failure, numbers, commands, seconds, diversity)
    (run.dir / "diagnosis.md").write_text(report)
    summary = {
        "failure": cfg.name,
        "recipe": failure.recipe,
        "init": init,
        "run_dir": str(run.dir),
        "figure": str(figure),
        "commands": commands,
        "seconds": seconds,
        "dials": numbers,
        **({"diversity": diversity} if diversity else {}),
    }
    run.write_json("summary.json", summary)
    return {**summary, "report": report}


def sampled_diversity(checkpoint: str, task_name: str, device: str, seed: int) -> dict:
    """What no per-step dial shows: every held-out prompt sampled REPEATS times (temperature 1) from a final model.
    distinct: the mean number of different completions per prompt (REPEATS: all differ, 1: all the same);
    reward: the mean task reward of those samples."""
    task = get_task(task_name)
    model, tokenizer, _, _ = load_checkpoint(checkpoint, device)
    prompts = [p for p in task.heldout_prompts() for _ in range(REPEATS)]
    generator = torch.Generator(device=device).manual_seed(seed)
    completions = complete(
        model.eval(), tokenizer, prompts, task.max_completion_chars + 2, greedy=False, generator=generator
    )
    distinct = [len(set(completions[i : i + REPEATS])) for i in range(0, len(completions), REPEATS)]
    return {"distinct": sum(distinct) / len(distinct), "reward": sum(task.reward(prompts, completions)) / len(prompts)}


def flag_text(flags: dict) -> str:
    return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in flags.items())


def diagnosis_text(
    name: str, failure: Failure, numbers: dict, commands: dict, seconds: dict, diversity: dict | None = None
) -> str:
    lines = [
        f"# {name}",
        "",
        failure.diagnosis,
        "",
        "| dial (end: mean of the last 3 logged values) | sick: start -> end (min, max) | fixed: start -> end (min, max) |",
    ]
    lines.append("| --- | --- | --- |")
    for key in failure.dials:
        cells = []
        for arm in ("sick", "fixed"):
            n = numbers[arm][key]
            cells.append("-" if n is None else f"{n['start']:.3f} -> {n['end']:.3f} ({n['min']:.3f}, {n['max']:.3f})")
        lines.append(f"| {key} | {cells[0]} | {cells[1]} |")
    if diversity:
        d = diversity
        lines += [
            "",
            f"Held-out prompts, each sampled {REPEATS} times from the final model (the starting model in brackets):",
            "",
            "| | sick | fixed |",
            "| --- | --- | --- |",
            f"| distinct completions per prompt (of {REPEATS}) | {d['sick']['distinct']:.2f} | "
            f"{d['fixed']['distinct']:.2f} ({d['start']['distinct']:.2f} at the start) |",
            f"| mean reward of those samples | {d['sick']['reward']:.3f} | {d['fixed']['reward']:.3f} "
            f"({d['start']['reward']:.3f} at the start) |",
        ]
    lines += ["", *(f"{arm} ({seconds[arm]:.0f} s): `{commands[arm]}`" for arm in commands), ""]
    return "\n".join(lines)
