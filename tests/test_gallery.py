"""The failure gallery: every failure runs (sick and fixed) and draws its figure; the cheap ones show their
signature at a fixed seed; bad input fails before any work."""

import json

import pytest

from rlrecipes.cli import main
from rlrecipes.gallery import FAILURES, Config, run_gallery
from rlrecipes.rewards import contains_sum, hundred_points, unparsed_passes, verbose_judge


def mean(rows, key, steps):
    values = [r[key] for r in rows if r["step"] in steps and key in r]
    return sum(values) / len(values)


def read_arm(out, arm):
    return [json.loads(line) for line in (out / arm / "metrics.jsonl").read_text().splitlines()]


def test_loophole_rewards_pay_for_the_loophole():
    prompts = ["47+38="] * 5
    completions = ["85", "75", "7585", "", "85123"]
    assert contains_sum(prompts, completions) == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert unparsed_passes(prompts, completions) == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert verbose_judge(prompts, completions) == pytest.approx([1.2, 0.2, 0.4, 0.0, 1.5])
    assert hundred_points(prompts, completions) == [100.0, 0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("name", list(FAILURES))
def test_every_failure_runs_both_arms_and_draws_its_dials(name, request, tmp_path, capsys):
    on_reviews = FAILURES[name].common.get("task") == "reviews"
    init = request.getfixturevalue("reviews_sft" if on_reviews else "sft_checkpoint")
    out = tmp_path / name
    code = main(["gallery", name, "--init", init, "--steps", "2", "--batch-size", "4", "--out", str(out)])
    assert code == 0
    assert (out / f"{name}.png").stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["commands"]) == {"sick", "fixed"}
    for arm in ("sick", "fixed"):
        assert summary["commands"][arm].startswith(f"rlrecipes run {FAILURES[name].recipe} --init {init}")
        assert len([r for r in read_arm(out, arm) if r["step"] > 0]) == 2
    printed = capsys.readouterr().out
    assert FAILURES[name].diagnosis[:40] in printed and "rlrecipes run" in printed
    assert (out / "diagnosis.md").read_text().startswith(f"# {name}")


def test_zero_advantage_cold_sampling_leaves_most_groups_without_signal(sft_checkpoint, tmp_path):
    out = tmp_path / "z"
    run_gallery(Config(name="zero-advantage", init=sft_checkpoint, steps=3, out=str(out), device="cpu"))
    sick, fixed = read_arm(out, "sick"), read_arm(out, "fixed")
    # seed 0: about 0.9 of the groups agree at temperature 0.1, about 0.2 at 1.0
    assert mean(sick, "frac_reward_zero_std", {1, 2, 3}) > mean(fixed, "frac_reward_zero_std", {1, 2, 3}) + 0.4


def test_kl_blowup_a_learning_rate_too_high_explodes_kl_and_crashes_reward(sft_checkpoint, tmp_path):
    out = tmp_path / "k"
    run_gallery(Config(name="kl-blowup", init=sft_checkpoint, steps=6, out=str(out), device="cpu"))
    sick, fixed = read_arm(out, "sick"), read_arm(out, "fixed")
    assert mean(sick, "kl", {4, 5, 6}) > 1.0 > 0.2 > mean(fixed, "kl", {4, 5, 6})
    assert mean(sick, "reward", {5, 6}) < mean(fixed, "reward", {5, 6}) - 0.3


def test_entropy_collapse_without_a_kl_leash_the_samples_of_a_prompt_become_one(reviews_sft, tmp_path):
    out = tmp_path / "e"
    summary = run_gallery(Config(name="entropy-collapse", init=reviews_sft, steps=10, out=str(out), device="cpu"))
    sick, fixed = read_arm(out, "sick"), read_arm(out, "fixed")
    last = {8, 9, 10}
    # seed 0, 10 steps: entropy 0.27 -> 0.12 without the leash, 0.27 -> 0.19 with --beta 0.1
    assert mean(sick, "entropy", last) < mean(fixed, "entropy", last) - 0.04
    assert mean(sick, "entropy", last) < 0.5 * mean(sick, "entropy", {1})
    # 8 samples of each held-out prompt: about 5 different reviews without the leash, 7 with it, 7.9 from SFT
    diversity = summary["diversity"]
    assert diversity["sick"]["distinct"] < diversity["fixed"]["distinct"] - 1.0
    assert diversity["fixed"]["distinct"] > diversity["start"]["distinct"] - 1.0
    # ... while reward cannot tell: the collapsed policy's samples score at least as well (0.96 against 0.91)
    assert diversity["sick"]["reward"] > diversity["fixed"]["reward"] - 0.02 > diversity["start"]["reward"] + 0.2
    assert "distinct completions per prompt" in (out / "diagnosis.md").read_text()


def test_gallery_list_and_bad_input(sft_checkpoint, tmp_path, capsys, monkeypatch):
    assert main(["gallery", "list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in FAILURES)
    with pytest.raises(ValueError, match="unknown failure 'sadness'; valid: kl-blowup"):
        run_gallery(Config(name="sadness", out=str(tmp_path / "g")))
    with pytest.raises(ValueError, match="rlrecipes bake --out runs/bake"):
        run_gallery(Config(name="kl-blowup", init=str(tmp_path / "none.safetensors"), out=str(tmp_path / "g")))
    monkeypatch.chdir(tmp_path)  # where no runs/ folder is
    with pytest.raises(ValueError, match="'runs/reviews-sft' does not exist: .* docs/reward-models.md"):
        run_gallery(Config(name="entropy-collapse", out=str(tmp_path / "g")))  # its own default --init
    with pytest.raises(ValueError, match="is not a reviews model .*starts from runs/reviews-sft"):
        run_gallery(Config(name="entropy-collapse", init=sft_checkpoint, out=str(tmp_path / "g")))
    with pytest.raises(ValueError, match="steps=0 must be at least 1"):
        run_gallery(Config(name="kl-blowup", init=sft_checkpoint, steps=0, out=str(tmp_path / "g")))
    assert not (tmp_path / "g").exists()


def test_reward_hacking_the_policy_finds_the_loophole_proxy_up_gold_down(sft_checkpoint, tmp_path):
    from rlrecipes.gallery import arm_configs
    from rlrecipes.recipes import grpo

    failure = FAILURES["reward-hacking"]
    sick = arm_configs(Config(name="reward-hacking", init=sft_checkpoint, device="cpu"), failure, tmp_path)["sick"]
    rows = grpo.train(sick)["history"]  # the sick run alone, at the failure's own settings (40 steps)
    first, last = range(1, 6), range(sick.steps - 4, sick.steps + 1)
    # seed 0: the exact check on the same samples falls to about 0 while the proxy ends far above it
    assert mean(rows, "gold/reward", last) < 0.2 < mean(rows, "gold/reward", first) - 0.3
    assert mean(rows, "reward", last) > mean(rows, "gold/reward", last) + 0.7
