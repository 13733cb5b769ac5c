"""Two-digit addition, with a checkable answer: "47+38=" -> "85".

Why RL has something to do here: the pretraining corpus is sloppy "web text" in which whoever wrote
the sums often forgot to carry (47+38=75). A model pretrained on it learns the habit. SFT on a few
clean demonstrations corrects part of it; RL against the exact reward, which only pays for the right
sum, finishes the job. Held-out pairs (a, b) never appear in any training data, so accuracy on them
measures addition, not memory.
"""

import random

N_HELDOUT = 500  # (a, b) pairs kept out of every training set, for evaluation


def _all_pairs():
    pairs = [(a, b) for a in range(10, 100) for b in range(10, 100)]
    random.Random(1234).shuffle(pairs)  # a fixed split, the same for every seed
    return pairs[N_HELDOUT:], pairs[:N_HELDOUT]


def _forgot_carry(a: int, b: int) -> int:
    """The careless sum: add each column and drop its carry."""
    return (a % 10 + b % 10) % 10 + ((a // 10 + b // 10) % 10) * 10 + (100 if a // 10 + b // 10 >= 10 else 0)


class ArithmeticTask:
    name = "arithmetic"
    alphabet = "0123456789+="
    max_prompt_chars = 6  # "99+99="
    max_completion_chars = 3  # "198"

    def __init__(self, sloppy: float = 0.9):
        if not 0.0 <= sloppy <= 1.0:
            raise ValueError(f"sloppy={sloppy} must be a probability in [0, 1]")
        self.sloppy = sloppy  # how often the pretraining corpus forgets a carry
        self.train_pairs, self.heldout_pairs = _all_pairs()

    @staticmethod
    def prompt(a: int, b: int) -> str:
        return f"{a}+{b}="

    def pretrain_documents(self, n: int, rng: random.Random) -> list[str]:
        docs = []
        for a, b in rng.choices(self.train_pairs, k=n):
            carry = a % 10 + b % 10 >= 10
            answer = _forgot_carry(a, b) if carry and rng.random() < self.sloppy else a + b
            docs.append(f"{self.prompt(a, b)}{answer}")
        return docs

    def sft_examples(self, n: int, rng: random.Random) -> list[tuple[str, str]]:
        return [(self.prompt(a, b), str(a + b)) for a, b in rng.choices(self.train_pairs, k=n)]

    def train_prompts(self, n: int, rng: random.Random) -> list[str]:
        return [self.prompt(a, b) for a, b in rng.choices(self.train_pairs, k=n)]

    def heldout_prompts(self) -> list[str]:
        return [self.prompt(a, b) for a, b in self.heldout_pairs]

    def reward(self, prompts: list[str], completions: list[str]) -> list[float]:
        rewards = []
        for prompt, completion in zip(prompts, completions):
            a, b = prompt.rstrip("=").split("+")
            rewards.append(1.0 if completion.strip() == str(int(a) + int(b)) else 0.0)
        return rewards
