"""`rlrecipes kl-estimators`: the three estimators of KL(policy || reference), measured where we know the answer.

During RL we only ever see the tokens the policy sampled, so KL(policy || reference) is estimated from
them (Schulman, "Approximating KL Divergence", 2020, http://joschu.net/blog/kl-approx.html). With
r = p_ref(x) / p_policy(x) and x drawn from the policy:

    k1 = -log r             unbiased, high variance, negative on many samples    PPO-RLHF's per-token penalty
    k2 = (log r)^2 / 2      never negative, low variance, biased as KL grows
    k3 = (r - 1) - log r    never negative, unbiased, low variance when p ~ q     GRPO's loss term

Here p (the policy) and q (the reference) are categorical distributions over a small vocabulary, small
enough to compute the exact KL by summing over it. We then draw `samples` tokens from p, average each
estimator over them, and repeat `trials` times: the mean of those estimates minus the exact KL is the
bias, their spread is the standard deviation. The reference is pushed away from the policy along a fixed
random direction of its logits, so the true KL sweeps from 0.001 to 2 nats.

Simplified: one categorical distribution stands for one token position; a sequence sums many of them.

    rlrecipes kl-estimators --samples 64 --seed 0     (a few seconds; docs/kl.md reads the figure)
"""

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib
import torch

from rlrecipes.lm.kl import kl_k1, kl_k2, kl_k3
from rlrecipes.runs import Run

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ESTIMATORS = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}
COLORS = {"k1": "#e4572e", "k2": "#5b8def", "k3": "#29a36a"}


@dataclass
class Config:
    samples: int = 64  # tokens drawn from the policy for one estimate (think: the tokens of a batch)
    trials: int = 2000  # independent estimates, for the bias and the std
    points: int = 25  # KL values in the sweep, log-spaced from kl_min to kl_max
    kl_min: float = 1e-3  # the smallest true KL of the sweep, in nats
    kl_max: float = 2.0  # the largest true KL of the sweep, in nats
    vocab: int = 32  # tokens in the categorical distributions
    seed: int = 0  # picks the policy, the reference's direction of drift and the samples
    out: str | None = None  # run folder (default runs/kl-estimators-<timestamp>)
    overwrite: bool = False  # replace whatever --out holds


def estimator_stats(
    p_logits: torch.Tensor, q_logits: torch.Tensor, n_samples: int, n_trials: int, seed: int = 0
) -> dict:
    """Exact KL(p || q) and, for k1, k2, k3, the bias and std of their mean over `n_samples` tokens drawn from p,
    measured over `n_trials` independent draws. Also, per estimator:
      exact_bias, exact_sample_std   E_p[k] - KL and the std of one sample's k, by summing over the vocabulary
      sample_std, frac_negative      the same spread, and how often k < 0, measured on the drawn samples"""
    if n_samples < 1:
        raise ValueError(f"n_samples={n_samples} must be at least 1")
    if n_trials < 2:
        raise ValueError(f"n_trials={n_trials} must be at least 2 (a standard deviation needs two estimates)")
    if p_logits.dim() != 1 or p_logits.shape != q_logits.shape:
        raise ValueError(
            f"p_logits and q_logits must be 1-D and the same size, got {tuple(p_logits.shape)} and {tuple(q_logits.shape)}"
        )
    logp = p_logits.double().log_softmax(-1)  # (V,) float64, so the exact sums hold to 1e-12
    ref_logp = q_logits.double().log_softmax(-1)  # (V,)
    p = logp.exp()  # (V,)
    kl = (p * (logp - ref_logp)).sum().item()  # the exact answer every estimator is aiming at
    gen = torch.Generator().manual_seed(seed)
    x = torch.multinomial(p, n_trials * n_samples, replacement=True, generator=gen)  # (trials * samples,) tokens ~ p
    x = x.view(n_trials, n_samples)  # (trials, samples)
    out = {"kl": kl, "n_samples": n_samples, "n_trials": n_trials}
    for name, k in ESTIMATORS.items():
        per_token = k(logp, ref_logp)  # (V,) the estimator's value for each token of the vocabulary
        mean = (p * per_token).sum()  # E_p[k], exact
        values = per_token[x]  # (trials, samples) the values a run would see
        estimates = values.mean(1)  # (trials,) one estimate of KL per trial
        out[name] = {
            "bias": estimates.mean().item() - kl,
            "std": estimates.std().item(),  # shrinks as 1 / sqrt(n_samples): that is what averaging buys
            "sample_std": values.std().item(),
            "frac_negative": (values < 0).double().mean().item(),
            "exact_bias": mean.item() - kl,
            "exact_sample_std": (p * (per_token - mean) ** 2).sum().sqrt().item(),
        }
    return out


def exact_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    logp, ref_logp = p_logits.double().log_softmax(-1), q_logits.double().log_softmax(-1)
    return (logp.exp() * (logp - ref_logp)).sum().item()


def reference_at(p_logits: torch.Tensor, direction: torch.Tensor, target_kl: float) -> torch.Tensor:
    """Reference logits p_logits + t * direction with KL(p || q) = target_kl. KL grows with t (it is convex in t
    with its minimum 0 at t = 0), so we double t until we pass the target, then bisect."""
    hi = 1.0
    while exact_kl(p_logits, p_logits + hi * direction) < target_kl:
        hi *= 2
        if hi > 1e6:  # a direction that only shifts every logit equally never changes q
            raise ValueError(f"KL(p || q) does not reach {target_kl} along this direction")
    lo = 0.0
    for _ in range(60):  # 60 halvings: t to float64 precision
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if exact_kl(p_logits, p_logits + mid * direction) < target_kl else (lo, mid)
    return p_logits + hi * direction


def kl_sweep(
    n_samples: int = 64,
    n_trials: int = 2000,
    n_points: int = 25,
    seed: int = 0,
    kl_min: float = 1e-3,
    kl_max: float = 2.0,
    vocab: int = 32,
) -> list[dict]:
    """estimator_stats at `n_points` true KLs, log-spaced from kl_min to kl_max: a fixed policy, a reference that drifts."""
    if not 0 < kl_min < kl_max:
        raise ValueError(f"need 0 < kl_min < kl_max, got kl_min={kl_min}, kl_max={kl_max}")
    if n_points < 2 or vocab < 2:
        raise ValueError(f"points={n_points} and vocab={vocab} must both be at least 2")
    gen = torch.Generator().manual_seed(seed)
    p_logits = torch.randn(vocab, generator=gen, dtype=torch.float64)  # (V,) the policy
    direction = torch.randn(vocab, generator=gen, dtype=torch.float64)  # (V,) where the reference drifts
    rows = []
    for i in range(n_points):
        target = math.exp(math.log(kl_min) + i / (n_points - 1) * (math.log(kl_max) - math.log(kl_min)))
        q_logits = reference_at(p_logits, direction, target)
        rows.append(estimator_stats(p_logits, q_logits, n_samples, n_trials, seed=seed + i))
    return rows


def plot_kl_estimators(out_path: str | Path, rows: list[dict] | None = None, **sweep_kwargs) -> Path:
    """Two panels against the true KL: (a) the bias of each estimator, (b) the std of one sample's estimate.
    Lines are exact (sums over the vocabulary); markers are measured from samples. `rows` comes from kl_sweep,
    which is run with `sweep_kwargs` when it is not given."""
    rows = rows if rows is not None else kl_sweep(**sweep_kwargs)
    kls = [r["kl"] for r in rows]
    n = rows[0]["n_samples"]
    fig, (ax_bias, ax_std) = plt.subplots(1, 2, figsize=(11, 4.4))
    for name, color in COLORS.items():
        # bias relative to the KL itself: the same curve reads the same at 0.001 nats and at 2
        bias = [r[name]["bias"] / r["kl"] for r in rows]
        std = [r[name]["std"] / r["kl"] for r in rows]
        # the band is one estimate's spread: an unbiased estimator can still be far off on any given batch
        ax_bias.fill_between(
            kls, [b - s for b, s in zip(bias, std)], [b + s for b, s in zip(bias, std)], color=color, alpha=0.12
        )
        ax_bias.plot(
            kls, [r[name]["exact_bias"] / r["kl"] for r in rows], color=color, label=f"{name}: (E[{name}] - KL) / KL"
        )
        ax_bias.plot(kls, bias, "o", color=color, markersize=3)
        ax_std.plot(kls, [r[name]["exact_sample_std"] for r in rows], color=color, label=name)
        ax_std.plot(kls, [r[name]["sample_std"] for r in rows], "o", color=color, markersize=3)
    ax_bias.axhline(0, color="black", lw=0.8)
    ax_bias.set_xscale("log")
    ax_bias.set_ylim(-1.5, 2.0)  # k1's band runs off the chart at small KL: its noise is several times the KL
    ax_bias.set_xlabel("true KL(policy || reference), nats")
    ax_bias.set_ylabel("bias / true KL")
    ax_bias.set_title(f"(a) bias; band: ±1 std of one estimate from {n} samples", fontsize=10)
    neg = ", ".join(
        f"{r['k1']['frac_negative']:.0%} at KL={r['kl']:.2g}" for r in (rows[0], rows[len(rows) // 2], rows[-1])
    )
    ax_bias.text(
        0.98, 0.03, f"k1 < 0 on {neg}", transform=ax_bias.transAxes, ha="right", fontsize=8, color=COLORS["k1"]
    )
    ax_std.plot(kls, kls, ":", color="gray", label="std = KL")
    ax_std.plot([], [], "-", color="black", label="lines: exact, summed over the vocabulary")
    ax_std.plot([], [], "o", color="black", markersize=3, label=f"dots: measured, {rows[0]['n_trials']} x {n} samples")
    ax_std.set_xscale("log")
    ax_std.set_yscale("log")
    ax_std.set_xlabel("true KL(policy || reference), nats")
    ax_std.set_ylabel("std of one sample's estimate, nats")
    ax_std.set_title("(b) noise per sample: k1 ≈ √(2·KL) (slope 1/2), k3 ~ KL (slope 1)", fontsize=10)
    for ax in (ax_bias, ax_std):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="upper left" if ax is ax_bias else "lower right")
    fig.suptitle(
        "Estimating KL from the policy's own samples: k1 unbiased but noisy, k2 biased, k3 unbiased and quiet near 0"
    )
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return Path(out_path)


def validate(cfg: Config) -> None:
    """The flags' names in the messages, so `rlrecipes kl-estimators --samples 0` says which flag is wrong."""
    for name, least in (("samples", 1), ("trials", 2), ("points", 2), ("vocab", 2)):
        if getattr(cfg, name) < least:
            raise ValueError(f"{name}={getattr(cfg, name)} must be at least {least}")
    if not 0 < cfg.kl_min < cfg.kl_max:
        raise ValueError(f"need 0 < kl_min < kl_max, got kl_min={cfg.kl_min}, kl_max={cfg.kl_max}")


def run(cfg: Config) -> dict:
    """The sweep, the figure and the numbers, in a run folder. Returns what summary.json holds."""
    validate(cfg)
    rows = kl_sweep(cfg.samples, cfg.trials, cfg.points, cfg.seed, cfg.kl_min, cfg.kl_max, cfg.vocab)
    out = Run.create(cfg.out, "kl-estimators", overwrite=cfg.overwrite)
    plot_kl_estimators(out.dir / "kl_estimators.png", rows)
    result = {"config": asdict(cfg), "run_dir": str(out.dir), "rows": rows}
    out.write_json("summary.json", result)
    return result


def print_table(result: dict, at: tuple[float, ...] = (0.01, 0.1, 0.5, 2.0)) -> None:
    """Bias and std of each estimator at the sweep's points nearest to the KLs in `at`."""
    from rich.console import Console
    from rich.table import Table

    rows = result["rows"]
    table = Table(
        title=f"KL estimators: bias and std of one estimate from {rows[0]['n_samples']} samples ({rows[0]['n_trials']} trials)"
    )
    table.add_column("true KL")
    for name in ESTIMATORS:
        table.add_column(f"{name} bias")
        table.add_column(f"{name} std")
    table.add_column("k1 < 0")
    nearest = dict.fromkeys(min(range(len(rows)), key=lambda i: abs(math.log(rows[i]["kl"] / kl))) for kl in at)
    for row in (rows[i] for i in nearest):
        cells = [
            f"{row[name][stat]:+.4f}" if stat == "bias" else f"{row[name][stat]:.4f}"
            for name in ESTIMATORS
            for stat in ("bias", "std")
        ]
        table.add_row(f"{row['kl']:.4f}", *cells, f"{row['k1']['frac_negative']:.0%}")
    console = Console()
    console.print(table)
    console.print(f"figure and numbers: {result['run_dir']}/kl_estimators.png, summary.json")


if __name__ == "__main__":
    import tyro

    result = run(tyro.cli(Config, description=__doc__))
    print_table(result)
