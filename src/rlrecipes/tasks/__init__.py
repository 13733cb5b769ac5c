"""Tasks: where the tiny LLM's data and rewards come from.

Every task is a small class with the same members, so a recipe never needs to know which task it runs:

    name                      "arithmetic", ...
    alphabet                  every character its text may contain (the tokenizer is built from it)
    max_prompt_chars          longest prompt, so a recipe can check the model's context is long enough
    max_completion_chars      longest correct completion; sampling allows a little more
    pretrain_documents(n, rng)    n short documents of "web text" for pretraining
    sft_examples(n, rng)      n (prompt, completion) demonstrations for SFT
    train_prompts(n, rng)     n prompts for RL, never from the held-out set
    heldout_prompts()         a fixed list of prompts for evaluation, the same for every seed
    reward(prompts, completions) -> list[float]   the checkable reward, 1.0 for a right answer
"""

from rlrecipes.tasks.arithmetic import ArithmeticTask
from rlrecipes.tasks.maze import MazeTask
from rlrecipes.tasks.reviews import ReviewsTask

TASKS = {"arithmetic": ArithmeticTask, "maze": MazeTask, "reviews": ReviewsTask}


def get_task(name: str, **kwargs):
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name](**kwargs)


def complete(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = 500, **sampling) -> list[str]:
    """Text completions of text prompts (greedy unless sampling options say otherwise)."""
    from rlrecipes.lm.generate import generate

    sampling.setdefault("greedy", True)
    out = []
    for i in range(0, len(prompts), batch_size):
        ids = [tokenizer.encode(p, bos=True) for p in prompts[i : i + batch_size]]
        samples = generate(model, ids, max_new_tokens, tokenizer.eos_id, tokenizer.pad_id, **sampling)
        out += [tokenizer.decode(c) for c in samples.completion_ids]
    return out


def evaluate(model, tokenizer, task, prompts: list[str] | None = None) -> tuple[float, list[str], list[str]]:
    """Held-out accuracy with greedy decoding: the share of prompts whose reward is 1."""
    prompts = task.heldout_prompts() if prompts is None else prompts
    was_training = model.training
    model.eval()
    completions = complete(model, tokenizer, prompts, task.max_completion_chars + 2)
    model.train(was_training)
    rewards = task.reward(prompts, completions)
    return sum(r >= 1.0 for r in rewards) / len(rewards), prompts, completions
