"""What every benchmark shares: side-by-side timing, the machine's description, and the --json output.

The machine these run on is a shared 2-core laptop-class CPU, so absolute seconds move with whatever
else is running. What stays meaningful is a RATIO measured side by side: both sides run in the same
minute, in alternating order (A B, B A, A B, ...), and the ratio is taken within each repeat. We report
the median over repeats and the spread (min - max), never a single run.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch


def machine() -> dict:
    """The facts a reader needs to compare our numbers with theirs."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],  # how busy the machine was: the noise floor
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "(not set)"),
    }


def timed(fn) -> float:
    """Wall seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def side_by_side(sides: dict, repeats: int) -> dict[str, list[float]]:
    """Run every side once per repeat, reversing the order every other repeat so neither side always
    runs first (warm caches, a neighbour's burst). Each side is `fn() -> work done` (tokens, samples);
    returns each side's rate (work per second), one number per repeat."""
    names = list(sides)
    rates = {n: [] for n in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            work = sides[name]()
            rates[name].append(work / (time.perf_counter() - t0))
    return rates


def stats(values: list[float]) -> dict:
    """Median and spread of repeated measurements."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": values,
    }


def ratio(a: list[float], b: list[float]) -> dict:
    """a / b taken within each repeat (the two were measured side by side), then summarised."""
    return stats([x / y for x, y in zip(a, b)])


def row(
    benchmark: str, measurement: str, s: dict | float | str, unit: str = "", note: str = "", fmt: str | None = None
) -> dict:
    """One line of the results table. `s` is a stats() dict, a single number, or text."""
    fmt = fmt or ("{:.2f}" if unit == "x" else "{:.3g}")
    if isinstance(s, dict):
        result = fmt.format(s["median"]) + unit
        spread = f"{fmt.format(s['min'])} - {fmt.format(s['max'])} (n={s['n']})"
    elif isinstance(s, (int, float)):
        result, spread = fmt.format(s) + unit, "single run"
    else:
        result, spread = str(s), ""
    return {"benchmark": benchmark, "measurement": measurement, "result": result, "spread": spread, "note": note}


def cli(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and shorter runs (for a smoke check)")
    parser.add_argument("--json", help="write the result (rows + raw numbers) to this file")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    args, _ = parser.parse_known_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def finish(args: argparse.Namespace, result: dict) -> None:
    """Print the rows; write everything to --json for run_all.py."""
    result = {"machine": machine(), **result}
    for r in result["rows"]:
        print(f"{r['benchmark']:>9} | {r['measurement']:<58} | {r['result']:>12} | {r['spread']:<26} | {r['note']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    sys.stdout.flush()
