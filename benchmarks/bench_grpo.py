"""GRPO speed: recipes/grpo.py against TRL's GRPOTrainer, training the same model on the same task.

The model: an SFT'd TinyGPT (from `--init`, or trained here in about a minute), exported to a
transformers GPT2LMHeadModel with rlrecipes.lm.hf (same weights, logits equal to float rounding; checked
below). Three sides, each a short training run from those same weights:

    ours (hf:GPT-2)  recipes/grpo.py with --init hf:FOLDER: the same GPT2LMHeadModel TRL trains
    trl  (GPT-2)     trl.GRPOTrainer on that GPT2LMHeadModel, with the exported character tokenizer
    ours (TinyGPT)   recipes/grpo.py on the TinyGPT itself (our model code): what `rlrecipes bake` runs

Both of ours sample with a KV cache (TinyGPT's own; transformers' DynamicCache for hf:), as TRL's generate does.

Matched settings: prompts per step, group size G, at most 5 completion tokens (3 answer digits + 2),
one optimisation pass per batch (num_iterations=1), beta=0 (no KL term: TRL then never runs the reference
model; ours runs it for the kl metric on step 1, the last and every kl_every = 10), the 'grpo' loss, advantages
scaled by the group's std, AdamW(lr 3e-4, betas 0.9/0.99, no decay), clip-grad 1.0, temperature 1.
Reward: 1 for the exact sum (rlrecipes.tasks.arithmetic). TRL counts its batch in completions, so its
per_device_train_batch_size = prompts x G.

Throughput = samples (completions) per second over the steps in the middle of each run: the first step
(warm-up) and the last (ours evaluates and saves there) are left out. Runs alternate between sides and
repeat; the first repeat is long (60 steps) and its reward curves go to benchmarks/grpo_vs_trl.png, the
others are short (16 steps), for the spread. Also: where a step of recipes/grpo.py spends its time
(sampling, reference log-probs, policy log-probs, backward, AdamW), at the bake's batch.

    python benchmarks/bench_grpo.py [--quick] [--init RUN_OR_CHECKPOINT]
"""

import argparse
import contextlib
import io
import os
import random
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from common import cli, finish, ratio, row, stats

from rlrecipes.recipes import grpo
from rlrecipes.runs import Run
from rlrecipes.tasks import get_task

# Nothing is ever downloaded; transformers is imported later, inside the functions that need it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' renames, in TRL's calls

PROMPTS = 16  # prompts per step
GROUP = 8  # completions per prompt
HERE = Path(__file__).parent


class TimedRun(Run):
    """A run folder that stamps every logged row with the wall clock, so we can time steps from outside."""

    def log(self, step: int, **metrics) -> None:
        super().log(step, **metrics, wall=time.perf_counter())


def sft_model(out: Path, quick: bool) -> str:
    """A small SFT'd TinyGPT, when no --init is given: short pretraining, then SFT (recipes' defaults otherwise)."""
    from rlrecipes.recipes import pretrain, sft

    pretrain.train(
        pretrain.Config(
            steps=150 if quick else 400,
            n_documents=20_000,
            eval_every=0,
            save_every=0,
            out=str(out / "pretrain"),
            device="cpu",
        )
    )
    sft.train(
        sft.Config(init=str(out / "pretrain"), steps=30, eval_every=0, save_every=0, out=str(out / "sft"), device="cpu")
    )
    return str(out / "sft")


# --- one run of each side: returns (rewards per step, wall clock at the end of each step) ---
def run_ours(init: str, steps: int, out: Path, seed: int, prompts: int = PROMPTS, device: str = "cpu"):
    cfg = grpo.Config(
        init=init,
        steps=steps,
        batch_size=prompts,
        group_size=GROUP,
        eval_every=0,
        sample_every=0,
        seed=seed,
        device=device,
        out=str(out),
        overwrite=True,
    )
    run = TimedRun.create(cfg.out, "grpo", overwrite=True)
    grpo.train(cfg, run)
    rows = [r for r in run.history if r["step"] >= 1]
    return [r["reward"] for r in rows], [r["wall"] for r in rows]


def run_trl(folder: Path, steps: int, out: Path, seed: int):
    import datasets
    import transformers
    from trl import GRPOConfig, GRPOTrainer

    task = get_task("arithmetic")
    prompts = task.train_prompts(PROMPTS * (steps + 1), random.Random(seed))
    walls = []

    class Clock(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            walls.append(time.perf_counter())

    def exact_sum(prompts, completions, **kwargs):  # TRL's reward signature; the same reward as recipes/grpo.py
        return task.reward(prompts, completions)

    args = GRPOConfig(
        output_dir=str(out), per_device_train_batch_size=PROMPTS * GROUP, num_generations=GROUP,
        max_completion_length=task.max_completion_chars + 2, num_iterations=1, beta=0.0, loss_type="grpo",
        scale_rewards="group", epsilon=0.2, temperature=1.0, learning_rate=3e-4, adam_beta1=0.9, adam_beta2=0.99,
        weight_decay=0.0, max_grad_norm=1.0, lr_scheduler_type="constant", warmup_steps=0, max_steps=steps,
        logging_steps=1, report_to="none", save_strategy="no", use_cpu=True, seed=seed, disable_dropout=True,
        log_completions=False, dataloader_num_workers=0,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=transformers.GPT2LMHeadModel.from_pretrained(folder),
        reward_funcs=exact_sum,
        args=args,
        train_dataset=datasets.Dataset.from_dict({"prompt": prompts}),
        processing_class=transformers.AutoTokenizer.from_pretrained(folder),
        callbacks=[Clock()],
    )
    with contextlib.redirect_stdout(io.StringIO()):  # the Trainer prints every log row
        trainer.train()
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    return rewards, walls


def samples_per_second(walls: list[float]) -> float:
    """Steps 2 .. S-1: skip the warm-up step and the last one (ours evaluates and saves there)."""
    return (len(walls) - 2) * PROMPTS * GROUP / (walls[-2] - walls[0])


def check_same_model(init: str, folder: Path) -> float:
    """Max |logit difference| between the TinyGPT and its GPT-2 export on a batch of prompts."""
    import transformers

    from rlrecipes.runs import load_checkpoint

    model, tok, _, _ = load_checkpoint(init)
    gpt2 = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    ids = torch.tensor([tok.encode(p + "123", bos=True) for p in get_task("arithmetic").heldout_prompts()[:64]])
    with torch.no_grad():
        return (model.eval()(ids) - gpt2(input_ids=ids).logits).abs().max().item()


def phase_breakdown(init: str, steps: int, out: Path) -> dict:
    """Where a step of recipes/grpo.py goes, at the bake's batch (grpo.Config's 32 prompts x G=8). We time its
    calls by wrapping the names it looks up at call time (grpo.generate, grpo.sequence_logprobs, grpo.evaluate,
    Tensor.backward, clip_grad_norm_, AdamW.step) for one run, then put them back: no file is edited.
    Returns seconds per training step of each phase, and seconds per evaluate() call."""
    spent = dict.fromkeys(
        [
            "sampling",
            "reference log-probs (no grad)",
            "policy log-probs (forward)",
            "backward",
            "clip + AdamW",
            "evaluate",
        ],
        0.0,
    )
    calls = {"evaluate": 0}
    saved = [
        (grpo, "generate"),
        (grpo, "sequence_logprobs"),
        (grpo, "evaluate"),
        (torch.Tensor, "backward"),
        (torch.nn.utils, "clip_grad_norm_"),
        (torch.optim.AdamW, "step"),
    ]
    originals = [getattr(owner, name) for owner, name in saved]

    def timing(fn, key):
        def wrapper(*a, **k):
            phase = key() if callable(key) else key
            calls[phase] = calls.get(phase, 0) + 1
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[phase] += time.perf_counter() - t0

        return wrapper

    keys = [
        "sampling",
        lambda: "policy log-probs (forward)" if torch.is_grad_enabled() else "reference log-probs (no grad)",
        "evaluate",
        "backward",
        "clip + AdamW",
        "clip + AdamW",
    ]
    for (owner, name), fn, key in zip(saved, originals, keys):
        setattr(owner, name, timing(fn, key))
    try:
        _, walls = run_ours(init, steps, out, seed=100, prompts=grpo.Config.batch_size)
    finally:
        for (owner, name), fn in zip(saved, originals):
            setattr(owner, name, fn)
    # Steps 2 .. S-1 as for throughput; phases are summed over all steps, so scale them by the step count.
    per_step = (walls[-2] - walls[0]) / (len(walls) - 2)
    phases = {k: v / steps for k, v in spent.items() if k != "evaluate"}
    phases["the rest (reward, advantages, logging)"] = max(0.0, per_step - sum(phases.values()))
    return {
        "step_seconds": per_step,
        "phases": phases,
        "evaluate_seconds": spent["evaluate"] / max(1, calls["evaluate"]),
    }


def plot(curves: dict, path: Path, window: int = 5) -> None:
    """Reward against samples for each side's first (long) run: thin per step, thick a moving average.
    Ours on hf:GPT-2 and on the TinyGPT compute the same numbers from the same seed, so their lines
    coincide: hf is drawn dashed on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    style = {
        "ours (TinyGPT)": dict(color="tab:green", linestyle="-"),
        "trl (GPT-2)": dict(color="tab:orange", linestyle="-"),
        "ours (hf:GPT-2)": dict(color="tab:blue", linestyle="--"),
    }
    fig, ax = plt.subplots(figsize=(7, 4))
    for side, kw in style.items():
        rewards = curves[side][0]
        x = [(s + 1) * PROMPTS * GROUP for s in range(len(rewards))]
        w = min(window, len(rewards))
        smooth = [statistics.mean(rewards[max(0, i - w + 1) : i + 1]) for i in range(len(rewards))]
        ax.plot(x, rewards, linewidth=0.7, alpha=0.35, **kw)
        ax.plot(x, smooth, linewidth=2.2, label=f"{side} ({w}-step mean)", **kw)
    ax.set_xlabel("samples (completions) seen")
    ax.set_ylabel("mean reward of the batch")
    ax.set_title(f"GRPO from the same SFT weights ({PROMPTS} prompts x G={GROUP} per step)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    args = cli(__doc__)
    extra = argparse.ArgumentParser()
    extra.add_argument("--init", default=None, help="an SFT TinyGPT checkpoint or run folder (default: train one here)")
    init = extra.parse_known_args()[0].init
    # The first repeat is long enough for a reward curve (the bake's reward rises ~0.08 in its first ~8000
    # samples); the others are short, for the spread of the speed ratio. Within a repeat all sides run alike.
    long_steps, steps, repeats = (6, 6, 1) if args.quick else (60, 16, 5)
    rows, raw = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if init is None:
            init = sft_model(tmp, args.quick)
        try:
            import trl  # noqa: F401

            from rlrecipes.lm.hf import export_transformers
        except ImportError as err:  # no fake numbers: say why and skip the TRL rows
            rows.append(row("grpo", "TRL GRPOTrainer comparison", "skipped", note=f"cannot import: {err}"))
            finish(args, {"name": "grpo", "rows": rows, "raw": raw})
            return
        folder = export_transformers(init, tmp / "gpt2")
        max_diff = check_same_model(init, folder)
        sides = {
            "ours (hf:GPT-2)": lambda n, r: run_ours(f"hf:{folder}", n, tmp / f"ours-hf-{r}", seed=r),
            "trl (GPT-2)": lambda n, r: run_trl(folder, n, tmp / f"trl-{r}", seed=r),
            "ours (TinyGPT)": lambda n, r: run_ours(init, n, tmp / f"ours-tiny-{r}", seed=r),
        }
        rates = {k: [] for k in sides}
        curves = {k: [] for k in sides}
        for r in range(repeats):  # alternate the order, as in common.side_by_side
            for name in list(sides) if r % 2 == 0 else list(sides)[::-1]:
                rewards, walls = sides[name](long_steps if r == 0 else steps, r)
                rates[name].append(samples_per_second(walls))
                curves[name].append(rewards)
                print(
                    f"  {name:<16} run {r}: {rates[name][-1]:.0f} samples/s, reward {rewards[0]:.2f} -> {rewards[-1]:.2f}",
                    flush=True,
                )
        breakdown = {
            name: phase_breakdown(model, steps, tmp / f"phases-{name}")
            for name, model in (("TinyGPT", init), ("hf:GPT-2", f"hf:{folder}"))
        }
        plot(curves, HERE / "grpo_vs_trl.png")
    note = f"{PROMPTS} prompts x G={GROUP}; runs of {long_steps}" + (
        f" then {repeats - 1} x {steps} steps" if repeats > 1 else " steps"
    )
    rows += [
        row("grpo", "recipes/grpo.py on hf:GPT-2, samples/s", stats(rates["ours (hf:GPT-2)"]), note=note, fmt="{:.0f}"),
        row(
            "grpo",
            "TRL GRPOTrainer on the same GPT-2, samples/s",
            stats(rates["trl (GPT-2)"]),
            note=f"trl {__import__('trl').__version__}",
            fmt="{:.0f}",
        ),
        row(
            "grpo",
            "recipes/grpo.py on the TinyGPT (same weights), samples/s",
            stats(rates["ours (TinyGPT)"]),
            fmt="{:.0f}",
        ),
        row(
            "grpo",
            "ours / TRL speed, same GPT-2",
            ratio(rates["ours (hf:GPT-2)"], rates["trl (GPT-2)"]),
            "x",
            "same run order",
        ),
        row("grpo", "ours on TinyGPT / TRL on GPT-2 speed", ratio(rates["ours (TinyGPT)"], rates["trl (GPT-2)"]), "x"),
        row(
            "grpo",
            "long run's reward, first 5 -> last 5 steps: ours hf / trl / ours tiny",
            " / ".join(
                f"{statistics.mean(curves[k][0][:5]):.2f} -> {statistics.mean(curves[k][0][-5:]):.2f}" for k in sides
            ),
            note="one run per side: noisy",
        ),
        row("grpo", "TinyGPT vs exported GPT-2: max abs logit difference", f"{max_diff:.1e}", note="same model"),
    ]
    for name, b in breakdown.items():
        shares = ", ".join(f"{k} {100 * v / b['step_seconds']:.0f}%" for k, v in b["phases"].items())
        rows.append(
            row(
                "grpo",
                f"ours ({name}): one step at the bake's batch (32 prompts x 8)",
                1000 * b["step_seconds"],
                " ms",
                shares,
                fmt="{:.0f}",
            )
        )
        rows.append(
            row(
                "grpo",
                f"ours ({name}): one evaluate() (500 prompts, greedy)",
                1000 * b["evaluate_seconds"],
                " ms",
                f"= {b['evaluate_seconds'] / b['step_seconds']:.1f} steps; the bake evaluates every 20",
                fmt="{:.0f}",
            )
        )
    raw = {"rates": rates, "curves": curves, "phases": breakdown, "max_logit_diff": max_diff, "init": init}
    finish(args, {"name": "grpo", "rows": rows, "raw": raw})


if __name__ == "__main__":
    main()
