"""Every command the guide shows runs, in reading order, and succeeds (issue 7).

Collected: each command line of the ```bash, ```sh and ```console blocks of README.md and docs/*.md, in
reading order: README.md, then the chapters in the order docs/README.md links them, then any other
chapter alphabetically. A trailing `\\` joins the next line, a trailing `# comment` is dropped, a `&&`
chain is split into its commands, and in ```console blocks only `$ ` lines are commands.

Not run: the set-up commands `pip`, `git`, `cd`, `python -m pytest` and `bash .ci/run`, which install or
test the project rather than teach with it. Every other command must begin with `rlrecipes`, so a new
kind of command fails here until this file learns how to run it.

Each command runs in-process through `rlrecipes.cli.main` (no 2-3 s of interpreter start and imports
per command), in one scratch folder shared by the whole module, so the run folders that earlier
commands make (runs/bake, runs/pt, runs/reviews-rm, runs/maze-sft, ...) are there for later ones, as
they are for a reader who follows the guide. Sizes are cut by appending the flags in REDUCED (tyro
keeps the last value of a repeated flag): a model trained for 20 steps learns nothing, and nothing here
says it did (the learning tests do that). What is asserted: exit code 0; that the run folder the
command names with --out, or the one it made under runs/, holds summary.json; that --help and `list` print something. Run the file whole: a command selected
alone with -k may miss the folders its predecessors make.
"""

import re
import shlex
import time
from pathlib import Path

import pytest

from rlrecipes.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\w*)")
COMMENT = re.compile(r"(^|\s)#.*$")
SETUP = ("pip ", "git ", "cd ", "python -m pytest", "bash .ci/run")

# Flags appended to each kind of command so the whole guide runs in about two minutes on 2 cores.
TINY_RL = ["--steps", "2", "--eval-every", "0"]
TINY_PAIRS = ["--steps", "2", "--batch-size", "8", "--n-pairs", "16", "--eval-every", "0"]
ICE_LEARNER = ["--episodes", "200", "--eval-episodes", "20"]
REDUCED = {
    ("bake",): ["--pretrain-steps", "20", "--sft-steps", "4", "--grpo-steps", "2", "--group-size", "2"],
    ("compare",): ["--samples", "1"],
    ("kl-estimators",): ["--trials", "50", "--points", "4"],
    ("gallery",): ["--steps", "2", "--batch-size", "4"],
    ("overoptimize",): ["--steps", "2", "--every", "1", "--batch-size", "4", "--group-size", "2", "--repeats", "1"],
    ("run", "pretrain"): ["--steps", "20", "--n-documents", "2000", "--eval-every", "0", "--save-every", "0"],
    ("run", "sft"): ["--steps", "4", "--eval-every", "0", "--save-every", "0"],
    ("run", "grpo"): TINY_RL + ["--batch-size", "4", "--group-size", "2"],
    ("run", "rloo"): TINY_RL + ["--batch-size", "4", "--group-size", "2"],
    ("run", "reinforce"): TINY_RL + ["--batch-size", "8"],
    ("run", "ppo"): TINY_RL + ["--batch-size", "8"],
    ("run", "dpo"): TINY_PAIRS,
    ("run", "orpo"): TINY_PAIRS,
    ("run", "kto"): TINY_PAIRS,
    ("run", "reward_model"): [
        *("--n-prompts", "16", "--epochs", "1", "--heldout-samples", "2", "--baseline-steps", "5", "--eval-every", "0"),
    ],
    ("run", "best_of_n"): ["--ns", "1", "2", "--repeats", "1"],
    ("run", "expert_iteration"): [
        *("--rounds", "1", "--prompts-per-round", "8", "--samples-per-prompt", "2", "--sft-steps", "2"),
        *("--batch-size", "8"),
    ],
    ("icemaze", "value-iteration"): ["--eval-episodes", "20"],
    ("icemaze", "policy-iteration"): ["--eval-episodes", "20"],
    ("icemaze", "compare"): ICE_LEARNER,
    **{("icemaze", name): ICE_LEARNER for name in ("monte-carlo", "q-learning", "sarsa", "reinforce", "actor-critic")},
}
LISTS = {("list",), ("gallery", "list")}  # print a list, make nothing
UNREDUCED = LISTS | {("export",), ("import-hf",)}  # quick as they are
MAKES_RUN = {"bake", "compare", "gallery", "kl-estimators", "overoptimize", "run", "icemaze"}  # make a run folder


def reading_order() -> list[Path]:
    """README.md, the chapters as docs/README.md links them, then the rest alphabetically."""
    linked = re.findall(r"\]\(([^)#\s]+\.md)\)", (DOCS / "README.md").read_text())
    chapters = [DOCS / name for name in dict.fromkeys(linked) if (DOCS / name).exists()]
    rest = [p for p in sorted(DOCS.glob("*.md")) if p not in chapters and p.name != "README.md"]
    return [ROOT / "README.md", *chapters, *rest]


def commands_of(path: Path) -> list[tuple[int, str]]:
    """(line number, command) for every command line of the file's shell blocks, in order."""
    found, lang, pending, start = [], None, "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fence = FENCE.match(line.strip())
        if fence:
            lang = None if lang is not None else fence.group(1)
            continue
        if lang not in ("bash", "sh", "console"):
            continue
        if lang == "console" and not pending:
            if not line.startswith("$ "):
                continue
            line = line[2:]
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):  # continued on the next line
            pending += line.rstrip()[:-1] + " "
            continue
        text, pending = strip_comment(pending + line).strip(), ""
        for part in text.split("&&"):
            if part.strip() and not part.strip().startswith(SETUP):
                found.append((start, " ".join(part.split())))
    return found


def strip_comment(line: str) -> str:
    """Drop a `# comment`: from a # at the start of the line or after a space to its end."""
    return COMMENT.sub("", line)


COMMANDS = [(path, number, command) for path in reading_order() for number, command in commands_of(path)]


def key_of(argv: list[str]) -> tuple:
    """The REDUCED key: `run` and `icemaze` by what they run, `gallery list` apart from the failures."""
    if (argv[0] in ("run", "icemaze") and len(argv) > 1) or argv[:2] == ["gallery", "list"]:
        return tuple(argv[:2])
    return (argv[0],)


def flag(argv: list[str], name: str) -> str | None:
    """The last value given to --name (the one tyro uses), or None."""
    values = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == name]
    values += [a.split("=", 1)[1] for a in argv if a.startswith(name + "=")]
    return values[-1] if values else None


def test_the_guide_has_commands_and_each_is_an_rlrecipes_command():
    assert len(COMMANDS) > 20, "the collector found almost no commands: is the fence syntax still ```bash?"
    for path, number, command in COMMANDS:
        assert command.startswith("rlrecipes "), (
            f"{path.name}:{number}: `{command}` is neither an rlrecipes command nor a skipped set-up command "
            f"({', '.join(SETUP)}); teach tests/test_doc_commands.py how to run it"
        )


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> dict:
    """One folder for the whole guide, and the time stamp of the last run folder named by the clock."""
    return {"dir": tmp_path_factory.mktemp("guide"), "stamp": None}


@pytest.mark.parametrize("path, number, command", COMMANDS, ids=[f"{p.relative_to(ROOT)}:{n}" for p, n, _ in COMMANDS])
def test_documented_command_runs(path, number, command, scratch, monkeypatch, capsys):
    monkeypatch.chdir(scratch["dir"])
    argv = shlex.split(command)[1:]
    key, helps = key_of(argv), "--help" in argv or "-h" in argv
    if not helps and key not in UNREDUCED:
        assert key in REDUCED, f"add a reduced size for `{' '.join(key)}` to REDUCED in {Path(__file__).name}"
        argv = argv + REDUCED[key]
    out = flag(argv, "--out")
    makes_run = argv[0] in MAKES_RUN and not helps and key not in LISTS
    if makes_run and out is None:  # the folder is named runs/<name>-<second>: never two in one second
        while time.strftime("%Y%m%d-%H%M%S") == scratch["stamp"]:
            time.sleep(0.05)
    before = set(Path("runs").glob("*")) if Path("runs").exists() else set()

    code = main(argv)
    printed = capsys.readouterr()

    assert code == 0, f"{path.name}:{number}: `{command}` exited with {code}\n{printed.err[-3000:]}"
    if helps or key in LISTS:
        assert printed.out.strip(), f"`{command}` printed nothing"
    if makes_run and out is not None:
        assert (Path(out) / "summary.json").exists(), f"`{command}` left no {out}/summary.json"
    elif makes_run:
        scratch["stamp"] = time.strftime("%Y%m%d-%H%M%S")
        made = set(Path("runs").glob("*")) - before
        assert len(made) == 1 and (made.pop() / "summary.json").exists(), (
            f"`{command}` made {made} under runs/, not one with summary.json"
        )
