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
# # Part 1: IceMaze, the RL fundamentals on a frozen lake
#
# The notebook of the chapter [IceMaze](../icemaze.md). Everything here is the library's Python API;
# the chapter has the same ideas with the `rlrecipes icemaze` command. Open it in Jupyter with
# `jupytext --to ipynb docs/notebooks/01_icemaze.py` (or install jupytext's Jupyter extension and open
# the `.py` file directly). Top to bottom it takes about a minute on a laptop CPU.
#
# What you will do: walk on the lake by hand; compute the best possible policy exactly (value
# iteration); learn it by trial and error (Q-learning and SARSA) and measure how close the learners get;
# and meet the policy gradient, the idea every later part of rlrecipes builds on.

# %%
# %matplotlib inline
import os
from pathlib import Path

import numpy as np

from rlrecipes.icemaze import IceMaze, evaluate, rollout
from rlrecipes.icemaze.q_learning import q_learning
from rlrecipes.icemaze.reinforce import reinforce
from rlrecipes.icemaze.render import plot_episode, plot_learning, plot_values_policy
from rlrecipes.icemaze.sarsa import sarsa
from rlrecipes.icemaze.value_iteration import optimal_success, policy_evaluation, success_probability, value_iteration

QUICK = os.environ.get("RLRECIPES_NOTEBOOK_QUICK") == "1"  # the test suite runs this notebook at reduced sizes
EPISODES_8X8 = 300 if QUICK else 10_000  # Q-learning and SARSA on the 8x8 lake (the default of `rlrecipes icemaze`)
EPISODES_4X4 = 300 if QUICK else 5_000  # REINFORCE on the 4x4 lake
OUT = Path("runs/notebooks/01_icemaze")  # pictures go here, relative to where Jupyter runs (git ignores runs/)
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. The lake
#
# `S` start, `F` frozen (safe), `H` hole (the episode ends with reward 0), `G` goal (reward 1). Four
# actions: 0 left, 1 down, 2 right, 3 up. On slippery ice the intended move happens only a third of the
# time; otherwise you slide to one of the two perpendicular directions. IceMaze follows gymnasium's
# FrozenLake to the letter, so anything written about FrozenLake applies.

# %%
env = IceMaze(map_name="4x4", is_slippery=True, render_mode="ansi")
state, info = env.reset(seed=0)
print(env.render())
print("states:", env.observation_space.n, " actions:", env.action_space.n, " start state:", state)

# %% [markdown]
# The rules are all in one table, `P[s][a] = [(probability, next_state, reward, terminated), ...]`.
# State 14 is just left of the goal (state 15). Trying to move right from it:

# %%
for prob, next_state, reward, terminated in env.P[14][2]:
    print(f"p={prob:.3f}  ->  state {next_state:2d}  reward {reward}  terminated {terminated}")

# %% [markdown]
# One episode with a random policy: the agent acts, the lake answers with the next state and a reward.
# That loop, `action -> (state, reward)`, is all of reinforcement learning.

# %%
rng = np.random.default_rng(0)
state, _ = env.reset(seed=1)
states, total, done = [state], 0.0, False
while not done:
    action = int(rng.integers(4))
    state, reward, terminated, truncated, _ = env.step(action)
    states.append(state)
    total, done = total + reward, terminated or truncated
print("visited:", states)
print("return:", total)
plot_episode(env, states, OUT / "random_episode.png", title="a random walk")

# %% [markdown]
# ## 2. The exact answer: value iteration
#
# Because we know `P`, we can compute the best values without playing at all. The Bellman optimality
# equation `V*(s) = max_a sum_s' P(s'|s,a) [r + gamma V*(s')]`, swept over every state until nothing
# moves, gives the optimal value of every tile; its greedy policy is optimal. The picture shows V as
# colour and the greedy action as an arrow.

# %%
V, policy = value_iteration(env, gamma=0.99)
print(f"V(start) = {V[env.start_state]:.3f}")
print(
    f"probability that the optimal policy reaches G within {env.max_episode_steps} steps: "
    f"{success_probability(env, policy):.3f} (exact), {evaluate(env, policy, episodes=1000):.3f} (1000 rollouts)"
)
plot_values_policy(env, V, policy, OUT / "optimal_4x4.png", title="optimal V and policy, 4x4, gamma=0.99")

# %% [markdown]
# Look at the arrows near the holes: the optimal policy often points *away* from where it wants to go,
# because on slippery ice the perpendicular slides are what carry it forward without risking a hole.
#
# The discount `gamma` says how much a reward later is worth compared with one now. Predict before you
# run: with a small gamma, does the policy get braver or more careful?

# %%
for gamma in (0.5, 0.9, 0.99, 0.999):
    _, policy_g = value_iteration(env, gamma=gamma)
    print(f"gamma={gamma:<6} P(reach G) = {success_probability(env, policy_g):.3f}")

# %% [markdown]
# A short-sighted agent (small gamma) takes the quick, risky route: a reward in 20 steps is worth
# almost nothing to it, so it will not pay for safety with time.

# %% [markdown]
# ## 3. Learning by trial and error: Q-learning and SARSA on the 8x8 lake
#
# A learner does not get `P`. It plays episodes and updates a table of action values `Q(s, a)` after
# every step:
#
# - **Q-learning** (off-policy): target `r + gamma * max_a' Q(s', a')`, the value of acting greedily
#   from `s'` even though the agent explores;
# - **SARSA** (on-policy): target `r + gamma * Q(s', a')` with the action `a'` it will really take, so it
#   learns the value of its own exploring behaviour, and plays more carefully near holes.
#
# Both explore epsilon-greedily: with probability epsilon a random action, otherwise the best-looking one.

# %%
lake = IceMaze(map_name="8x8", is_slippery=True)
best = optimal_success(lake)
q_result = q_learning(lake, episodes=EPISODES_8X8, seed=0)
sarsa_result = sarsa(lake, episodes=EPISODES_8X8, seed=0)
for name, result in (("q-learning", q_result), ("sarsa", sarsa_result)):
    print(
        f"{name:<11} P(reach G) of its greedy policy = {success_probability(lake, result.policy):.3f} (optimal {best:.3f})"
    )
plot_learning({"q-learning": q_result, "sarsa": sarsa_result}, best, OUT / "learning_8x8.png", title="8x8 slippery")

# %% [markdown]
# At full settings (10,000 episodes, seed 0) we measured: Q-learning 0.858 and SARSA 0.810, against the
# optimal 0.863.
#
# Left: the exact success probability of the greedy policy as training goes on, against the optimal
# one (dashed). Right: the return of the training episodes themselves, exploration included; it stays
# below the left curve because epsilon keeps making the agent take random steps.
#
# How good are the learned values? Compare Q-learning's `V = max_a Q` with the exact optimal V:

# %%
V_star, policy_star = value_iteration(lake)
V_learned = q_result.V
print(f"largest |V_learned - V*| over the states: {np.abs(V_learned - V_star).max():.3f}")
print(f"greedy actions that agree with the optimal policy: {(q_result.policy == policy_star).mean():.0%}")
plot_values_policy(
    lake, V_learned, q_result.policy, OUT / "q_learning_8x8.png", title="Q-learning: learned V and greedy policy"
)

# %% [markdown]
# The policy can be near-optimal while the values are still off: to act well, only the *ranking* of
# actions in each state has to be right. One episode of the learned policy:

# %%
states, episode_return = rollout(lake, q_result.policy, seed=0)
plot_episode(lake, states, OUT / "q_learning_episode.png")

# %% [markdown]
# ## 4. Learning the policy directly: REINFORCE
#
# Instead of values, keep a table of action preferences (logits) and a softmax policy. After each
# episode, push up the log-probability of every action in proportion to the return that followed it
# (minus a baseline, the learned V(s)): `logits[s] += lr * (G_t - V(s)) * grad log pi(a_t | s)`.
# This is the policy gradient, and it is exactly what Part 3 does to a language model: the states
# become prompts plus the tokens so far, the actions become tokens.

# %%
small = IceMaze(map_name="4x4", is_slippery=True)
pg = reinforce(small, episodes=EPISODES_4X4, seed=0)
print(f"REINFORCE: P(reach G) = {success_probability(small, pg.policy):.3f} (optimal {optimal_success(small):.3f})")
V_pg = policy_evaluation(small, pg.policy)  # REINFORCE learns a baseline, not Q: the exact values of its policy
plot_values_policy(small, V_pg, pg.policy, OUT / "reinforce_4x4.png", title="REINFORCE: greedy policy, its exact V")

# %% [markdown]
# At full settings (5,000 episodes, seed 0) REINFORCE's greedy policy reached G with probability 0.637,
# against the optimal 0.740: slower than Q-learning, because each update waits for the whole episode and
# carries all its slips. RLOO and GRPO (Part 3) are this same update with better baselines.
#
# ## Exercises
#
# 1. Make the ice less slippery: `IceMaze(map_name="8x8", is_slippery=True, slip_prob=0.2)`. Predict the
#    optimal success probability before you compute it, then check how many episodes Q-learning needs.
# 2. Give Q-learning `q_init=0.0` (no optimism). Predict what happens to its success curve, then run it.
# 3. Add `step_penalty=-0.01` to the lake. Does the optimal policy take more or fewer risks? Why?
# 4. Run REINFORCE with `baseline=False`. Which curve gets noisier, and why does a baseline not bias
#    the gradient?
#
# Next: [Part 2, the tiny LLM](02_tiny_llm.py), where the agent is a language model.
