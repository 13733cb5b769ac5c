"""Plots a person opens: training curves from metrics.jsonl rows, and accuracy per stage.

matplotlib with the Agg backend, so it works on a machine with no screen. Every function writes a PNG
and returns its path.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def _save(fig, path: str | Path, title: str = "") -> Path:
    """Title, lay out, write and close a figure (closing frees its memory: runs draw many)."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average: RL curves are noisy, the trend is what a reader looks for."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_curves(
    rows: list[dict], keys: list[str], path: str | Path, title: str = "", smooth: int = 1, by_stage: bool = False
) -> Path:
    """One panel per metric in `keys`, against `step`; a line per stage when the rows span several,
    or with `by_stage` a panel per stage and metric (for stages whose scales differ, like pretrain and SFT)."""
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    panels = [(s if by_stage else None, k) for s in (stages if by_stage else [None]) for k in keys]
    panels = [(s, k) for s, k in panels if any(k in r and s in (None, r["stage"]) for r in rows)]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 3.3), squeeze=False)
    for ax, (panel_stage, key) in zip(axes[0], panels):
        for stage in [panel_stage] if panel_stage else dict.fromkeys(r["stage"] for r in rows if key in r):
            pts = [(r["step"], r[key]) for r in rows if r["stage"] == stage and r.get(key) is not None]
            steps, values = zip(*pts)
            if smooth > 1 and len(values) > smooth:
                ax.plot(steps, values, alpha=0.25, color="gray")
                values = _smooth(list(values), smooth)
            ax.plot(steps, values, label=stage, marker="o" if len(steps) < 20 else None)
        ax.set_title(f"{panel_stage}: {key}" if panel_stage else key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if not panel_stage and len({r["stage"] for r in rows if key in r}) > 1:
            ax.legend()
    return _save(fig, path, title)


def plot_accuracy(stages: list[str], accuracies: list[float], path: str | Path, title: str = "") -> Path:
    """Held-out accuracy after each stage, as bars labelled with their values."""
    fig, ax = plt.subplots(figsize=(1.6 * len(stages) + 2, 3.3))
    bars = ax.bar(stages, accuracies, color=["#9aa5b1", "#5b8def", "#e4572e", "#29a36a"][: len(stages)])
    ax.bar_label(bars, labels=[f"{a:.2f}" for a in accuracies])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("held-out accuracy (greedy)")
    ax.set_title(title or "accuracy after each stage")
    return _save(fig, path)


def plot_comparison(
    histories: dict[str, list[dict]], keys: list[str], x: str, path: str | Path, title: str = "", smooth: int = 10
) -> Path:
    """The bake-off figure: one panel per metric, one line per algorithm, against `x` (samples seen); each line
    a trailing mean over `smooth` points (the gallery uses it too, for a sick run beside a healthy one)."""
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, rows in histories.items():
            pts = [(r[x], r[key]) for r in rows if r.get(key) is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, _smooth(list(ys), smooth), label=name)
        ax.set_title(key)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    return _save(fig, path, title)


def plot_calibration(bins: list[dict], path: str | Path, title: str = "") -> Path:
    """A reliability diagram: predicted probability (binned) against how often it came true; the diagonal is
    perfect calibration. `bins` are {"predicted", "observed", "count"}; a dot's size follows its count."""
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", label="perfectly calibrated")
    total = max(sum(b["count"] for b in bins), 1)
    ax.plot([b["predicted"] for b in bins], [b["observed"] for b in bins], color="#5b8def", label="reward model")
    ax.scatter(
        [b["predicted"] for b in bins],
        [b["observed"] for b in bins],
        s=[20 + 400 * b["count"] / total for b in bins],
        color="#5b8def",
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted P(chosen > rejected)")
    ax.set_ylabel("observed frequency in the labels")
    ax.set_title(title or "calibration")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return _save(fig, path)


def plot_best_of_n(
    ns: list[int], curves: dict[str, list[float]], kl: list[float], path: str | Path, title: str = ""
) -> Path:
    """Best-of-N: each curve (gold reward, win rate, ...) against N, with the analytic KL bound beside it."""
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6))
    for name, values in curves.items():
        axes[0].plot(ns, values, marker="o", label=name)
    axes[0].set_xscale("log", base=2)
    axes[0].set_xticks(ns, [str(n) for n in ns])
    axes[0].set_xlabel("N (samples per prompt)")
    axes[0].set_ylim(0, 1.02)
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    axes[0].set_title("gold judge")
    axes[1].plot(ns, kl, marker="o", color="#e4572e")
    axes[1].set_xscale("log", base=2)
    axes[1].set_xticks(ns, [str(n) for n in ns])
    axes[1].set_xlabel("N (samples per prompt)")
    axes[1].set_ylabel("nats")
    axes[1].set_title("KL(best-of-N || SFT) <= log N - (N-1)/N")
    axes[1].grid(alpha=0.3)
    return _save(fig, path, title)


def plot_overoptimization(points: list[dict], history: list[dict], path: str | Path, title: str = "") -> Path:
    """Reward over-optimisation (Gao et al. 2022): proxy and gold reward of held-out samples against sqrt(KL) from
    the starting model, the gold peak marked; beside it, the training rollouts' `reward` and `gold/reward`."""
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.8))
    x = [p["sqrt_kl"] for p in points]
    gold_ax, proxy_ax = axes[0], axes[0].twinx()  # two scales: gold in [0, 1], the proxy in reward-model stds
    lines = gold_ax.plot(x, [p["gold"] for p in points], marker="o", color="#29a36a", label="gold (hidden judge)")
    lines += proxy_ax.plot(x, [p["proxy"] for p in points], marker="s", color="#e4572e", label="proxy (reward model)")
    peak = max(points, key=lambda p: p["gold"])
    gold_ax.axvline(peak["sqrt_kl"], color="gray", linestyle="--", alpha=0.6)
    gold_ax.annotate(f"gold peak, step {peak['step']}", (peak["sqrt_kl"], peak["gold"]), textcoords="offset points",
                     xytext=(4, -14), fontsize=8)  # fmt: skip
    gold_ax.set_xlabel("sqrt(KL(policy || SFT)), sqrt(nats)")
    gold_ax.set_ylabel("gold reward", color="#29a36a")
    proxy_ax.set_ylabel("proxy reward (std)", color="#e4572e")
    gold_ax.grid(alpha=0.3)
    gold_ax.set_title("held-out samples at each checkpoint")
    gold_ax.legend(handles=lines, loc="lower center", fontsize=8)  # clear of the peak's label
    steps = [r["step"] for r in history]
    axes[1].plot(steps, _smooth([r["reward"] for r in history], 5), color="#e4572e", label="reward (proxy)")
    axes[1].plot(steps, _smooth([r["gold/reward"] for r in history], 5), color="#29a36a", label="gold/reward")
    axes[1].set_xlabel("step")
    axes[1].set_title("training rollouts (smoothed over 5 steps)")
    axes[1].grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    return _save(fig, path, title)


def plot_panels(
    rows: list[dict], panels: dict[str, list[str]], path: str | Path, title: str = "", xlabel: str = "step"
) -> Path:
    """One panel per entry of `panels` (its title -> the metrics it overlays, e.g. a reward over all samples
    and over the kept ones), against `step`, a marked point per logged row that has the metric."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (panel, keys) in zip(axes[0], panels.items()):
        for key in keys:
            pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=key)
        ax.set_title(panel)
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds and steps are whole numbers
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend()
    return _save(fig, path, title)
