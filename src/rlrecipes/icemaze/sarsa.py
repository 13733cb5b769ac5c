"""SARSA: on-policy TD control, named after the five things each update uses: S, A, R, S', A'.

Like Q-learning it nudges Q(s, a) towards a one-step target after every step, but the target uses
the action a' the agent will *really* take next (chosen epsilon-greedily), not the best one:

    Q(s, a) <- Q(s, a) + lr * [ r + gamma * Q(s', a') - Q(s, a) ]

So SARSA learns the value of the policy it is actually following, exploration included. Where a
random step is dangerous (a hole beside the path) it learns to keep a safer distance than
Q-learning does; the smaller epsilon, the closer the two. Same schedules as q_learning.py: epsilon and
the learning rate decay linearly, and Q starts optimistic so untried actions get tried.

Simplified: ties between equal Q values go to the lowest action number.
Reference: Rummery & Niranjan (1994); Sutton & Barto, Reinforcement Learning: An Introduction (2nd ed.), section 6.4.
Run: rlrecipes icemaze sarsa --map 8x8 --slippery
"""

from dataclasses import dataclass, replace

import numpy as np
from tqdm import trange

from rlrecipes.icemaze.env import IceMaze, Result, check_episodes, check_gamma, linear_decay
from rlrecipes.icemaze.value_iteration import success_probability


@dataclass
class Config:
    episodes: int = 10_000  # training episodes (8x8 slippery needs about this many; 4x4 slippery learns in 3000)
    gamma: float = 0.99  # discount: what a reward one step later is worth compared with one now
    lr: float = 0.1  # step size at the start: how far Q(s, a) moves towards each new target
    lr_end: float = 0.01  # step size at the end (linear decay): small late steps average out the slips
    epsilon_start: float = 1.0  # exploration at the start: 1 is a purely random policy
    epsilon_end: float = 0.05  # exploration once the decay is over
    decay_fraction: float = 0.5  # fraction of the episodes over which epsilon decays linearly
    q_init: float = 1.0  # optimism: untried actions start at the best possible return, so the agent tries them
    eval_every: int = 100  # episodes between exact success measurements of the greedy policy (success_curve)
    seed: int = 0  # seeds the agent's choices and the ice's slips

    def __post_init__(self):
        check_episodes(self.episodes, self.eval_every)
        check_gamma(self.gamma)


# --- core ---
def epsilon_greedy(q: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
    # With probability epsilon try a random action (explore), otherwise the best-looking one (exploit).
    if rng.random() < epsilon:
        return int(rng.integers(len(q)))
    return int(q.argmax())


def sarsa_update(
    Q: np.ndarray, s: int, a: int, reward: float, s_next: int, a_next: int, terminated: bool, lr: float, gamma: float
) -> float:
    # On-policy target: the action the agent will really take next, exploration and all.
    # Only a real ending (G or H) has no future; a time-out still bootstraps from s_next.
    target = reward + (0.0 if terminated else gamma * Q[s_next, a_next])
    td_error = target - Q[s, a]
    Q[s, a] += lr * td_error
    return td_error


# --- end core ---


def sarsa(env: IceMaze, cfg: Config | None = None, progress: bool = False, **overrides) -> Result:
    """Train on `env`; keyword arguments override Config fields: sarsa(env, episodes=5000, seed=1)."""
    cfg = replace(cfg or Config(), **overrides)
    rng = np.random.default_rng(cfg.seed)
    # The ice gets its own seed drawn from ours. Seeding both with cfg.seed would hand them the very same
    # random numbers, and the ice would slip in step with the agent's choices.
    env_seed = int(rng.integers(2**31))
    Q = np.full((env.observation_space.n, env.action_space.n), cfg.q_init)  # (S, A)
    Q[env.terminal] = 0.0  # nothing more to earn once the episode is over
    curve, success_curve = [], []
    for episode in trange(cfg.episodes, desc="sarsa", disable=not progress):
        epsilon = linear_decay(cfg.epsilon_start, cfg.epsilon_end, cfg.decay_fraction, episode, cfg.episodes)
        lr = linear_decay(cfg.lr, cfg.lr_end, 1.0, episode, cfg.episodes)
        s, _ = env.reset(seed=env_seed if episode == 0 else None)
        a = epsilon_greedy(Q[s], epsilon, rng)
        total, done = 0.0, False
        while not done:
            s_next, reward, terminated, truncated, _ = env.step(a)
            a_next = epsilon_greedy(Q[s_next], epsilon, rng)  # chosen now, because the update needs it
            sarsa_update(Q, s, a, reward, s_next, a_next, terminated, lr, cfg.gamma)
            s, a, total, done = s_next, a_next, total + reward, terminated or truncated
        curve.append(total)
        if (episode + 1) % cfg.eval_every == 0:
            success_curve.append((episode + 1, success_probability(env, Q.argmax(axis=1))))
    return Result(policy=Q.argmax(axis=1), curve=curve, success_curve=success_curve, Q=Q, V=Q.max(axis=1))


if __name__ == "__main__":
    import sys

    from rlrecipes.icemaze.cli import main

    sys.exit(main(["sarsa", *sys.argv[1:]]))
