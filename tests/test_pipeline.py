"""Pretrain and SFT (learning, determinism, resume, Ctrl-C, divergence), bake end to end, and the CLI."""

import json
import subprocess
import sys

import pytest
import torch

from rlrecipes import bake
from rlrecipes.cli import main
from rlrecipes.recipes import pretrain, sft
from rlrecipes.runs import Diverged, load_checkpoint

TINY = dict(
    steps=30, batch_size=16, n_documents=2000, n_layer=1, n_embd=32, n_head=2, eval_every=0, save_every=10, device="cpu"
)


def tiny_pretrain(out, **kw):
    return pretrain.train(pretrain.Config(out=str(out), **{**TINY, **kw}))


# --- learning (the shared fixture trains these once per session) ---


def test_pretraining_learns_the_corpus(trained_models):
    """600 steps from random weights: loss falls by half and the model adds as sloppily as its corpus."""
    folder = trained_models["pretrain"].rsplit("/", 1)[0] + "/pretrain"
    rows = [json.loads(line) for line in open(f"{folder}/metrics.jsonl")]
    first, last = sum(r["loss"] for r in rows[:20]) / 20, sum(r["loss"] for r in rows[-20:]) / 20
    assert last < 0.5 * first, (first, last)
    assert trained_models["pretrain_accuracy"] >= 0.35  # from 0 at random init


def test_sft_raises_accuracy(trained_models):
    """30 SFT steps on 300 clean demonstrations lift held-out accuracy by at least 0.05."""
    assert trained_models["sft_accuracy"] >= trained_models["pretrain_accuracy"] + 0.05, trained_models


# --- determinism, resume, Ctrl-C, divergence ---


def test_same_seed_same_metrics(tmp_path):
    a = tiny_pretrain(tmp_path / "a")["history"]
    b = tiny_pretrain(tmp_path / "b")["history"]
    c = tiny_pretrain(tmp_path / "c", seed=1)["history"]
    assert a == b and a != c


def test_resume_after_a_crash_gives_the_same_model(tmp_path, monkeypatch):
    whole = tiny_pretrain(tmp_path / "whole")
    calls = {"n": 0}
    real_loss = pretrain.next_token_loss

    def crash_at_step_25(*args):
        calls["n"] += 1
        if calls["n"] == 25:
            raise RuntimeError("power cut")
        return real_loss(*args)

    monkeypatch.setattr(pretrain, "next_token_loss", crash_at_step_25)
    with pytest.raises(RuntimeError, match="power cut"):
        tiny_pretrain(tmp_path / "cut")
    state = json.loads((tmp_path / "cut" / "pretrain.json").read_text())["state"]
    assert state == {"stage": "pretrain", "step": 20, "complete": False}  # the last periodic checkpoint
    monkeypatch.setattr(pretrain, "next_token_loss", real_loss)
    with pytest.raises(ValueError, match="already holds a run"):
        tiny_pretrain(tmp_path / "cut")
    resumed = tiny_pretrain(tmp_path / "cut", resume=True)
    m1, _, _, _ = load_checkpoint(whole["checkpoint"])
    m2, _, _, _ = load_checkpoint(resumed["checkpoint"])
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)
    steps = [r["step"] for r in json.loads("[" + ",".join(open(tmp_path / "cut" / "metrics.jsonl")) + "]")]
    assert steps == list(range(1, 31))  # the steps lost in the crash were redone, not logged twice


def test_ctrl_c_saves_and_resume_finishes(tmp_path, trained_models, monkeypatch):
    real_loss = sft.sft_loss
    calls = {"n": 0}

    def interrupt_at_step_7(*args):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real_loss(*args)

    monkeypatch.setattr(sft, "sft_loss", interrupt_at_step_7)
    cfg = dict(
        init=trained_models["pretrain"], out=str(tmp_path / "s"), steps=12, save_every=0, eval_every=0, device="cpu"
    )
    with pytest.raises(KeyboardInterrupt):
        sft.train(sft.Config(**cfg))
    state = json.loads((tmp_path / "s" / "sft.json").read_text())["state"]
    assert state["step"] == 6 and state["complete"] is False
    monkeypatch.setattr(sft, "sft_loss", real_loss)
    result = sft.train(sft.Config(resume=True, **cfg))
    assert json.loads((tmp_path / "s" / "sft.json").read_text())["state"]["complete"] is True
    assert [r["step"] for r in result["history"]][-1] == 12


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_loss = pretrain.next_token_loss
    calls = {"n": 0}

    def nan_at_step_15(*args):
        calls["n"] += 1
        return real_loss(*args) * (float("nan") if calls["n"] == 15 else 1.0)

    monkeypatch.setattr(pretrain, "next_token_loss", nan_at_step_15)
    with pytest.raises(Diverged, match="the loss became nan at step 15; the last good checkpoint is kept"):
        tiny_pretrain(tmp_path / "n")
    model, _, state, _ = load_checkpoint(tmp_path / "n" / "pretrain.safetensors")
    assert state["step"] == 10 and all(torch.isfinite(p).all() for p in model.parameters())


# --- bad input ---


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"lr": 0.0}, "lr=0.0 must be greater than 0"),
        ({"lr": -1.0}, "lr=-1.0 must be greater than 0"),
        ({"context_len": 8}, "context_len=8 is too short for task 'arithmetic': need at least 11"),
        ({"task": "poetry"}, "unknown task 'poetry'; valid tasks: arithmetic"),
        ({"steps": 0}, "steps=0 must be at least 1"),
        ({"n_embd": 33}, "n_embd=33 must be divisible by n_head=2"),
    ],
)
def test_pretrain_bad_values(tmp_path, kw, message):
    with pytest.raises(ValueError, match=message):
        tiny_pretrain(tmp_path / "bad", **kw)
    assert not (tmp_path / "bad").exists()


def test_sft_bad_init_is_a_clear_error(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="has no junk.json beside it"):
        sft.train(sft.Config(init=str(tmp_path / "junk.safetensors"), out=str(tmp_path / "s")))
    with pytest.raises(ValueError, match="sft needs --init"):
        sft.train(sft.Config(out=str(tmp_path / "s")))


# --- bake, end to end at reduced settings ---


def test_bake_writes_the_whole_run_folder(tmp_path, trained_models):
    cfg = bake.Config(
        init=trained_models["pretrain"], sft_steps=20, grpo_steps=12, out=str(tmp_path / "b"), device="cpu"
    )
    summary = bake.bake(cfg)
    out = tmp_path / "b"
    for name in [
        "config.json",
        "metrics.jsonl",
        "samples.jsonl",
        "summary.json",
        "report.md",
        "loss.png",
        "rl.png",
        "accuracy.png",
    ]:
        assert (out / name).exists(), name
    for stage in ("sft", "grpo"):
        assert (out / f"{stage}.safetensors").exists() and (out / f"{stage}.json").exists()
    saved = json.loads((out / "summary.json").read_text())
    for key in ("base_accuracy", "sft_accuracy", "final_accuracy", "seconds"):
        assert isinstance(saved[key], float), key
    assert saved["base_accuracy"] == pytest.approx(trained_models["pretrain_accuracy"])
    stages = {json.loads(line)["stage"] for line in open(out / "metrics.jsonl")}
    assert stages == {"sft", "grpo"}
    report = (out / "report.md").read_text()
    assert "![rl curves](rl.png)" in report and summary["samples_before_after"][0]["prompt"] in report
    with pytest.raises(ValueError, match="already holds a run"):
        bake.bake(cfg)
    # --resume keeps the finished stages (their checkpoints are not rewritten) and only redoes the report
    before = (out / "grpo.safetensors").stat().st_mtime_ns
    resumed = bake.bake(bake.Config(**{**cfg.__dict__, "resume": True}))
    assert (out / "grpo.safetensors").stat().st_mtime_ns == before
    assert resumed["final_accuracy"] == pytest.approx(summary["final_accuracy"])


def test_bake_refuses_bad_settings_before_work(tmp_path):
    with pytest.raises(ValueError, match="bake --init takes a TinyGPT checkpoint"):
        bake.bake(bake.Config(init="hf:some/folder", out=str(tmp_path / "b")))
    with pytest.raises(ValueError, match="group_size=1 must be at least 2"):
        bake.bake(bake.Config(group_size=1, out=str(tmp_path / "b")))
    assert not (tmp_path / "b").exists()


# --- the CLI ---


def test_cli_list_and_help(capsys):
    assert main(["list"]) == 0
    assert "grpo" in capsys.readouterr().out
    assert main(["run", "grpo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--group-size" in out and "completions sampled per prompt" in out and "(default: 8)" in out
    assert main(["bake", "--help"]) == 0
    assert "--pretrain-steps" in capsys.readouterr().out


def test_cli_errors_are_one_line(capsys):
    assert main(["run", "nope"]) == 2
    assert "unknown recipe 'nope'; valid recipes:" in capsys.readouterr().err
    assert main(["run", "grpo", "--init", "missing.safetensors", "--group-size", "1"]) == 2
    assert "group_size=1 must be at least 2" in capsys.readouterr().err


def test_cli_run_subprocess(tmp_path):
    out = tmp_path / "p"
    cmd = [sys.executable, "-m", "rlrecipes.cli", "run", "pretrain", "--steps", "3", "--n-documents", "200"]
    cmd += ["--n-layer", "1", "--n-embd", "32", "--out", str(out), "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "final_accuracy=" in proc.stdout
    assert json.loads((out / "summary.json").read_text())["checkpoint"].endswith("pretrain.safetensors")
