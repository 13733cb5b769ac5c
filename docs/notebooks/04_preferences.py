# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Part 4: preferences: a hidden judge, a reward model, best-of-N, DPO and RLHF
#
# The notebook of the chapters [Reward models and best-of-N](../reward-models.md) and
# [DPO and its family](../dpo.md). Open it in Jupyter with
# `jupytext --to ipynb docs/notebooks/04_preferences.py`. Top to bottom it takes about four minutes on a
# laptop CPU.
#
# Most of what we want from a language model has no answer a program can check. People can only say
# which of two answers they prefer. Here the "people" are a program, the **gold judge**, that no model
# ever sees during training: it only labels pairs (noisily, like tired annotators) and grades the results.
# That lets us measure what a real lab cannot: how much each method really improved.

# %%
# %matplotlib inline
import os
from pathlib import Path

import torch
from IPython.display import Image
from matplotlib.figure import Figure

from rlrecipes.recipes import best_of_n, dpo, ppo, pretrain, reward_model, sft
from rlrecipes.recipes.reward_model import load_reward_model
from rlrecipes.runs import load_checkpoint
from rlrecipes.tasks import complete, get_task
from rlrecipes.tasks.reviews import gold_score, policy_gold_win_rate

QUICK = os.environ.get("RLRECIPES_NOTEBOOK_QUICK") == "1"  # the test suite runs this notebook at reduced sizes
PRETRAIN_STEPS = 30 if QUICK else 1500  # about 50 s on a laptop CPU (docs/reward-models.md's settings)
N_DOCUMENTS = 2_000 if QUICK else 20_000  # pretraining documents
SFT_STEPS = 3 if QUICK else 60  # a few seconds
RM_PROMPTS = 24 if QUICK else 2000  # training prompts whose sampled reviews are compared (4 each: 6 pairs a prompt)
BEST_OF = (1, 2, 4) if QUICK else (1, 2, 4, 8, 16, 32)  # the values of N for best-of-N
DPO_STEPS = 3 if QUICK else 100  # batches of 32 labelled pairs, about 20 s
PPO_STEPS = 2 if QUICK else 40  # batches of 64 rollouts, about a minute
REPEATS = 1 if QUICK else 8  # each held-out prompt is reviewed this many times when win rates are measured
OUT = Path("runs/notebooks/04_preferences")  # run folders, relative to where Jupyter runs (git ignores runs/)
OUT.mkdir(parents=True, exist_ok=True)
task = get_task("reviews")
common = dict(device="cpu", seed=0, eval_every=0, overwrite=True)


def plot_history(rows: list[dict], keys: list[str], path: Path) -> Figure:
    """One panel per metric of a recipe's history (the rows of metrics.jsonl) against the step; saved as a PNG too."""
    fig = Figure(figsize=(4 * len(keys), 3.2))
    for ax, key in zip(fig.subplots(1, len(keys)), keys):
        points = [(row["step"], row[key]) for row in rows if row.get(key) is not None]
        ax.plot(*zip(*points), marker="o" if len(points) < 20 else None)
        ax.set(title=key, xlabel="step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig


# %% [markdown]
# ## 1. The task and its hidden judge
#
# Prompts are `"<dish> at <place>:"`, completions one-line reviews. The judge, `gold_score`, likes warm
# words, naming the right dish, no repeated words, and 4 to 8 words. Predict each score before you run:

# %%
prompt = "pizza at rosa:"
for review in (
    "the pizza was lovely and fresh.",
    "the pizza was fine.",
    "the soup was lovely.",
    "lovely lovely pizza.",
    "bland pizza, cold service.",
    "the pizza was great and the staff were lovely and kind.",
):
    print(f"{gold_score(prompt, review):.2f}  {review}")

# %% [markdown]
# ## 2. A small model that writes reviews: pretraining and SFT
#
# The corpus is sloppy web text; the SFT demonstrations are tidy sentences of mixed quality. So the SFT
# model writes reviews that are sometimes warm and specific, sometimes not: room for preferences to help.

# %%
pt = pretrain.train(
    pretrain.Config(
        task="reviews",
        steps=PRETRAIN_STEPS,
        batch_size=32,
        context_len=64,
        n_layer=2,
        n_embd=64,
        n_documents=N_DOCUMENTS,
        warmup_steps=20,
        save_every=0,
        out=str(OUT / "pretrain"),
        **common,
    )
)
tuned = sft.train(
    sft.Config(
        task="reviews", init=pt["checkpoint"], steps=SFT_STEPS, lr=1e-3, save_every=0, out=str(OUT / "sft"), **common
    )
)
SFT = tuned["checkpoint"]
sft_model, tokenizer, _, _ = load_checkpoint(SFT)
prompts = task.heldout_prompts()[:6]
reviews = complete(sft_model, tokenizer, prompts, 42, greedy=False, generator=torch.Generator().manual_seed(0))
for p, r in zip(prompts, reviews):
    print(f"{gold_score(p, r):.2f}  {p} {r}")

# %% [markdown]
# ## 3. A reward model from noisy comparisons
#
# For each training prompt the SFT model writes 4 reviews; every two of them become a pair, labelled by
# the judge through a Bradley-Terry coin flip (the closer the two, the likelier a wrong label). A copy of
# the SFT model with a scalar head is trained so that `sigmoid(r(chosen) - r(rejected))` predicts the
# label. The run folder keeps the pairs (`pairs.jsonl`, TRL's prompt/chosen/rejected format).

# %%
rm = reward_model.train(
    reward_model.Config(
        init=SFT,
        task="reviews",
        n_prompts=RM_PROMPTS,
        heldout_samples=2 if QUICK else 16,
        baseline_steps=0 if QUICK else 300,
        out=str(OUT / "rm"),
        **common,
    )
)
RM = OUT / "rm"
print(
    f"label noise {rm['label_noise']:.3f}; held-out pairs ordered as the judge orders them: {rm['heldout_accuracy']:.3f}"
)
Image(filename=str(RM / "calibration.png"))

# %% [markdown]
# The reward model is now a reward function like a task's: `reward(prompts, completions) -> list[float]`,
# standardised so a typical SFT review scores about 0.

# %%
reward = load_reward_model(RM)
candidates = ["the pizza was lovely and fresh.", "the pizza was fine.", "lovely lovely pizza.", "the soup was lovely."]
for c, r in zip(candidates, reward([prompt] * len(candidates), candidates)):
    print(f"reward model {r:+.2f}   gold {gold_score(prompt, c):.2f}   {c}")

# %% [markdown]
# A reward model is a learned guess, and it has blind spots. In our full run (seed 0) it learned 86% of the
# judge's orderings on held-out pairs, yet scored `the soup was lovely.` for a pizza (+1.49) almost as high
# as the perfect `the pizza was lovely and fresh.` (+1.59): it has barely learned that the dish must match.
# Keep that in mind for section 6.
#
# ## 4. Best-of-N: no training at all
#
# Sample N reviews, keep the one the reward model likes best. The KL divergence from the SFT model is at
# most `log N - (N-1)/N`: a cheap, bounded way to use a reward. Left: what the gold judge thinks of the
# picks; the oracle curve is what a perfect reward model would pick.

# %%
bon = best_of_n.train(
    best_of_n.Config(
        init=SFT,
        reward_model=str(RM),
        ns=BEST_OF,
        repeats=REPEATS,
        device="cpu",
        seed=0,
        out=str(OUT / "best_of_n"),
        overwrite=True,
    )
)
for n, win in zip(bon["ns"], bon["gold_win_rate"]):
    print(f"N={n:<3} gold win rate over the SFT model: {win:.3f}")
Image(filename=str(OUT / "best_of_n" / "best_of_n.png"))

# %% [markdown]
# ## 5. DPO: learn from the same pairs, without a reward model
#
# DPO trains the policy directly on the labelled pairs the reward model learned from: make the chosen
# review more likely than the rejected one, relative to the frozen SFT model.

# %%
tuned_dpo = dpo.train(
    dpo.Config(init=SFT, task="reviews", pairs=str(RM / "pairs.jsonl"), steps=DPO_STEPS, out=str(OUT / "dpo"), **common)
)
dpo_model, _, _, _ = load_checkpoint(tuned_dpo["checkpoint"])

# %% [markdown]
# ## 6. RLHF: PPO against the reward model
#
# `reward="reward-model:<run folder>"` makes PPO optimise the learned reward instead of the task's. The gold
# judge grades the same rollouts on the side (`gold/reward`): when the proxy rises and the gold reward does
# not, the policy is exploiting the reward model's mistakes (overoptimisation). The KL penalty `beta`
# holds it near the SFT model.

# %%
tuned_ppo = ppo.train(
    ppo.Config(init=SFT, task="reviews", reward=f"reward-model:{RM}", steps=PPO_STEPS, out=str(OUT / "ppo"), **common)
)
ppo_model, _, _, _ = load_checkpoint(tuned_ppo["checkpoint"])
plot_history(tuned_ppo["history"], ["reward", "gold/reward", "kl"], OUT / "ppo_reward_model.png")

# %% [markdown]
# ## 7. Who won? The gold judge decides
#
# Each model reviews every held-out prompt (sampled, temperature 1), and the judge compares its review with
# the SFT model's: the gold win rate, 0.5 meaning no better than where we started.

# %%
generator = torch.Generator().manual_seed(1)
print(f"best-of-{bon['ns'][-1]:<3} (reward model picks)  {bon['gold_win_rate'][-1]:.3f}")
for name, policy in (("DPO (the same pairs)", dpo_model), ("PPO (the reward model)", ppo_model)):
    print(f"{name:<27}  {policy_gold_win_rate(policy, sft_model, tokenizer, task, repeats=REPEATS):.3f}")
samples = complete(ppo_model, tokenizer, prompts, 42, greedy=False, generator=generator)
print("\nPPO's reviews:")
for p, r in zip(prompts, samples):
    print(f"{gold_score(p, r):.2f}  {p} {r}")

# %% [markdown]
# What we measured at full settings (seed 0, gold win rate over the SFT model; 0.5 = no better):
# best-of-32 0.849, PPO against the reward model 0.836, DPO on the same labelled pairs 0.784. PPO's
# `gold/reward` rose from 0.65 to about 0.87 and ended at 0.83 while the proxy `reward` stayed near its
# peak. Its reviews are warm and well sized, but some name the wrong dish (`salad at gus: the soup was
# great.`): the reward model's blind spot from section 3, found and used. Forty steps only hint at
# overoptimisation; exercise 2 makes it plain.
#
# ## Exercises
#
# 1. Train the reward model with `label_temperature=0.3` (noisier annotators). Predict its held-out
#    accuracy, then what happens to best-of-32's gold win rate.
# 2. Run PPO against the reward model with `beta=0.0` and twice the steps. Watch `reward` and
#    `gold/reward` part ways: which of the judge's four qualities does the policy stop caring about?
# 3. DPO with `beta=0.5` and with `beta=0.02`: which stays closer to the SFT model, and which wins more often?
# 4. Run PPO with `reward="task"` (the gold judge itself as the reward): an upper bound no real lab has.
#    How far below it is the reward-model run?
