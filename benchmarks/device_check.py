"""Does everything run on a GPU? One short script for a lent GPU machine (issue 6: `--device auto` picks CUDA,
then MPS, then CPU, and everything runs on each).

    PYTHONPATH=src python3 benchmarks/device_check.py                  # on the GPU machine: --device cuda
    PYTHONPATH=src python3 benchmarks/device_check.py --device cpu     # the same checks here, to test the script

Each check is a real command line (rlrecipes.cli.main, in-process, as tests/test_doc_commands.py runs them)
at small settings, in a scratch folder: pretrain, sft, grpo, ppo, reinforce, rloo, dpo, the reviews chain
(pretrain, sft, reward_model, best_of_n), a tiny `rlrecipes bake`, and GRPO on an `hf:` policy (the SFT model
exported to a transformers GPT-2). On a GPU, a check also fails if it left no tensor on the GPU (peak
allocated memory 0), so a recipe that silently stayed on the CPU cannot pass. Then the GRPO throughput:
samples/s of recipes/grpo.py (TinyGPT and hf:GPT-2, 16 prompts x G=8, as benchmarks/bench_grpo.py) on the
device and on the CPU, for reference. One line per check: ok or FAILED, seconds, and the error's last line.
Exit status 1 if any check failed. About 2 minutes on a GPU machine; 5-10 on a busy 2-core CPU.
"""

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

# Small settings: the flags tests/test_doc_commands.py appends to each documented command.
TINY_RL = ["--steps", "2", "--eval-every", "0"]
REVIEWS_MODEL = ["--context-len", "64", "--n-layer", "2", "--n-embd", "64"]  # docs/reward-models.md's model


def commands(tmp: Path, device: str) -> list[tuple[str, list[str]]]:
    """(name, argv) in an order where every --init exists when it is used."""
    d = ["--device", device]
    return [
        ("pretrain", ["run", "pretrain", "--steps", "20", "--n-documents", "2000", "--eval-every", "0",
                      "--save-every", "0", "--out", f"{tmp}/pt", *d]),
        ("sft", ["run", "sft", "--init", f"{tmp}/pt", "--steps", "4", "--eval-every", "0", "--save-every", "0",
                 "--out", f"{tmp}/sft", *d]),
        ("grpo", ["run", "grpo", "--init", f"{tmp}/sft", *TINY_RL, "--batch-size", "4", "--group-size", "2",
                  "--out", f"{tmp}/grpo", *d]),
        ("ppo", ["run", "ppo", "--init", f"{tmp}/sft", *TINY_RL, "--batch-size", "8", "--out", f"{tmp}/ppo", *d]),
        ("reinforce", ["run", "reinforce", "--init", f"{tmp}/sft", *TINY_RL, "--batch-size", "8",
                       "--out", f"{tmp}/reinforce", *d]),
        ("rloo", ["run", "rloo", "--init", f"{tmp}/sft", *TINY_RL, "--batch-size", "4", "--group-size", "2",
                  "--out", f"{tmp}/rloo", *d]),
        ("dpo", ["run", "dpo", "--init", f"{tmp}/pt", "--steps", "2", "--batch-size", "8", "--n-pairs", "16",
                 "--eval-every", "0", "--out", f"{tmp}/dpo", *d]),
        ("reviews: pretrain", ["run", "pretrain", "--task", "reviews", "--steps", "20", "--batch-size", "32",
                               *REVIEWS_MODEL, "--n-documents", "2000", "--eval-every", "0", "--save-every", "0",
                               "--out", f"{tmp}/reviews-pt", *d]),
        ("reviews: sft", ["run", "sft", "--task", "reviews", "--init", f"{tmp}/reviews-pt", "--steps", "4",
                          "--eval-every", "0", "--save-every", "0", "--out", f"{tmp}/reviews-sft", *d]),
        ("reviews: reward_model", ["run", "reward_model", "--task", "reviews", "--init", f"{tmp}/reviews-sft",
                                   "--n-prompts", "16", "--epochs", "1", "--heldout-samples", "2",
                                   "--baseline-steps", "5", "--eval-every", "0", "--out", f"{tmp}/reviews-rm", *d]),
        ("reviews: best_of_n", ["run", "best_of_n", "--task", "reviews", "--init", f"{tmp}/reviews-sft",
                                "--reward-model", f"{tmp}/reviews-rm", "--ns", "1", "2", "--repeats", "1",
                                "--out", f"{tmp}/reviews-bon", *d]),
        ("bake", ["bake", "--pretrain-steps", "20", "--sft-steps", "4", "--grpo-steps", "2", "--group-size", "2",
                  "--out", f"{tmp}/bake", *d]),
        ("export to transformers", ["export", f"{tmp}/sft", "--to", "transformers", f"{tmp}/gpt2"]),
        ("hf: grpo", ["run", "grpo", "--init", f"hf:{tmp}/gpt2", *TINY_RL, "--batch-size", "4", "--group-size", "2",
                      "--out", f"{tmp}/grpo-hf", *d]),
    ]  # fmt: skip


def check(name: str, fn, device: str, uses_device: bool = True) -> bool:
    """Run fn() with its output captured; print one line; True if it passed."""
    on_gpu = device == "cuda" and uses_device
    out = io.StringIO()
    t0 = time.perf_counter()
    try:
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):  # tqdm bars, rich tables
            note = fn() or ""
        ok = True
    except Exception as err:  # a failed check is reported, and the others still run
        ok, note = False, f"{type(err).__name__}: {err}"
        out.write(traceback.format_exc())
    seconds = time.perf_counter() - t0
    if ok and on_gpu:  # a recipe that silently stayed on the CPU allocates nothing on the GPU
        peak = torch.cuda.max_memory_allocated() / 2**20
        ok = peak > 0
        note = f"{note} (peak {peak:.0f} MiB on the GPU)" if ok else "nothing was allocated on the GPU"
    print(f"{'ok' if ok else 'FAILED':<7}{seconds:6.1f} s  {name:<28} {note}", flush=True)
    if not ok:
        lines = [line for line in out.getvalue().splitlines() if line.strip() and "it/s" not in line]
        print("        " + "\n        ".join(lines[-6:]), flush=True)  # the end of the traceback or message
    return ok


def cli(argv: list[str]) -> None:
    from rlrecipes.cli import main  # needs tyro and typer: a missing one fails every CLI check with its name

    code = main(argv)
    if code != 0:
        raise RuntimeError(f"rlrecipes {' '.join(argv[:2])} exited with {code}")


def grpo_speed(init: str, device: str, out: Path) -> float:
    """samples/s of recipes/grpo.py, 16 prompts x G=8 per step, steps 2 .. S-1 (as bench_grpo.py counts them)."""
    from bench_grpo import run_ours, samples_per_second

    _, walls = run_ours(init, 12, out, seed=0, device=device)
    return samples_per_second(walls)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "mps", "cpu"], help="where to run (default cuda)")
    args = parser.parse_args()
    from rlrecipes.runs import resolve_device

    print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}, threads {torch.get_num_threads()}")
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name()}")
    passed = []
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def auto():
            got = resolve_device("auto").type
            if args.device != "cpu" and got != args.device:
                raise RuntimeError(f"--device auto resolved to {got}, expected {args.device}")
            return f"--device auto -> {got}"

        passed.append(check("--device auto", auto, args.device, uses_device=False))
        try:
            resolve_device(args.device)
        except ValueError as err:  # no such device here: every other check would fail the same way
            sys.exit(f"FAILED: {err}")
        for name, argv in commands(tmp, args.device):
            passed.append(
                check(name, lambda argv=argv: cli(argv), args.device, uses_device=name != "export to transformers")
            )
        rates = {}
        for model, init in (("TinyGPT", str(tmp / "sft")), ("hf:GPT-2", f"hf:{tmp / 'gpt2'}")):
            for device in dict.fromkeys([args.device, "cpu"]):

                def speed(model=model, init=init, device=device):
                    rates[model, device] = grpo_speed(init, device, tmp / f"speed-{model}-{device}".replace(":", ""))
                    threads = f" ({torch.get_num_threads()} CPU threads)" if device == "cpu" else ""
                    return f"{rates[model, device]:.0f} samples/s{threads}"

                passed.append(check(f"grpo speed {model} on {device}", speed, device))
        for model in ("TinyGPT", "hf:GPT-2"):
            if args.device != "cpu" and (model, args.device) in rates and (model, "cpu") in rates:
                speedup = rates[model, args.device] / rates[model, "cpu"]
                print(f"        grpo {model}: {args.device} / cpu speed = {speedup:.2f}x")
    failed = passed.count(False)
    print(f"{len(passed) - failed} of {len(passed)} checks passed in {time.perf_counter() - t_all:.0f} s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
