"""One-line restaurant reviews, judged by a hidden "human": "pizza at rosa:" -> "the pizza was lovely and fresh."

A task without a checkable answer, the situation RLHF was invented for. Nobody can write down "the
right review"; people can only say which of two reviews they like better. So the reward has to be
learned from comparisons (recipes/reward_model.py), and the model is then tuned against that learned
reward (recipes/best_of_n.py, and later PPO or GRPO).

To let us measure what a real lab cannot, the "human" here is a program: `gold_score(prompt, completion)`,
a number in [0, 1]. No policy and no reward model ever calls it during training; it only labels
preference pairs (through a noisy Bradley-Terry draw, as tired annotators would: see
recipes/reward_model.py) and grades the results. It likes, with these weights:

    0.4  warmth       distinct warm words ("lovely", "fresh", ...) minus distinct cold ones ("bland", ...):
                      0.5 + 0.25 per net warm word, clipped to [0, 1]; two warm words and no cold one is best
    0.3  specificity  the prompt's dish is named (1), named beside another dish (0.5), not named (0)
    0.2  no repeats   no content word twice ("the", "and", "was", "a", "i" may repeat)
    0.1  length       4 to 8 words; 0.25 less for each word outside that range

A word only counts if it is spelled right, so a typo loses what the word would have earned. An empty
review scores 0. `reward` is this gold score, for evaluation only, and `evaluate()`'s accuracy (the share
of rewards >= 1) is the share of perfect reviews: warm, specific, unrepeated, well sized. The main measure
for this task is `gold_win_rate`: how often the judge prefers a policy's review to the SFT model's.

Prompts are "<dish> at <place>:". The pretraining corpus is sloppy web text (cold, vague, repetitive,
rambling reviews as often as good ones); the SFT demonstrations are one tidy sentence of mixed quality,
as written by contractors who were told the format but not what readers like. So the SFT model writes
reviews that are sometimes warm and specific and sometimes not: what a reward model must learn to tell
apart. Held-out (dish, place) pairs never appear in any training data.
"""

import random
import re

DISHES = ("pizza", "soup", "pasta", "curry", "salad", "tacos", "ramen", "pie", "cake", "bread", "stew", "fish")
PLACES = ("nico", "rosa", "ivy", "mae", "kai", "otto", "lulu", "juno", "zoe", "bea",
          "max", "sal", "ada", "leo", "mia", "ben", "eve", "tom", "ana", "gus")  # fmt: skip
WARM = ("lovely", "great", "tasty", "fresh", "superb", "yummy")
COLD = ("bland", "cold", "soggy", "stale", "dull", "awful")
PLAIN = ("fine", "okay", "hot", "big")
GENERIC = ("food", "meal", "dish")
STOP = ("the", "and", "was", "a", "i")  # words the repetition check ignores: "the" twice is not repetition
# Templates: {s} is the subject (the dish or not), {a} and {b} adjectives. TIDY is what the contractors write
# (its last two too short); RAMBLE is a habit of the web only.
TIDY = ("the {s} was {a}.", "the {s} was {a} and {b}.", "{a} {s}, {b} service.", "i found the {s} {a}.",
        "the {s} was {a}, staff {b}.", "a {a} {s} and {b} staff.", "{a} {s}.", "{a}!")  # fmt: skip
RAMBLE = ("the {s} was {a} and {b} and the {s} was {a} and {b}.", "{a} {a} {a} {s} {s}.")
N_HELDOUT = 60  # (dish, place) pairs kept out of every training set, for evaluation


def _all_pairs():
    pairs = [(d, p) for d in DISHES for p in PLACES]
    random.Random(1234).shuffle(pairs)  # a fixed split, the same for every seed
    return pairs[N_HELDOUT:], pairs[:N_HELDOUT]


def dish_of(prompt: str) -> str:
    return prompt.split(" at ")[0]


def gold_score(prompt: str, completion: str) -> float:
    """The hidden judge, in [0, 1] (see the module docstring). Never shown to a policy or a reward model."""
    words = re.findall(r"[a-z]+", completion)
    if not words:
        return 0.0
    distinct = set(words)
    warmth = min(1.0, max(0.0, 0.5 + 0.25 * (len(distinct & set(WARM)) - len(distinct & set(COLD)))))
    dish, named = dish_of(prompt), distinct & set(DISHES)
    specificity = 1.0 if named == {dish} else 0.5 if dish in named else 0.0
    content = [w for w in words if w not in STOP]
    no_repeats = 1.0 if len(set(content)) == len(content) else 0.0
    length = max(0.0, 1.0 - 0.25 * max(4 - len(words), len(words) - 8, 0))
    score = 0.4 * warmth + 0.3 * specificity + 0.2 * no_repeats + 0.1 * length
    return round(score, 6)  # so a perfect review is exactly 1.0, and equal reviews tie exactly


def gold_win_rate(
    policy_completions: list[str], reference_completions: list[str], prompts: list[str], judge=gold_score
) -> float:
    """Share of prompts where the gold judge prefers the policy's completion to the reference's (ties 0.5).
    `judge(prompt, completion) -> float` is this task's gold judge unless another is given."""
    if not len(policy_completions) == len(reference_completions) == len(prompts) > 0:
        raise ValueError(
            f"gold_win_rate needs one policy and one reference completion per prompt, got {len(policy_completions)}, "
            f"{len(reference_completions)} and {len(prompts)} prompts"
        )
    wins = 0.0
    for prompt, mine, theirs in zip(prompts, policy_completions, reference_completions):
        g_mine, g_theirs = judge(prompt, mine), judge(prompt, theirs)
        wins += 1.0 if g_mine > g_theirs else 0.5 if g_mine == g_theirs else 0.0
    return wins / len(prompts)


def policy_gold_win_rate(policy, reference, tokenizer, task, repeats: int = 8, seed: int = 0) -> float:
    """The headline number of every policy trained on this task: how often the gold judge prefers the policy's
    review to the reference (SFT) model's. Each model samples one review (temperature 1, as deployed) of each
    held-out prompt, `repeats` times over, from its own seeded generator; ties count 0.5."""
    import torch

    from rlrecipes.tasks import complete

    prompts = task.heldout_prompts() * repeats
    width = task.max_completion_chars + 2
    mine, theirs = [], []
    for model, out in ((policy, mine), (reference, theirs)):
        was_training = model.training
        model.eval()
        generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
        out += complete(model, tokenizer, prompts, width, greedy=False, generator=generator)
        model.train(was_training)
    return gold_win_rate(mine, theirs, prompts)


def write_review(dish: str, rng: random.Random, web: bool) -> str:
    """One review. Web text (pretraining) is sloppier than the contractors' demonstrations (SFT)."""
    p_warm, p_cold, p_dish, p_other, p_repeat = (0.35, 0.4, 0.35, 0.2, 0.3) if web else (0.5, 0.3, 0.55, 0.1, 0.15)

    def adjective():
        u = rng.random()
        return rng.choice(WARM if u < p_warm else COLD if u < p_warm + p_cold else PLAIN)

    u = rng.random()
    subject = dish if u < p_dish else rng.choice(DISHES) if u < p_dish + p_other else rng.choice(GENERIC)
    template = rng.choice(RAMBLE) if web and rng.random() < 0.2 else rng.choice(TIDY)
    a, b = adjective(), adjective()
    if rng.random() < p_repeat:  # a stutter: the same word twice
        a = f"{a} {a}"
    return template.format(s=subject, a=a, b=b)


class ReviewsTask:
    name = "reviews"
    alphabet = "abcdefghijklmnopqrstuvwxyz :.,!"
    max_prompt_chars = 14  # "bagel at lulu:"
    max_completion_chars = 40  # the longest SFT demonstration; sampling allows 2 more

    def __init__(self):
        self.train_pairs, self.heldout_pairs = _all_pairs()

    @staticmethod
    def prompt(dish: str, place: str) -> str:
        return f"{dish} at {place}:"

    def pretrain_documents(self, n: int, rng: random.Random) -> list[str]:
        return [self.prompt(d, p) + write_review(d, rng, web=True) for d, p in rng.choices(self.train_pairs, k=n)]

    def sft_examples(self, n: int, rng: random.Random) -> list[tuple[str, str]]:
        examples = []
        while len(examples) < n:
            dish, place = rng.choice(self.train_pairs)
            review = write_review(dish, rng, web=False)
            if len(review) <= self.max_completion_chars:
                examples.append((self.prompt(dish, place), review))
        return examples

    def train_prompts(self, n: int, rng: random.Random) -> list[str]:
        return [self.prompt(d, p) for d, p in rng.choices(self.train_pairs, k=n)]

    def heldout_prompts(self) -> list[str]:
        return [self.prompt(d, p) for d, p in self.heldout_pairs]

    def reward(self, prompts: list[str], completions: list[str]) -> list[float]:
        return [gold_score(p, c) for p, c in zip(prompts, completions)]
