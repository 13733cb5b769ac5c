"""Q-learning: learn the optimal action values by trial and error, without knowing P.

After every step the agent nudges its estimate Q(s, a) towards a one-step target built from the
reward it just got and its own current estimate of the best it can do next (temporal-difference, TD):

    Q(s, a) <- Q(s, a) + lr * [ r + gamma * max_a' Q(s', a') - Q(s, a) ]

It is off-policy: the target assumes the *best* next action, although the agent acting with
epsilon-greedy exploration sometimes takes a random one. So Q learns the values of the greedy policy
while the agent explores. Epsilon decays linearly from epsilon_start to epsilon_end.

Two choices matter on a slippery lake. Q starts optimistic (q_init = 1, the best possible return),
so the agent keeps trying actions it hasn't tried; with Q = 0 an 8x8 agent may never see the goal.
And the learning rate decays: a slip makes each target noisy, and small late steps average it out.
Simplified: ties between equal Q values go to the lowest action number.
Reference: Watkins (1989); Sutton & Barto, Reinforcement Learning: An Introduction (2nd ed.), section 6.5.
Run: rlrecipes icemaze q-learning --map 8x8 --slippery
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


def q_learning_update(
    Q: np.ndarray, s: int, a: int, reward: float, s_next: int, terminated: bool, lr: float, gamma: float
) -> float:
    # Off-policy target: the best next action, whatever the agent will actually do next.
    # Only a real ending (G or H) has no future; a time-out still bootstraps from s_next.
    target = reward + (0.0 if terminated else gamma * Q[s_next].max())
    td_error = target - Q[s, a]
    Q[s, a] += lr * td_error
    return td_error


# --- end core ---


def q_learning(env: IceMaze, cfg: Config | None = None, progress: bool = False, **overrides) -> Result:
    """Train on `env`; keyword arguments override Config fields: q_learning(env, episodes=5000, seed=1)."""
    cfg = replace(cfg or Config(), **overrides)
    rng = np.random.default_rng(cfg.seed)
    # The ice gets its own seed drawn from ours. Seeding both with cfg.seed would hand them the very same
    # random numbers, and the ice would slip in step with the agent's choices.
    env_seed = int(rng.integers(2**31))
    Q = np.full((env.observation_space.n, env.action_space.n), cfg.q_init)  # (S, A)
    Q[env.terminal] = 0.0  # nothing more to earn once the episode is over
    curve, success_curve = [], []
    for episode in trange(cfg.episodes, desc="q-learning", disable=not progress):
        epsilon = linear_decay(cfg.epsilon_start, cfg.epsilon_end, cfg.decay_fraction, episode, cfg.episodes)
        lr = linear_decay(cfg.lr, cfg.lr_end, 1.0, episode, cfg.episodes)
        s, _ = env.reset(seed=env_seed if episode == 0 else None)
        total, done = 0.0, False
        while not done:
            a = epsilon_greedy(Q[s], epsilon, rng)
            s_next, reward, terminated, truncated, _ = env.step(a)
            q_learning_update(Q, s, a, reward, s_next, terminated, lr, cfg.gamma)
            s, total, done = s_next, total + reward, terminated or truncated
        curve.append(total)
        if (episode + 1) % cfg.eval_every == 0:
            success_curve.append((episode + 1, success_probability(env, Q.argmax(axis=1))))
    return Result(policy=Q.argmax(axis=1), curve=curve, success_curve=success_curve, Q=Q, V=Q.max(axis=1))


if __name__ == "__main__":
    import sys

    from rlrecipes.icemaze.cli import main

    sys.exit(main(["q-learning", *sys.argv[1:]]))
