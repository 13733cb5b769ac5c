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
# # Part 3: policy gradients on the tiny LLM: REINFORCE, RLOO, GRPO
#
# The notebook of the chapters [REINFORCE and RLOO](../reinforce-rloo.md) and [GRPO](../grpo.md). Open it in
# Jupyter with `jupytext --to ipynb docs/notebooks/03_policy_gradients.py`. It starts from Part 2's SFT
# model (or makes the same one first, about a minute and a half) and then takes two to three minutes
# on a laptop CPU.
#
# The model answers `47+38=`; a program checks the answer (reward 1 or 0). Every recipe here does the
# same thing: sample answers, make the better-than-expected ones more likely and the worse ones less
# likely. They differ only in what "expected" means, the baseline.

# %%
# %matplotlib inline
import json
import os
from pathlib import Path

import torch
from IPython.display import Image
from matplotlib.figure import Figure

from rlrecipes.lm.generate import generate
from rlrecipes.plots import plot_accuracy
from rlrecipes.recipes import grpo, pretrain, reinforce, rloo, sft
from rlrecipes.runs import load_checkpoint
from rlrecipes.tasks import evaluate, get_task

QUICK = os.environ.get("RLRECIPES_NOTEBOOK_QUICK") == "1"  # the test suite runs this notebook at reduced sizes
SAMPLES = 512 if QUICK else 10_240  # completions each algorithm may sample: the same budget for all three
OUT = Path("runs/notebooks/03_policy_gradients")  # run folders, relative to where Jupyter runs (git ignores runs/)
OUT.mkdir(parents=True, exist_ok=True)
task = get_task("arithmetic")

# %% [markdown]
# ## 1. The starting point: Part 2's SFT model
#
# If Part 2 ran in this folder, its SFT checkpoint is reused; otherwise the same pretraining and SFT
# run here (the settings of `rlrecipes bake`).

# %%
START = Path("runs/notebooks/02_tiny_llm/sft")
if not (START / "sft.json").exists():  # Part 2 has not run in this folder: make the same SFT model here
    common = dict(device="cpu", seed=0, eval_every=0, save_every=0, overwrite=True)
    n_documents = 2_000 if QUICK else 100_000
    pt = pretrain.train(
        pretrain.Config(steps=30 if QUICK else 1000, n_documents=n_documents, out=str(OUT / "pt"), **common)
    )
    tuned = sft.train(sft.Config(init=pt["checkpoint"], steps=3 if QUICK else 30, out=str(OUT / "sft"), **common))
    START = Path(tuned["checkpoint"])
model, tokenizer, _, _ = load_checkpoint(START)
print(f"start: {START}, held-out accuracy (greedy) {evaluate(model, tokenizer, task)[0]:.3f}")

# %% [markdown]
# ## 2. One prompt, eight answers, three baselines
#
# Sample G = 8 answers to the same prompt and score them. The policy gradient weighs each answer's
# log-probability by its *advantage*, the reward minus a baseline:
#
# - **REINFORCE** (Williams 1992): a moving average of past rewards, the same for every prompt;
# - **RLOO** (Ahmadian et al. 2024): the mean reward of the *other* answers to the same prompt;
# - **GRPO** (Shao et al. 2024): the mean of the whole group, divided by the group's standard deviation.

# %%
prompt = "47+38="
generator = torch.Generator().manual_seed(0)
samples = generate(
    model, [tokenizer.encode(prompt, bos=True)] * 8, 5, tokenizer.eos_id, tokenizer.pad_id, generator=generator
)
answers = [tokenizer.decode(c) for c in samples.completion_ids]
rewards = torch.tensor(task.reward([prompt] * 8, answers))  # (G,)
adv_rloo = rloo.leave_one_out_advantages(rewards, group_size=8)
adv_grpo = grpo.group_advantages(rewards, group_size=8)
adv_reinforce = rewards - 0.8  # say the moving average of past rewards (all prompts) stands at 0.8
print("answer  reward  REINFORCE   RLOO   GRPO")
for answer, r, a1, a2, a3 in zip(answers, rewards, adv_reinforce, adv_rloo, adv_grpo):
    print(f"{answer:<7} {r.item():>5.1f} {a1.item():>10.2f} {a2.item():>6.2f} {a3.item():>6.2f}")

# %% [markdown]
# If all eight answers get the same reward, RLOO's and GRPO's advantages are all zero: the group
# teaches nothing, however right or wrong it was. REINFORCE still pushes them all up (or all down), by how
# far this prompt is from a baseline that knows nothing about it. Try a prompt the model always gets
# right, e.g. `"11+11="`.
#
# ## 3. The bake-off: the same start, the same number of samples
#
# Each recipe runs with its own defaults (`rlrecipes run reinforce --help` shows them), for as many steps
# as its budget allows: REINFORCE samples 128 answers a step, RLOO 64 prompts x 4, GRPO 32 prompts x 8.
# `train(Config(...))` is what `rlrecipes run` calls.

# %%
results = {}
for name, recipe in (("reinforce", reinforce), ("rloo", rloo), ("grpo", grpo)):
    defaults = recipe.Config()
    per_step = defaults.batch_size * getattr(defaults, "group_size", 1)
    cfg = recipe.Config(
        init=str(START),
        steps=max(1, SAMPLES // per_step),
        eval_every=0,
        device="cpu",
        seed=0,
        out=str(OUT / name),
        overwrite=True,
    )
    results[name] = recipe.train(cfg)
    results[name]["per_step"] = per_step
    r = results[name]
    print(
        f"{name:<10} {cfg.steps:>3} steps x {per_step} samples: accuracy {r['start_accuracy']:.3f} -> {r['final_accuracy']:.3f} "
        f"in {r['seconds']:.0f} s"
    )

# %% [markdown]
# At full settings (10,240 samples each, seed 0, Part 2's SFT model) we measured held-out accuracy
# 0.798 -> 0.918 (REINFORCE), 0.902 (RLOO) and 0.896 (GRPO), about 25 to 30 s each: on this task, with
# this budget, the baseline matters less than you might expect; the curves below show where they differ.
# Held-out accuracy (greedy) after each, beside the SFT model they all started from:

# %%
names = list(results)
accuracies = [results[names[0]]["start_accuracy"]] + [results[n]["final_accuracy"] for n in names]
Image(filename=str(plot_accuracy(["sft", *names], accuracies, OUT / "accuracy.png", "same start, same budget")))

# %% [markdown]
# What a practitioner watches, against samples seen (TRL's metric names): the mean **reward** of the
# rollouts; **kl**, how far the policy has moved from the SFT model (measured every `kl_every` steps only,
# to save a forward pass of the reference model: hence the dots); **entropy** of the next-token
# distribution (falling means the policy is becoming sure of itself); and the completions' mean length.


# %%
def plot_runs(results: dict, keys: list[str], path: Path) -> Figure:
    """One panel per metric, one line per algorithm, against samples seen; saved as a PNG too."""
    fig = Figure(figsize=(4 * len(keys), 3.4))
    for ax, key in zip(fig.subplots(1, len(keys)), keys):
        for name, r in results.items():
            points = [(row["step"] * r["per_step"], row[key]) for row in r["history"] if row.get(key) is not None]
            ax.plot(*zip(*points), label=name, marker="o" if len(points) < 20 else None)
        ax.set(title=key, xlabel="samples seen")
        ax.grid(alpha=0.3)
    fig.axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig


plot_runs(results, ["reward", "kl", "entropy", "completions/mean_length"], OUT / "bake_off.png")

# %% [markdown]
# ## 4. Look at the samples
#
# Every run logs a few rollouts to `samples.jsonl`, with their rewards. The first step's and the
# last step's, for GRPO:

# %%
rows = [json.loads(line) for line in (OUT / "grpo" / "samples.jsonl").read_text().splitlines()]
for step in sorted({rows[0]["step"], rows[-1]["step"]}):
    print(f"step {step}:", [(r["prompt"] + r["completion"], r["reward"]) for r in rows if r["step"] == step])

# %% [markdown]
# And where did the accuracy come from? The SFT model's mistakes are mostly forgotten carries, so
# split the held-out prompts by whether their ones digits carry:

# %%
prompts = task.heldout_prompts()
carry = [p for p in prompts if int(p[1]) + int(p[4]) >= 10]
no_carry = [p for p in prompts if p not in carry]
tuned, _, _, _ = load_checkpoint(results["grpo"]["checkpoint"])
for label, subset in (("carry", carry), ("no carry", no_carry)):
    before, after = evaluate(model, tokenizer, task, subset)[0], evaluate(tuned, tokenizer, task, subset)[0]
    print(f"{label:<9} {len(subset):>3} prompts: accuracy {before:.3f} (SFT) -> {after:.3f} (GRPO)")

# %% [markdown]
# At full settings GRPO lifted the carry prompts from 0.578 to 0.762 and the others from 0.952 to 0.990:
# RL fixed mostly the habit that pretraining taught and SFT only half undid.
#
# ## Exercises
#
# 1. Run GRPO with `group_size=2` and the same budget. Predict: more or fewer groups with zero advantage
#    (the metric `frac_reward_zero_std`)? Faster or slower learning per sample?
# 2. Run REINFORCE with `baseline="none"`. Every answer of a model that is right 80% of the time gets a
#    positive weight: what does that do to entropy?
# 3. Give GRPO `beta=0.1` (a KL penalty to the SFT model). Predict the kl curve and the final accuracy.
# 4. Raise GRPO's `lr` to `3e-3`. Watch kl and entropy: this is one of the failures in the guide's gallery.
#
# Next: [Part 4, preferences](04_preferences.py): when no program can check the answer.
