"""The `rlrecipes icemaze` command, called in-process through main(argv)."""

import json

import pytest

from rlrecipes.icemaze.cli import COMMANDS, main


def test_one_learner_writes_pictures_and_numbers(tmp_path, capsys):
    out = tmp_path / "q"
    assert (
        main(
            [
                "q-learning",
                "--map",
                "4x4",
                "--slippery",
                "--episodes",
                "300",
                "--seed",
                "1",
                "--eval-episodes",
                "200",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    for name in ["values_policy.png", "learning_curve.png", "episode.png", "summary.json"]:
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["algorithm"] == "q-learning" and summary["config"]["episodes"] == 300 and summary["episodes"] == 300
    assert summary["env"]["map"] == "4x4" and summary["eval_episodes"] == 200
    assert 0.0 <= summary["success_rate"] <= 1.0 and 0.0 <= summary["success_probability"] <= 1.0
    assert summary["optimal_success_probability"] == pytest.approx(0.740, abs=1e-3)
    assert len(summary["policy"]) == 4 and summary["policy"][3].endswith("G")
    assert "exact from P" in capsys.readouterr().out


def test_exact_solver(tmp_path):
    out = tmp_path / "vi"
    assert main(["value-iteration", "--map", "8x8", "--no-slippery", "--eval-episodes", "10", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["success_probability"] == pytest.approx(1.0) == summary["success_rate"]
    assert (out / "values_policy.png").exists() and (out / "episode.png").exists()


def test_compare_writes_one_figure_with_every_learner(tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", "--map", "4x4", "--episodes", "100", "--out", str(out)]) == 0
    assert (out / "compare.png").stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert set(summary["results"]) == {"monte-carlo", "q-learning", "sarsa", "reinforce", "actor-critic"}
    assert all(
        row["episodes"] == 100 and 0.0 <= row["success_probability"] <= 1.0 for row in summary["results"].values()
    )
    assert 0.7 < summary["optimal_success_probability"] < 0.8


def test_unknown_algorithm_lists_the_valid_ones(capsys):
    assert main(["q-learnin"]) == 2
    error = capsys.readouterr().err
    assert "'q-learnin'" in error and all(name in error for name in COMMANDS)


def test_refuses_to_overwrite_a_run_unless_asked(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["sarsa", "--episodes", "20", "--eval-episodes", "10", "--out", str(out)]
    assert main(args) == 0
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--map", "5x5"], "unknown map '5x5'"),
        (["--slip-prob", "2"], "slip_prob=2.0"),
        (["--gamma", "1.5"], "gamma=1.5"),
    ],
)
def test_bad_values_fail_before_anything_is_written(tmp_path, capsys, flags, message):
    assert main(["q-learning", *flags, "--out", str(tmp_path / "bad")]) == 2
    captured = capsys.readouterr()
    assert message in captured.err + captured.out
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["compare", "--episodes", "-5"], "episodes=-5"), (["sarsa", "--eval-episodes", "0"], "eval_episodes=0")],
)
def test_bad_counts_are_refused(tmp_path, capsys, argv, message):
    assert main([*argv, "--out", str(tmp_path / "bad")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
