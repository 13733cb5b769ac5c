"""The whole home recipe: `rlrecipes bake` with its default settings, in a child process, into a temporary
--out. Measured: wall seconds, CPU seconds (user + system: less sensitive than wall time to a busy
machine), and peak memory = the child's maximum resident set size, read from os.wait4's rusage of that
one child. Also each stage's seconds and the final accuracies from the bake's summary.json.

--quick runs a shortened bake (100 pretraining steps, 10 SFT, 10 GRPO) and says so in the table.

    python benchmarks/bench_bake.py [--quick] [--out DIR]   (DIR is kept, for bench_grpo.py --init DIR/sft.safetensors)
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cli, finish, row

QUICK = ["--pretrain-steps", "100", "--sft-steps", "10", "--grpo-steps", "10"]


def bake(out: Path, quick: bool) -> dict:
    cmd = [sys.executable, "-m", "rlrecipes.cli", "bake", "--out", str(out)] + (QUICK if quick else [])
    out.parent.mkdir(parents=True, exist_ok=True)
    log = (
        out.parent / f"{out.name}.log"
    )  # a file, not a pipe: tqdm writes plenty, and a full pipe would block the child
    t0 = time.perf_counter()
    with open(log, "w") as f:
        child = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)  # rusage of this child alone (ru_maxrss in KiB on Linux)
    wall = time.perf_counter() - t0
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({child.returncode}):\n{log.read_text()[-2000:]}")
    scale = 1 if sys.platform.startswith("linux") else 1 / 1024  # macOS reports bytes
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "max_rss_mib": usage.ru_maxrss * scale / 1024,
        "cmd": cmd,
    }


def main():
    args = cli(__doc__)
    extra = argparse.ArgumentParser()
    extra.add_argument("--out", default=None, help="bake into this folder and keep it (default: a temporary one)")
    keep = extra.parse_known_args()[0].out
    out = Path(keep) if keep else Path(tempfile.mkdtemp()) / "bake"
    if keep and out.exists():
        shutil.rmtree(out)
    try:
        m = bake(out, args.quick)
        summary = json.loads((out / "summary.json").read_text())
    finally:
        if not keep:
            shutil.rmtree(out.parent, ignore_errors=True)
    what = "shortened bake (--quick: 100/10/10 steps)" if args.quick else "`rlrecipes bake` (default settings)"
    threads = os.environ.get("OMP_NUM_THREADS", "torch default")
    rows = [
        row("bake", f"{what}: wall seconds", m["wall_s"], " s", f"threads: {threads}", fmt="{:.0f}"),
        row("bake", "  CPU seconds (user + sys)", m["cpu_s"], " s", fmt="{:.0f}"),
        row("bake", "  peak memory (max RSS of the child)", m["max_rss_mib"], " MiB", fmt="{:.0f}"),
        row(
            "bake",
            "  stage seconds: pretrain / sft / grpo",
            " / ".join(f"{s:.0f}" for s in summary["stage_seconds"].values()),
            note="from summary.json",
        ),
        row(
            "bake",
            "  held-out accuracy: base / sft / grpo",
            f"{summary['base_accuracy']:.2f} / {summary['sft_accuracy']:.2f} / {summary['final_accuracy']:.2f}",
        ),
    ]
    finish(
        args,
        {
            "name": "bake",
            "rows": rows,
            "raw": {**m, "stage_seconds": summary["stage_seconds"], "summary_seconds": summary["seconds"]},
        },
    )


if __name__ == "__main__":
    main()
