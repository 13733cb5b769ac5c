"""The bake-off: same start, same budget, one figure, one summary."""

import json

import pytest

from rlrecipes.cli import main
from rlrecipes.compare import Config, compare


def test_compare_two_recipes_on_one_budget(sft_checkpoint, tmp_path, capsys):
    out = tmp_path / "c"
    code = main(
        ["compare", "grpo", "rloo", "--init", sft_checkpoint, "--samples", "512", "--out", str(out), "--device", "cpu"]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["algorithms"]) == {"grpo", "rloo"}
    for r in summary["algorithms"].values():
        assert 0 < r["samples"] <= 512 and r["start_accuracy"] == summary["algorithms"]["grpo"]["start_accuracy"]
        assert {"final_accuracy", "seconds"} <= set(r)
    assert (out / "compare.png").exists() and (out / "grpo" / "summary.json").exists()
    assert "bake-off on arithmetic" in capsys.readouterr().out


def test_compare_refuses_bad_input_before_work(tmp_path):
    with pytest.raises(ValueError, match="cannot compare 'sft': choose RL recipes from"):
        compare(Config(recipes=("grpo", "sft"), out=str(tmp_path / "c")))
    with pytest.raises(ValueError, match="samples=0 must be at least 1"):
        compare(Config(samples=0, out=str(tmp_path / "c")))
    with pytest.raises(ValueError, match="unknown task 'poetry'"):
        compare(Config(task="poetry", out=str(tmp_path / "c")))
    assert not (tmp_path / "c").exists()
