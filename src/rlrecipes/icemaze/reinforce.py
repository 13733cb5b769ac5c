"""REINFORCE: push up the log-probability of every action in proportion to the return that followed it.

The policy is a table of logits, one row per tile: pi(a | s) = softmax(logits[s])[a]. After an
episode, for every step t with return G_t = r_t + gamma r_{t+1} + ...:

    logits[s_t] <- logits[s_t] + lr * (G_t - b(s_t)) * grad log pi(a_t | s_t)
    grad log pi(a | s) with respect to logits[s] = onehot(a) - pi(. | s)        (softmax's gradient)

Actions followed by a high return become more likely, the others less. Without a baseline (b = 0)
the update is unbiased but noisy: on IceMaze a failed episode (return 0) teaches nothing at all. With
the baseline b(s) = V(s), a running estimate of the average return from s, the weight G_t - V(s_t) is
the *advantage*: how much better this action turned out than usual. Failures now push their actions
down, successes push theirs up, and the gradient's expectation is unchanged. This is the same update
the LLM recipes use, with tokens as actions and a completion as an episode.

Simplified: we drop the gamma^t factor in front of each step's update, as almost every implementation
(the LLM ones included) does; the baseline is learned by moving V(s) towards each observed return.
Updates go one step at a time, as in Sutton & Barto's pseudocode, so V(s) stays a running average even
for a tile visited 50 times in one episode (50 updates all computed from the old V would overshoot).
Reference: Williams (1992), "Simple statistical gradient-following algorithms for connectionist
reinforcement learning"; Sutton & Barto, Reinforcement Learning: An Introduction (2nd ed.), sections 13.3-13.4.
Run: rlrecipes icemaze reinforce --map 4x4 --slippery   (add --no-baseline to see the difference)
"""

from dataclasses import dataclass, replace

import numpy as np
from tqdm import trange

from rlrecipes.icemaze.env import IceMaze, Result, check_episodes, check_gamma
from rlrecipes.icemaze.value_iteration import success_probability


@dataclass
class Config:
    episodes: int = 10_000  # training episodes
    gamma: float = 0.99  # discount: what a reward one step later is worth compared with one now
    lr: float = 0.1  # policy step size on the logits (0.5 makes the policy certain too early and it gets stuck)
    baseline: bool = True  # subtract a learned V(s) from the return (REINFORCE with baseline)
    lr_v: float = 0.1  # step size of the baseline V(s) towards each observed return
    eval_every: int = 100  # episodes between exact success measurements of the greedy policy (success_curve)
    seed: int = 0  # seeds the agent's choices and the ice's slips

    def __post_init__(self):
        check_episodes(self.episodes, self.eval_every)
        check_gamma(self.gamma)


# --- core ---
def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))  # subtract the max so exp can't overflow
    return z / z.sum(axis=-1, keepdims=True)


def discounted_returns(rewards: list[float], gamma: float) -> np.ndarray:
    returns = np.zeros(len(rewards))  # (T,)
    G = 0.0
    for t in reversed(range(len(rewards))):  # G_t = r_t + gamma * G_{t+1}, from the end backwards
        G = rewards[t] + gamma * G
        returns[t] = G
    return returns


def reinforce_update(
    logits: np.ndarray,
    V: np.ndarray | None,
    states: list[int],
    actions: list[int],
    rewards: list[float],
    lr: float,
    lr_v: float,
    gamma: float,
) -> None:
    returns = discounted_returns(rewards, gamma)  # (T,)
    for s, a, G in zip(states, actions, returns):  # one step at a time, as in Sutton & Barto's pseudocode
        adv = G if V is None else G - V[s]  # with a baseline: how much better than usual it went
        grad_logp = -softmax(logits[s])  # (A,) d log pi(a|s) / d logits[s] = onehot(a) - pi(.|s)
        grad_logp[a] += 1.0
        logits[s] += lr * adv * grad_logp
        if V is not None:
            V[s] += lr_v * (G - V[s])  # the baseline tracks the average return from s


# --- end core ---


def reinforce(env: IceMaze, cfg: Config | None = None, progress: bool = False, **overrides) -> Result:
    """Train on `env`; keyword arguments override Config fields: reinforce(env, episodes=5000, baseline=False)."""
    cfg = replace(cfg or Config(), **overrides)
    rng = np.random.default_rng(cfg.seed)
    # The ice gets its own seed drawn from ours. Seeding both with cfg.seed would hand them the very same
    # random numbers, and the ice would slip in step with the agent's choices.
    env_seed = int(rng.integers(2**31))
    logits = np.zeros((env.observation_space.n, env.action_space.n))  # (S, A) uniform random policy to start
    V = np.zeros(env.observation_space.n) if cfg.baseline else None  # (S,)
    curve, success_curve = [], []
    for episode in trange(cfg.episodes, desc="reinforce", disable=not progress):
        s, _ = env.reset(seed=env_seed if episode == 0 else None)
        states, actions, rewards, done = [], [], [], False
        while not done:  # sample a whole episode from the current policy: REINFORCE needs its return
            a = int(rng.choice(len(logits[s]), p=softmax(logits[s])))
            s_next, reward, terminated, truncated, _ = env.step(a)
            states.append(s)
            actions.append(a)
            rewards.append(reward)
            s, done = s_next, terminated or truncated
        reinforce_update(logits, V, states, actions, rewards, cfg.lr, cfg.lr_v, cfg.gamma)
        curve.append(sum(rewards))
        if (episode + 1) % cfg.eval_every == 0:
            success_curve.append((episode + 1, success_probability(env, logits.argmax(axis=1))))
    return Result(policy=logits.argmax(axis=1), curve=curve, success_curve=success_curve, V=V, logits=logits)


if __name__ == "__main__":
    import sys

    from rlrecipes.icemaze.cli import main

    sys.exit(main(["reinforce", *sys.argv[1:]]))
