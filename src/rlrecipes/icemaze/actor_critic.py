"""Actor-critic: a policy (the actor) improved with advantages estimated by a value function (the critic).

REINFORCE waits for the end of the episode and weighs each action by the whole return that followed,
slips and all. Actor-critic asks after every single step "did that go better than expected?" using
the critic's value estimate V:

    adv = r + gamma * V(s') - V(s)                                  (the TD error, 0 future if s' ends the episode)
    V(s) <- V(s) + lr_v * adv                                       (critic: TD(0) learning of V for the current policy)
    logits[s] <- logits[s] + lr * adv * (onehot(a) - pi(. | s))     (actor: the REINFORCE update, with adv for G)

The TD error is a one-step estimate of the advantage A(s, a) = Q(s, a) - V(s): how much better action
a was than the policy's average from s. This is *the* quantity of LLM reinforcement learning. PPO
computes it with a learned critic over tokens (its GAE with lambda = 0 is exactly this TD error, and
lambda = 1 is REINFORCE's return minus value); GRPO drops the critic and uses reward minus the mean
reward of a group of completions for the same prompt. Same weight on grad log pi; different estimates.

Simplified: one-step (TD(0)) critic, no gamma^t factor on the actor's step, tabular logits and values.
Reference: Sutton & Barto, Reinforcement Learning: An Introduction (2nd ed.), section 13.5; Barto, Sutton
& Anderson (1983) for the original actor-critic.
Run: rlrecipes icemaze actor-critic --map 8x8 --slippery
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
    lr: float = 0.5  # actor step size on the logits
    lr_v: float = 0.1  # critic step size on V
    eval_every: int = 100  # episodes between exact success measurements of the greedy policy (success_curve)
    seed: int = 0  # seeds the agent's choices and the ice's slips

    def __post_init__(self):
        check_episodes(self.episodes, self.eval_every)
        check_gamma(self.gamma)


# --- core ---
def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))  # subtract the max so exp can't overflow
    return z / z.sum(axis=-1, keepdims=True)


def actor_critic_update(
    logits: np.ndarray,
    V: np.ndarray,
    s: int,
    a: int,
    reward: float,
    s_next: int,
    terminated: bool,
    lr: float,
    lr_v: float,
    gamma: float,
) -> float:
    # The advantage: did this step go better than the critic expected? Only G or H ends the future.
    adv = reward + (0.0 if terminated else gamma * V[s_next]) - V[s]
    grad_logp = -softmax(logits[s])  # (A,) d log pi(a|s) / d logits[s] = onehot(a) - pi(.|s)
    grad_logp[a] += 1.0
    logits[s] += lr * adv * grad_logp  # actor: make a more likely if adv > 0, less if adv < 0
    V[s] += lr_v * adv  # critic: move V(s) towards the one-step target
    return adv


# --- end core ---


def actor_critic(env: IceMaze, cfg: Config | None = None, progress: bool = False, **overrides) -> Result:
    """Train on `env`; keyword arguments override Config fields: actor_critic(env, episodes=5000, seed=1)."""
    cfg = replace(cfg or Config(), **overrides)
    rng = np.random.default_rng(cfg.seed)
    # The ice gets its own seed drawn from ours. Seeding both with cfg.seed would hand them the very same
    # random numbers, and the ice would slip in step with the agent's choices.
    env_seed = int(rng.integers(2**31))
    logits = np.zeros((env.observation_space.n, env.action_space.n))  # (S, A) uniform random policy to start
    V = np.zeros(env.observation_space.n)  # (S,)
    curve, success_curve = [], []
    for episode in trange(cfg.episodes, desc="actor-critic", disable=not progress):
        s, _ = env.reset(seed=env_seed if episode == 0 else None)
        total, done = 0.0, False
        while not done:
            a = int(rng.choice(len(logits[s]), p=softmax(logits[s])))
            s_next, reward, terminated, truncated, _ = env.step(a)
            actor_critic_update(logits, V, s, a, reward, s_next, terminated, cfg.lr, cfg.lr_v, cfg.gamma)
            s, total, done = s_next, total + reward, terminated or truncated
        curve.append(total)
        if (episode + 1) % cfg.eval_every == 0:
            success_curve.append((episode + 1, success_probability(env, logits.argmax(axis=1))))
    return Result(policy=logits.argmax(axis=1), curve=curve, success_curve=success_curve, V=V, logits=logits)


if __name__ == "__main__":
    import sys

    from rlrecipes.icemaze.cli import main

    sys.exit(main(["actor-critic", *sys.argv[1:]]))
