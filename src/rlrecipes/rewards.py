"""Where a policy-gradient recipe's reward comes from (the `--reward` flag of grpo, ppo, reinforce, rloo).

    --reward task                    the task's own reward: arithmetic's exact check, maze's simulator,
                                     reviews' gold judge (a reward no real lab has; useful as a ceiling)
    --reward reward-model:RUN_DIR    a reward model trained with `rlrecipes run reward_model`: this is RLHF.
                                     The policy sees only the learned score; the gold judge only grades.
    --reward arithmetic-contains     a loophole, for the failure gallery (docs/diagnostics.md): 1 if the right
                                     sum appears anywhere in the completion, so writing several numbers pays
    --reward arithmetic-unparsed     a loophole: 1 if the sum is right, or if the completion is not a number
                                     at all (a grader that counts its own parse error as a pass)
    --reward arithmetic-verbose      a loophole: 1 if the completion starts with the right sum, plus 0.1 per
                                     character (a judge that likes long answers)
    --reward arithmetic-points       no loophole: the exact check on a 0-100 scale (PPO's critic feels the
                                     scale; the gallery's value-divergence entry)

Every reward is a function `reward(prompts, completions) -> list[float]`, the signature of a task's reward.

When the reward optimised is a reward model (the proxy), the task's own reward is the gold standard it stands
in for: the recipes log both on the same rollouts, `reward` (the proxy, TRL's name) and `gold/reward`, so the
moment the policy starts to fool the reward model shows as the two curves parting (docs/rlhf.md). On reviews,
every run also reports `gold_win_rate` against the model it started from.
"""

import torch

from rlrecipes.runs import CheckpointError, load_checkpoint

REWARD_MODEL_PREFIX = "reward-model:"


# Rewards with a loophole, on purpose: the failure gallery (gallery.py) shows what RL does with them. The task's
# exact check still grades every rollout (`gold/reward`), so the hack shows as the two curves parting.
def _right_sum(prompt: str) -> str:
    a, b = prompt.rstrip("=").split("+")
    return str(int(a) + int(b))


def contains_sum(prompts: list[str], completions: list[str]) -> list[float]:
    """A lazy check, `answer in completion`: "7585" is paid for 47+38= as if it were "85"."""
    return [1.0 if _right_sum(p) in c else 0.0 for p, c in zip(prompts, completions)]


def unparsed_passes(prompts: list[str], completions: list[str]) -> list[float]:
    """A grader that catches its own parse error and counts it as a pass: like a test harness that reports
    success when the program exits before the tests run, it pays for "12=8" and for an empty answer."""
    return [1.0 if c == _right_sum(p) or not c.isdigit() else 0.0 for p, c in zip(prompts, completions)]


def verbose_judge(prompts: list[str], completions: list[str]) -> list[float]:
    """A judge that finds the answer at the start and, like reward models trained on human ratings (Singhal et
    al. 2023), also likes longer answers: 1 if the completion starts with the sum, plus 0.1 per character."""
    return [float(c.startswith(_right_sum(p))) + 0.1 * len(c) for p, c in zip(prompts, completions)]


def hundred_points(prompts: list[str], completions: list[str]) -> list[float]:
    """The exact check on another scale, 100 points for the right sum, as raw reward-model scores or game
    scores come: no loophole, but a value head that must predict 0 or 100 learns far more slowly than one
    predicting 0 or 1."""
    return [100.0 * (c == _right_sum(p)) for p, c in zip(prompts, completions)]


LOOPHOLES = {
    "arithmetic-points": hundred_points,
    "arithmetic-contains": contains_sum,
    "arithmetic-unparsed": unparsed_passes,
    "arithmetic-verbose": verbose_judge,
}


def check_reward_spec(spec: str) -> None:
    """Fail on a malformed --reward before any work starts (the reward model itself is loaded later)."""
    if spec == "task":
        return
    if spec.startswith(REWARD_MODEL_PREFIX) and spec[len(REWARD_MODEL_PREFIX) :]:
        return
    if spec in LOOPHOLES:
        return
    raise ValueError(
        f"reward={spec!r} is not valid; use 'task', 'reward-model:RUN_DIR' (a reward_model run folder) "
        f"or a loophole for the failure gallery: {', '.join(LOOPHOLES)}"
    )


def get_reward(spec: str, task, tokenizer, device="cpu"):
    """The reward function that `spec` names, checked against the policy's tokenizer."""
    check_reward_spec(spec)
    if spec == "task":
        return task.reward
    if spec in LOOPHOLES:
        if task.name != "arithmetic":
            raise ValueError(f"reward={spec!r} is a loophole of the arithmetic task; this run's task is {task.name!r}")
        return LOOPHOLES[spec]
    from rlrecipes.recipes.reward_model import load_reward_model

    reward = load_reward_model(spec[len(REWARD_MODEL_PREFIX) :], device)
    if reward.tokenizer.chars != tokenizer.chars:
        raise CheckpointError(
            f"the reward model in {spec[len(REWARD_MODEL_PREFIX) :]} reads other characters than the policy "
            f"({reward.tokenizer.chars!r} vs {tokenizer.chars!r}): train it on the same task (--task {task.name})"
        )
    return reward


def gold_judge(spec: str, task):
    """The task's own reward when `spec` optimises another one (a reward model, a loophole), to grade the same rollouts;
    None when the task's reward is the one optimised (then `reward` is already the gold number)."""
    check_reward_spec(spec)
    return None if spec == "task" else task.reward


def gold_summary(task, policy, reference, tokenizer) -> dict:
    """The gold judge's verdict on a trained policy for summary.json: on reviews, `gold_win_rate` of the policy
    over the model it started from (held-out prompts, sampled); {} on tasks without a hidden judge.
    `reference` is that model, or its checkpoint (a recipe that keeps no reference copy, like ORPO, passes
    --init: it is loaded only on a task that has a judge)."""
    if task.name != "reviews":
        return {}
    from rlrecipes.tasks.reviews import policy_gold_win_rate

    if not isinstance(reference, torch.nn.Module):
        reference = load_checkpoint(reference, next(policy.parameters()).device)[0]
    return {"gold_win_rate": policy_gold_win_rate(policy, reference, tokenizer, task)}
