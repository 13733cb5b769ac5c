"""Run every benchmark, each in its own process, and write benchmarks/results.md and results.json.

    python benchmarks/run_all.py            # the full set: 3 minutes on a quiet 2-core machine, 13 on a busy one
    python benchmarks/run_all.py --quick    # fewer repeats, shorter runs, a shortened bake: about 2 minutes

Order matters once: the bake runs before the GRPO benchmark, which starts from the bake's SFT model.
Threads: every benchmark runs with --threads (default 1, see the README: on a shared 2-core machine two
OpenMP threads can be many times slower than one); the threads rows of bench_pretrain.py compare 1 and 2.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from common import machine  # noqa: E402

BENCHMARKS = ["bench_generate.py", "bench_pretrain.py", "bench_bake.py", "bench_grpo.py"]


def table(results: list[dict], info: dict, quick: bool, threads: int, seconds: float) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores; torch {info['torch']}; benchmark threads: {threads}; "
        f"load average at start: {', '.join(map(str, info['load_average']))} (1/5/15 min). "
        f"Mode: {'--quick' if quick else 'full'}; total {seconds / 60:.1f} min. "
        "Result = median over repeats, spread = min - max; ratios are taken within a repeat (side by side).",
        "",
        "| benchmark | measurement | result | spread | note |",
        "| --- | --- | --- | --- | --- |",
    ]
    for result in results:
        for r in result.get("rows", []):
            lines.append(f"| {r['benchmark']} | {r['measurement']} | {r['result']} | {r['spread']} | {r['note']} |")
    return "\n".join(lines) + "\n"


def update_readme(md: str) -> None:
    """Put the table between the markers in README.md (if both are there)."""
    readme = HERE / "README.md"
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    text = readme.read_text() if readme.exists() else ""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        readme.write_text(head + start + "\n" + md.split("\n", 2)[2].strip() + "\n" + end + rest.split(end, 1)[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and shorter runs (about 2 minutes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every benchmark (default 1)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these scripts (e.g. bench_generate.py)")
    args = parser.parse_args()
    # OMP_NUM_THREADS reaches the bake's child too; --threads sets torch.set_num_threads in each script.
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    info = machine()
    results, t0 = [], time.time()
    with tempfile.TemporaryDirectory() as tmp:
        bake_out = Path(tmp) / "bake"
        for script in args.only or BENCHMARKS:
            out = Path(tmp) / f"{script}.json"
            cmd = [sys.executable, str(HERE / script), "--json", str(out), "--threads", str(args.threads)]
            cmd += ["--quick"] if args.quick else []
            if script == "bench_bake.py":
                cmd += ["--out", str(bake_out)]
            if script == "bench_grpo.py" and (bake_out / "sft.safetensors").exists():
                cmd += ["--init", str(bake_out / "sft.safetensors")]
            print(f"== {script} ({time.time() - t0:.0f} s so far)", flush=True)
            t = time.time()
            done = subprocess.run(cmd, env=env)
            if done.returncode == 0 and out.exists():
                results.append(json.loads(out.read_text()) | {"seconds": time.time() - t})
            else:  # a benchmark that fails is reported as failed, not dropped
                failed = {
                    "benchmark": script,
                    "measurement": "FAILED",
                    "result": f"exit {done.returncode}",
                    "spread": "",
                    "note": "see the console",
                }
                results.append({"name": script, "rows": [failed], "seconds": time.time() - t})
    seconds = time.time() - t0
    md = table(results, info, args.quick, args.threads, seconds)
    (HERE / "results.md").write_text(md)
    (HERE / "results.json").write_text(
        json.dumps(
            {"machine": info, "threads": args.threads, "quick": args.quick, "seconds": seconds, "benchmarks": results},
            indent=2,
            default=str,
        )
    )
    if not args.quick and not args.only:  # the README shows a full run only
        update_readme(md)
    print(md)


if __name__ == "__main__":
    main()
