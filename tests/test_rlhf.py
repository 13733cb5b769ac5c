"""RLHF: policy-gradient recipes against a learned reward model (--reward reward-model:RUN_DIR), the gold reward
logged beside the proxy, gold_win_rate in summary.json, bad --reward values, and `rlrecipes overoptimize`."""

import importlib
import json

import pytest

from rlrecipes import overoptimize
from rlrecipes.cli import main
from rlrecipes.recipes import grpo, ppo
from rlrecipes.rewards import gold_judge, gold_summary
from rlrecipes.runs import CheckpointError
from rlrecipes.tasks import get_task

RL_RECIPES = ("grpo", "ppo", "reinforce", "rloo")
TINY = dict(steps=2, batch_size=4, eval_every=0, sample_every=0, seed=0, device="cpu")


def tiny_config(name: str, init: str, out, **overrides):
    module = importlib.import_module(f"rlrecipes.recipes.{name}")
    group = {"group_size": 2} if name in ("grpo", "rloo") else {}
    return module, module.Config(init=init, task="reviews", out=str(out), **{**TINY, **group, **overrides})


# --- the gold judge beside the proxy ---


def test_gold_judge_is_the_task_reward_only_when_another_reward_is_optimised():
    task = get_task("reviews")
    assert gold_judge("task", task) is None  # on reviews the task's reward is the gold judge itself
    assert gold_judge("reward-model:runs/reviews-rm", task) == task.reward
    assert gold_summary(get_task("arithmetic"), None, None, None) == {}  # no hidden judge: nothing to report


@pytest.mark.parametrize("name", RL_RECIPES)
def test_rlhf_run_logs_gold_beside_proxy_and_writes_gold_win_rate(name, reviews_sft, reviews_rm, tmp_path):
    module, cfg = tiny_config(name, reviews_sft, tmp_path / name, reward=f"reward-model:{reviews_rm['dir']}")
    result = module.train(cfg)
    rows = [r for r in result["history"] if "reward" in r]
    assert len(rows) == 2
    for r in rows:
        assert 0 <= r["gold/reward"] <= 1  # the gold judge's scale
        assert r["gold/reward"] != r["reward"]  # the proxy is the reward model's standardised score, not gold
    summary = json.loads((tmp_path / name / "summary.json").read_text())
    assert 0 <= summary["gold_win_rate"] <= 1 and summary["gold_win_rate"] == result["gold_win_rate"]
    logged = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    assert all("gold/reward" in r for r in logged if "reward" in r)


def test_with_the_task_reward_on_reviews_reward_is_gold_and_gold_win_rate_is_still_reported(reviews_sft, tmp_path):
    _, cfg = tiny_config("grpo", reviews_sft, tmp_path / "grpo")
    result = grpo.train(cfg)
    assert all("gold/reward" not in r for r in result["history"])  # `reward` is already the gold judge
    assert 0 <= json.loads((tmp_path / "grpo" / "summary.json").read_text())["gold_win_rate"] <= 1


# --- bad --reward values fail before a run folder is written ---


@pytest.mark.parametrize("spec", ["reward-model:", "rm:runs/reviews-rm", "gold", ""])
def test_malformed_reward_spec_fails_in_validate(spec, reviews_sft, tmp_path):
    for name in RL_RECIPES:
        module, cfg = tiny_config(name, reviews_sft, tmp_path / name, reward=spec)
        with pytest.raises(ValueError, match="reward-model:RUN_DIR"):
            module.train(cfg)
        assert not (tmp_path / name).exists()


def test_missing_reward_model_folder_fails_before_the_run_folder(reviews_sft, tmp_path):
    _, cfg = tiny_config("ppo", reviews_sft, tmp_path / "ppo", reward=f"reward-model:{tmp_path / 'no-such-rm'}")
    with pytest.raises(ValueError, match="no-such-rm"):
        ppo.train(cfg)
    assert not (tmp_path / "ppo").exists()


def test_reward_model_of_another_tasks_characters_fails_before_the_run_folder(sft_checkpoint, reviews_rm, tmp_path):
    cfg = grpo.Config(init=sft_checkpoint, task="arithmetic", reward=f"reward-model:{reviews_rm['dir']}",
                      out=str(tmp_path / "grpo"), **{**TINY, "group_size": 2})  # fmt: skip
    with pytest.raises(CheckpointError, match="reads other characters"):
        grpo.train(cfg)
    assert not (tmp_path / "grpo").exists()


def test_cli_names_the_bad_reward_and_exits_2(reviews_sft, tmp_path, capsys):
    out = tmp_path / "ppo"
    code = main(["run", "ppo", "--task", "reviews", "--init", reviews_sft, "--reward", "rm:x", "--out", str(out)])
    assert code == 2 and "rm:x" in capsys.readouterr().err and not out.exists()


# --- learning: PPO against the reward model beats the SFT model in the gold judge's eyes ---


@pytest.mark.slow
def test_ppo_against_the_reward_model_raises_gold_win_rate(reviews_sft, reviews_rm, tmp_path):
    cfg = ppo.Config(init=reviews_sft, task="reviews", reward=f"reward-model:{reviews_rm['dir']}", steps=12,
                     batch_size=32, eval_every=0, sample_every=0, seed=0, device="cpu", out=str(tmp_path / "ppo"))  # fmt: skip
    result = ppo.train(cfg)
    # Measured: gold_win_rate 0.759 over the SFT model (seed 0; 0.808 after 20 steps, 0.819 at the defaults).
    assert result["gold_win_rate"] >= 0.70, result["gold_win_rate"]
    rows = [r for r in result["history"] if "gold/reward" in r]
    assert rows[-1]["reward"] > rows[0]["reward"]  # the proxy went up too


# --- rlrecipes overoptimize ---


def test_overoptimize_rejects_bad_values_before_any_work(reviews_sft, reviews_rm, tmp_path):
    good = dict(init=reviews_sft, reward_model=str(reviews_rm["dir"]), out=str(tmp_path / "oo"), device="cpu")
    for bad, match in [
        ({"init": None}, "--init"),
        ({"reward_model": None}, "--reward-model"),
        ({"steps": 10, "every": 3}, "multiple of every=3"),
        ({"repeats": 0}, "repeats=0"),
        ({"group_size": 1}, "group_size=1"),
        ({"reward_model": str(tmp_path / "no-such-rm")}, "no-such-rm"),
    ]:
        with pytest.raises(ValueError, match=match):
            overoptimize.overoptimize(overoptimize.Config(**{**good, **bad}))
        assert not (tmp_path / "oo").exists()


def test_overoptimize_draws_its_figure_and_a_consistent_summary(reviews_sft, reviews_rm, tmp_path):
    out = tmp_path / "oo"
    code = main(["overoptimize", "--init", reviews_sft, "--reward-model", str(reviews_rm["dir"]), "--steps", "4",
                 "--every", "2", "--batch-size", "4", "--group-size", "4", "--repeats", "1", "--device", "cpu",
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    assert (out / "overoptimize.png").stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    points = summary["points"]
    assert [p["step"] for p in points] == [0, 2, 4]
    assert points[0]["kl"] == 0.0  # the SFT model against itself: every log-ratio is exactly 0
    assert points[-1]["kl"] > 0  # training moved the policy
    assert all(p["sqrt_kl"] ** 2 == pytest.approx(max(p["kl"], 0)) for p in points)
    assert all(0 <= p["gold"] <= 1 and 0 <= p["gold_win_rate"] <= 1 for p in points)
    assert summary["peak"] == max(points, key=lambda p: p["gold"])
    assert summary["gold_drop_after_peak"] == pytest.approx(summary["peak"]["gold"] - points[-1]["gold"])
    assert summary["proxy_gain_after_peak"] == pytest.approx(points[-1]["proxy"] - summary["peak"]["proxy"])
    assert 0 <= summary["gold_win_rate"] <= 1  # the final policy's, as every policy trained on reviews reports
    kept = sorted(p.name for p in out.glob("grpo-step-*.safetensors"))  # every point on the curve is a checkpoint
    assert kept == ["grpo-step-0002.safetensors", "grpo-step-0004.safetensors"]  # of one uninterrupted GRPO run
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["stage"] == "grpo" and "reward" in r] == [1, 2, 3, 4]
    assert [r["step"] for r in rows if r["stage"] == "overoptimize"] == [0, 2, 4]


@pytest.mark.slow
def test_overoptimize_gold_peaks_then_falls_while_the_proxy_rises(reviews_sft, reviews_rm, tmp_path):
    """Goodhart at a reduced size: a learning rate 3x the default gets there in 16 steps (about 10 s)."""
    cfg = overoptimize.Config(init=reviews_sft, reward_model=str(reviews_rm["dir"]), steps=16, every=4, batch_size=16,
                              lr=1e-3, repeats=2, device="cpu", out=str(tmp_path / "oo"))  # fmt: skip
    summary = overoptimize.overoptimize(cfg)
    gold, proxy = [p["gold"] for p in summary["points"]], [p["proxy"] for p in summary["points"]]
    # Measured (seed 0): gold 0.646 0.776 0.843 0.763 0.675, proxy 0.10 0.93 1.19 1.39 1.50 at steps 0 4 8 12 16;
    # KL 0 -> 37 nats.
    assert 0 < summary["peak"]["step"] < 16  # an interior peak: gold rose, then fell
    assert gold[-1] < max(gold) - 0.03 and max(gold) > gold[0] + 0.05
    assert proxy == sorted(proxy) and proxy[-1] > summary["peak"]["proxy"] + 0.2  # the proxy kept rising
