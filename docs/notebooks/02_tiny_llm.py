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
# # Part 2: the tiny LLM: tokenizer, TinyGPT, sampling, pretraining, SFT
#
# The notebook of the chapter [Building the tiny LLM](../tiny-llm.md). Open it in Jupyter with
# `jupytext --to ipynb docs/notebooks/02_tiny_llm.py`. Top to bottom it takes two to three minutes on a
# laptop CPU, most of it pretraining.
#
# You will build a language model from random weights: a character tokenizer, a small GPT, batched
# sampling with a KV cache, pretraining on sloppy "web text" and supervised fine-tuning (SFT) on clean
# demonstrations; and you will see why the result still makes mistakes that RL (Part 3) can fix.

# %%
# %matplotlib inline
import os
import random
import time
from pathlib import Path

import torch
from matplotlib.figure import Figure

from rlrecipes.lm.generate import generate, pack, sequence_logprobs
from rlrecipes.lm.model import GPTConfig, TinyGPT
from rlrecipes.lm.tokenizer import CharTokenizer
from rlrecipes.recipes import pretrain, sft
from rlrecipes.runs import load_checkpoint
from rlrecipes.tasks import complete, evaluate, get_task

QUICK = os.environ.get("RLRECIPES_NOTEBOOK_QUICK") == "1"  # the test suite runs this notebook at reduced sizes
PRETRAIN_STEPS = 30 if QUICK else 1000  # the bake's pretraining: about a minute on a laptop CPU
N_DOCUMENTS = 2_000 if QUICK else 100_000  # pretraining documents (the recipe's default)
SFT_STEPS = 3 if QUICK else 30  # the bake's SFT: a few seconds
N_TIMED = 32 if QUICK else 256  # prompts sampled with and without the KV cache
OUT = Path("runs/notebooks/02_tiny_llm")  # run folders go here, relative to where Jupyter runs (git ignores runs/)
OUT.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)


def plot_history(rows: list[dict], keys: list[str], path: Path, title: str = "") -> Figure:
    """One panel per metric of a recipe's history (the rows of metrics.jsonl) against the step; saved as a PNG too."""
    fig = Figure(figsize=(4.2 * len(keys), 3.2))
    for ax, key in zip(fig.subplots(1, len(keys), squeeze=False)[0], keys):
        points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        ax.plot(*zip(*points), marker="o" if len(points) < 20 else None)
        ax.set(title=key, xlabel="step")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig


# %% [markdown]
# ## 1. The task: two-digit addition, and a careless corpus
#
# Prompts look like `47+38=`; the reward is 1 for the exact sum. The pretraining corpus is written by
# someone who forgets the carry 90% of the time, so `47+38=75` is what the "web" mostly says.

# %%
task = get_task("arithmetic")
rng = random.Random(0)
print("web text:       ", task.pretrain_documents(6, rng))
print("demonstrations: ", task.sft_examples(3, rng))
prompts = task.heldout_prompts()
print(f"{len(prompts)} held-out prompts, e.g. {prompts[:4]}")
print("reward of '85' and '75' for 47+38=:", task.reward(["47+38=", "47+38="], ["85", "75"]))

# %% [markdown]
# ## 2. The tokenizer: one token per character
#
# Ids 0, 1, 2 are `<pad>`, `<bos>` (beginning of sequence) and `<eos>` (end of sequence); then one id per
# character the task uses. You can read every token the model will ever emit.

# %%
tokenizer = CharTokenizer(task.alphabet)
ids = tokenizer.encode("47+38=85", bos=True, eos=True)
print("vocabulary:", tokenizer.itos)
print("encoded:   ", ids)
print("decoded:   ", repr(tokenizer.decode(ids)))

# %% [markdown]
# ## 3. TinyGPT
#
# GPT-2's architecture, shrunk: token and position embeddings, 3 blocks of attention and MLP, a
# 96-wide residual stream. A policy is just a callable `policy(input_ids, attention_mask) -> logits`
# of shape `(batch, time, vocabulary)`.

# %%
model = TinyGPT(GPTConfig(vocab_size=tokenizer.vocab_size, context_len=32, n_layer=3, n_head=4, n_embd=96))
print(f"{model.num_params():,} parameters")
x = torch.tensor([ids[:-1]])  # (B=1, T) the input; the targets are the same ids shifted by one
logits = model(x)
print("logits:", tuple(logits.shape))
loss = pretrain.next_token_loss(logits, torch.tensor([ids[1:]]), tokenizer.pad_id)
print(
    f"loss at random init: {loss.item():.3f}  (a uniform guess over {tokenizer.vocab_size} tokens: "
    f"{torch.log(torch.tensor(float(tokenizer.vocab_size))).item():.3f})"
)

# %% [markdown]
# ## 4. Sampling, with and without a KV cache
#
# `generate` left-pads a batch of prompts so they all end in the same column, then samples one token
# per step for every row. With the KV cache each step feeds only the new token and reuses every
# layer's stored keys and values; without it, each step runs the whole sequence again. Greedy
# decoding makes the two comparable token for token.

# %%
batch = [tokenizer.encode(p, bos=True) for p in prompts[:N_TIMED]]
timings = {}
for use_cache in (True, False):
    start = time.perf_counter()
    out = generate(model, batch, 24, tokenizer.eos_id, tokenizer.pad_id, greedy=True, use_cache=use_cache)
    timings[use_cache] = time.perf_counter() - start
    print(
        f"use_cache={use_cache!s:<5}  {timings[use_cache] * 1000:6.0f} ms   first completion: "
        f"{tokenizer.decode(out.completion_ids[0])!r}"
    )
cached = generate(model, batch, 24, tokenizer.eos_id, tokenizer.pad_id, greedy=True, use_cache=True)
assert torch.equal(cached.input_ids, out.input_ids), "the cache must not change a single token"
print("identical tokens with and without the cache")

# %% [markdown]
# The untrained model writes noise. The batch `Samples` has the layout every RL recipe uses:
# `input_ids`, `attention_mask` (real tokens) and `completion_mask` (the tokens the policy chose).

# %%
print(cached.input_ids[0].tolist())
print(cached.attention_mask[0].tolist())
print(cached.completion_mask[0].tolist())

# %% [markdown]
# ## 5. Pretraining: predict every next character of the web text
#
# `pretrain.train(Config(...))` is the same code as `rlrecipes run pretrain`. It writes a run folder
# (config, metrics.jsonl, checkpoint) and returns a dict with the summary and the history.

# %%
pt = pretrain.train(
    pretrain.Config(
        steps=PRETRAIN_STEPS,
        n_documents=N_DOCUMENTS,
        eval_every=200,
        save_every=0,
        device="cpu",
        seed=0,
        out=str(OUT / "pretrain"),
        overwrite=True,
    )
)
print(f"pretraining: {pt['seconds']:.0f} s, held-out accuracy {pt['final_accuracy']:.3f}")
plot_history(pt["history"], ["loss", "eval/accuracy"], OUT / "pretraining.png", "pretraining")

# %% [markdown]
# The loss falls fast, then flattens: the model has learned the corpus, including its habit. Ask it
# sums that need a carry and look at how it answers:

# %%
base, tokenizer, _, _ = load_checkpoint(pt["checkpoint"])
carry = [p for p in prompts if int(p[1]) + int(p[4]) >= 10][:200]  # the ones digits add up to 10 or more
answers = complete(base, tokenizer, carry, max_new_tokens=4)


def sum_of(prompt: str) -> int:
    a, b = prompt.rstrip("=").split("+")
    return int(a) + int(b)


# Forgetting the carry of the ones column gives exactly 10 less than the sum.
kinds = [
    "right" if ans == str(sum_of(p)) else "forgot the carry" if ans == str(sum_of(p) - 10) else "other"
    for p, ans in zip(carry, answers)
]
for p, ans, kind in list(zip(carry, answers, kinds))[:6]:
    print(f"{p}{ans:<4} {kind}")
print({k: kinds.count(k) for k in ("right", "forgot the carry", "other")})

# %% [markdown]
# How sure is it? `sequence_logprobs` gives the log-probability of every completion token under a
# model: the quantity every RL recipe pushes up or down. Compare the right answer with the careless one:


# %%
def answer_logprob(model, prompt: str, answer: str) -> float:
    samples = pack([tokenizer.encode(prompt, bos=True)], [tokenizer.encode(answer, eos=True)], tokenizer.pad_id)
    with torch.no_grad():
        return sequence_logprobs(model, samples).sum().item()  # log p(answer + <eos> | prompt)


for answer in ("85", "75"):
    print(f"base model: log p({answer!r} | '47+38=') = {answer_logprob(base, '47+38=', answer):.2f}")

# %% [markdown]
# ## 6. SFT: imitate a few hundred clean demonstrations
#
# The same next-token loss, on prompt -> right answer pairs, counting only the answer's tokens.
# It is short on purpose, as in `rlrecipes bake`, so mistakes are left for RL.

# %%
tuned = sft.train(
    sft.Config(
        init=pt["checkpoint"],
        steps=SFT_STEPS,
        eval_every=10,
        save_every=0,
        device="cpu",
        seed=0,
        out=str(OUT / "sft"),
        overwrite=True,
    )
)
print(
    f"SFT: held-out accuracy {tuned['start_accuracy']:.3f} -> {tuned['final_accuracy']:.3f} in {tuned['seconds']:.0f} s"
)
plot_history(tuned["history"], ["loss", "eval/accuracy"], OUT / "sft.png", "SFT")

# %%
sft_model, _, _, _ = load_checkpoint(tuned["checkpoint"])
for answer in ("85", "75"):
    print(f"SFT model:  log p({answer!r} | '47+38=') = {answer_logprob(sft_model, '47+38=', answer):.2f}")

# %% [markdown]
# At full settings (seed 0) we measured: held-out accuracy 0.588 after pretraining, with the carry forgotten
# on all 200 carry prompts; 0.798 after SFT. For `47+38=`, log p of `85` and `75` went from -2.85 and -0.07
# (base) to -0.09 and -3.61 (SFT).
#
# SFT moved probability from the careless answer to the right one, which the base model already gave
# some weight (the corpus is right 10% of the time). Greedy decoding takes the most likely answer;
# an RL recipe samples. With sampling, the temperature decides how often the model strays:

# %%
for temperature in (0.5, 1.0, 2.0):
    generator = torch.Generator().manual_seed(0)
    sampled = complete(sft_model, tokenizer, prompts, 4, greedy=False, temperature=temperature, generator=generator)
    accuracy = sum(r >= 1 for r in task.reward(prompts, sampled)) / len(prompts)
    print(f"temperature {temperature}: accuracy of sampled answers {accuracy:.3f}, e.g. {sampled[:5]}")
print(f"greedy:          accuracy {evaluate(sft_model, tokenizer, task)[0]:.3f}")

# %% [markdown]
# The checkpoint of this SFT model is the starting point of Part 3: `runs/notebooks/02_tiny_llm/sft`.
#
# ## Exercises
#
# 1. Pretrain with `steps=300`. Predict the held-out accuracy before you look (hint: the plateau).
# 2. In `tasks/arithmetic.py`, set the default `sloppy` to 1.0 (the corpus never carries) and run this
#    notebook again. What can 30 steps of SFT achieve when the base model never saw a carry done right?
# 3. Run SFT for 200 steps. What is left for RL?
# 4. Time `generate` with and without the cache for `max_new_tokens=8` and `24`. Which grows faster, and why?
#
# Next: [Part 3, policy gradients](03_policy_gradients.py).
