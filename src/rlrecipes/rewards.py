"""Where a policy-gradient recipe's reward comes from (the `--reward` flag of grpo, ppo, reinforce, rloo).

    --reward task                    the task's own reward: arithmetic's exact check, maze's simulator,
                                     reviews' gold judge (a reward no real lab has; useful as a ceiling)
    --reward reward-model:RUN_DIR    a reward model trained with `rlrecipes run reward_model`: this is RLHF.
                                     The policy sees only the learned score; the gold judge only grades.

Every reward is a function `reward(prompts, completions) -> list[float]`, the signature of a task's reward.
"""

from rlrecipes.runs import CheckpointError

REWARD_MODEL_PREFIX = "reward-model:"


def check_reward_spec(spec: str) -> None:
    """Fail on a malformed --reward before any work starts (the reward model itself is loaded later)."""
    if spec == "task":
        return
    if spec.startswith(REWARD_MODEL_PREFIX) and spec[len(REWARD_MODEL_PREFIX) :]:
        return
    raise ValueError(f"reward={spec!r} is not valid; use 'task' or 'reward-model:RUN_DIR' (a reward_model run folder)")


def get_reward(spec: str, task, tokenizer, device="cpu"):
    """The reward function that `spec` names, checked against the policy's tokenizer."""
    check_reward_spec(spec)
    if spec == "task":
        return task.reward
    from rlrecipes.recipes.reward_model import load_reward_model

    reward = load_reward_model(spec[len(REWARD_MODEL_PREFIX) :], device)
    if reward.tokenizer.chars != tokenizer.chars:
        raise CheckpointError(
            f"the reward model in {spec[len(REWARD_MODEL_PREFIX) :]} reads other characters than the policy "
            f"({reward.tokenizer.chars!r} vs {tokenizer.chars!r}): train it on the same task (--task {task.name})"
        )
    return reward
