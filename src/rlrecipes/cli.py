"""The `rlrecipes` command.

    rlrecipes bake                          the whole home recipe: pretrain -> SFT -> GRPO, with a report
    rlrecipes run RECIPE --flag value ...   one recipe; every field of its Config is a flag (see --help)
    rlrecipes list                          every recipe, one line each
    rlrecipes compare reinforce rloo grpo ppo   the bake-off: one SFT model, one sample budget, one figure
    rlrecipes icemaze ALGORITHM ...         the RL basics on the IceMaze grid world
    rlrecipes kl-estimators                 k1, k2, k3 against the exact KL: bias and spread
    rlrecipes overoptimize --init SFT --reward-model RM   proxy and gold reward against KL: Goodhart, measured
    rlrecipes gallery NAME                  a training failure on purpose beside its fix (gallery list: all)
    rlrecipes export RUN --to transformers OUT    TinyGPT as a transformers GPT-2 folder (import-hf: back)

typer dispatches the commands; tyro turns each recipe's Config dataclass into flags, with the comment
beside each field as its help, so the flags can never drift from the code.
"""

import importlib
import sys

import typer
import tyro

from rlrecipes.runs import CheckpointError, Diverged, RunFolderError

# name -> (module, what it teaches, the paper)
RECIPES = {
    "pretrain": (
        "rlrecipes.recipes.pretrain",
        "next-token prediction on the task's web text",
        "Radford et al. 2019 (GPT-2)",
    ),
    "sft": (
        "rlrecipes.recipes.sft",
        "imitate demonstrations: the loss on completion tokens only",
        "Ouyang et al. 2022 (InstructGPT)",
    ),
    "grpo": (
        "rlrecipes.recipes.grpo",
        "group-relative advantages, clipped ratio, k3 KL",
        "Shao et al. 2024 (DeepSeekMath)",
    ),
    "reinforce": ("rlrecipes.recipes.reinforce", "the plain policy gradient; a baseline quiets it", "Williams 1992"),
    "rloo": ("rlrecipes.recipes.rloo", "k samples per prompt, each against the others' mean", "Ahmadian et al. 2024"),
    "ppo": ("rlrecipes.recipes.ppo", "a value head, GAE, clipped losses, KL in the reward", "Ziegler et al. 2019"),
    "dpo": (
        "rlrecipes.recipes.dpo",
        "preferences without RL: the policy is its own reward model",
        "Rafailov et al. 2023",
    ),
    "orpo": ("rlrecipes.recipes.orpo", "SFT plus an odds-ratio push, no reference model", "Hong et al. 2024"),
    "kto": ("rlrecipes.recipes.kto", "unpaired thumbs up/down against a KL reference point", "Ethayarajh et al. 2024"),
    "reward_model": ("rlrecipes.recipes.reward_model", "a score learned from comparisons", "Stiennon et al. 2020"),
    "best_of_n": ("rlrecipes.recipes.best_of_n", "N samples, keep the reward model's favourite", "Gao et al. 2022"),
    "expert_iteration": (
        "rlrecipes.recipes.expert_iteration",
        "sample, keep what the reward accepts, SFT on it, repeat",
        "Zelikman et al. 2022 (STaR)",
    ),
}

PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
app = typer.Typer(add_completion=False, no_args_is_help=True, help="Reinforcement learning for LLMs, as home recipes.")


def _fail(message: str, code: int = 2):
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _run_guarded(fn, *args):
    """Run a training function; turn the errors a user can fix into one clear line instead of a traceback."""
    try:
        return fn(*args)
    except (ValueError, CheckpointError, RunFolderError) as err:
        _fail(str(err))
    except Diverged as err:
        _fail(str(err), code=1)
    except KeyboardInterrupt:
        _fail("interrupted: the last checkpoint is saved; run the same command with --resume to continue", code=130)


@app.command(context_settings=PASS_THROUGH)
def bake(ctx: typer.Context):
    """Pretrain a tiny LLM, SFT it, RL-tune it with GRPO; evaluate, plot and report (a few minutes on a CPU)."""
    from rlrecipes import bake as bake_module

    cfg = tyro.cli(bake_module.Config, args=ctx.args, prog="rlrecipes bake", description=bake_module.__doc__)
    summary = _run_guarded(bake_module.bake, cfg)
    print_bake_summary(summary, cfg)


def print_bake_summary(summary: dict, cfg) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"rlrecipes bake: {summary['task']}")
    for column in ("stage", "held-out accuracy", "seconds"):
        table.add_column(column)
    accs = {"pretrain": summary["base_accuracy"], "sft": summary["sft_accuracy"], "grpo": summary["final_accuracy"]}
    for stage, acc in accs.items():
        table.add_row(stage, f"{acc:.3f}", f"{summary['stage_seconds'].get(stage, 0.0):.1f}")
    samples = Table(title="held-out prompts, greedy, before and after RL")
    for column in ("prompt", "after SFT", "after GRPO"):
        samples.add_column(column)
    for s in summary["samples_before_after"]:
        mark = lambda r: "[green]right[/]" if r >= 1 else "[red]wrong[/]"  # noqa: E731
        samples.add_row(
            s["prompt"], f"{s['before_rl']} {mark(s['reward_before'])}", f"{s['after_rl']} {mark(s['reward_after'])}"
        )
    console = Console()
    console.print(table)
    console.print(samples)
    console.print(f"total {summary['seconds']:.0f} s; report: {summary['run_dir']}/report.md")


@app.command(context_settings=PASS_THROUGH)
def run(ctx: typer.Context):
    """Run one recipe: rlrecipes run RECIPE --flag value ... (rlrecipes run RECIPE --help lists the flags)."""
    if not ctx.args or ctx.args[0].startswith("-"):
        _fail(f"name a recipe: rlrecipes run RECIPE ...; recipes: {', '.join(RECIPES)}")
    name, args = ctx.args[0], ctx.args[1:]
    if name not in RECIPES:
        _fail(f"unknown recipe {name!r}; valid recipes: {', '.join(RECIPES)}")
    module = importlib.import_module(RECIPES[name][0])
    cfg = tyro.cli(module.Config, args=args, prog=f"rlrecipes run {name}", description=module.__doc__)
    result = _run_guarded(module.train, cfg)
    shown = ("start_accuracy", "final_accuracy", "gold_win_rate", "seconds", "checkpoint")  # gold: reviews only
    line = {k: v for k, v in result.items() if k in shown}
    typer.echo("  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in line.items()))


@app.command(context_settings=PASS_THROUGH)
def compare(ctx: typer.Context):
    """The bake-off: RL recipes from one SFT model with one sample budget; one figure, one table."""
    from rich.console import Console
    from rich.table import Table

    from rlrecipes import compare as compare_module

    cfg = tyro.cli(compare_module.Config, args=ctx.args, prog="rlrecipes compare", description=compare_module.__doc__)
    summary = _run_guarded(compare_module.compare, cfg)
    table = Table(title=f"bake-off on {summary['task']}")
    for column in ("algorithm", "start accuracy", "final accuracy", "seconds", "samples"):
        table.add_column(column)
    for name, r in summary["algorithms"].items():
        table.add_row(
            name, f"{r['start_accuracy']:.3f}", f"{r['final_accuracy']:.3f}", f"{r['seconds']:.0f}", str(r["samples"])
        )
    Console().print(table)
    typer.echo(f"figure: {summary['run_dir']}/compare.png")


@app.command(context_settings=PASS_THROUGH)
def icemaze(ctx: typer.Context):
    """The RL basics on a grid world: rlrecipes icemaze ALGORITHM --map 8x8 --slippery (see its --help)."""
    from rlrecipes.icemaze.cli import main as icemaze_main

    raise typer.Exit(icemaze_main(list(ctx.args)))


@app.command(name="list")
def list_recipes():
    """Every recipe: its name, what it teaches, the paper."""
    width = max(len(n) for n in RECIPES)
    for name, (_, teaches, paper) in RECIPES.items():
        typer.echo(f"{name:<{width}}  {teaches}  [{paper}]")


@app.command(name="kl-estimators", context_settings=PASS_THROUGH)
def kl_estimators(ctx: typer.Context):
    """Measure the k1, k2, k3 estimators of KL(policy || reference): a figure, the numbers, a table (seconds)."""
    from rlrecipes import kl_demo

    cfg = tyro.cli(kl_demo.Config, args=ctx.args, prog="rlrecipes kl-estimators", description=kl_demo.__doc__)
    kl_demo.print_table(_run_guarded(kl_demo.run, cfg))


@app.command(context_settings=PASS_THROUGH)
def overoptimize(ctx: typer.Context):
    """Train against a reward model with no KL leash; draw proxy and gold reward against KL (a few minutes)."""
    from rich.console import Console
    from rich.table import Table

    from rlrecipes import overoptimize as overoptimize_module

    module = overoptimize_module
    cfg = tyro.cli(module.Config, args=ctx.args, prog="rlrecipes overoptimize", description=module.__doc__)
    summary = _run_guarded(module.overoptimize, cfg)
    table = Table(title="reward over-optimisation: held-out samples at each checkpoint")
    for column in ("step", "KL (nats)", "proxy", "gold", "gold win rate vs SFT"):
        table.add_column(column)
    for p in summary["points"]:
        mark = " [bold]<- gold peak[/]" if p == summary["peak"] else ""
        numbers = (f"{p['kl']:.2f}", f"{p['proxy']:.2f}", f"{p['gold']:.3f}{mark}", f"{p['gold_win_rate']:.3f}")
        table.add_row(str(p["step"]), *numbers)
    Console().print(table)
    typer.echo(f"figure: {summary['run_dir']}/overoptimize.png")


@app.command(context_settings=PASS_THROUGH)
def gallery(ctx: typer.Context):
    """A training failure on purpose beside its fix, one figure: rlrecipes gallery NAME (rlrecipes gallery list)."""
    from rlrecipes import gallery as gallery_module

    if ctx.args == ["list"]:
        width = max(len(n) for n in gallery_module.FAILURES)
        for name, failure in gallery_module.FAILURES.items():
            typer.echo(f"{name:<{width}}  {failure.recipe:<4}  {failure.about}")
        return
    cfg = tyro.cli(gallery_module.Config, args=ctx.args, prog="rlrecipes gallery", description=gallery_module.__doc__)
    result = _run_guarded(gallery_module.run_gallery, cfg)
    typer.echo(result["report"])
    typer.echo(f"figure: {result['figure']}")


@app.command()
def export(
    run_dir: str = typer.Argument(..., help="a run folder or a .safetensors checkpoint of TinyGPT"),
    out: str = typer.Argument(..., help="the folder to write (must not exist, or be empty)"),
    to: str = typer.Option("transformers", "--to", help="the format: transformers (a GPT2LMHeadModel folder)"),
):
    """Write a TinyGPT checkpoint as a transformers GPT-2 folder: rlrecipes export RUN_DIR --to transformers OUT."""
    if to != "transformers":
        _fail(f"--to {to!r} is not a format rlrecipes writes; valid: transformers")
    from rlrecipes.lm.hf import export_transformers

    folder = _run_guarded(export_transformers, run_dir, out)
    typer.echo(f"wrote {folder}: AutoModelForCausalLM.from_pretrained({str(folder)!r}) loads it (docs/trl.md)")


@app.command(name="import-hf")
def import_hf(
    hf_dir: str = typer.Argument(..., help="a transformers GPT-2 folder, as `rlrecipes export` writes"),
    out: str = typer.Argument(..., help="the folder for the TinyGPT checkpoint (must not exist, or be empty)"),
):
    """Turn a GPT-2 folder (exact GELU, tied, character vocabulary) back into a TinyGPT checkpoint for --init."""
    from rlrecipes.lm.hf import import_transformers

    path = _run_guarded(import_transformers, hf_dir, out)
    typer.echo(f"wrote {path}: use it with --init {out}")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code so tests can call it in-process."""
    try:
        app(args=argv if argv is not None else sys.argv[1:], prog_name="rlrecipes")
    except SystemExit as exit_:  # typer and tyro end with sys.exit, on success too
        return exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
