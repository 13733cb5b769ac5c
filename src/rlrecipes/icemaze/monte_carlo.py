"""Monte Carlo control: play a whole episode, then move each Q(s, a) towards the return that followed it.

No bootstrapping: the target is the actual discounted return G_t = r_t + gamma r_{t+1} + gamma^2 r_{t+2} + ...
observed after the first time (s, a) was visited in the episode (first-visit MC):

    Q(s, a) <- Q(s, a) + lr * (G_t - Q(s, a))

Acting epsilon-greedily with respect to Q and updating again is on-policy MC control. Compared with
TD (Q-learning, SARSA) the target is unbiased (no guess about the future in it) but noisy (every slip
of the whole episode is in it), and nothing is learned until the episode ends.

Simplified: Sutton & Barto's version takes the plain average of the returns (lr = 1 / N(s, a)); we
use a decaying step size instead ("constant-alpha MC", their equation 6.1), because the policy keeps
changing and a plain average weighs the returns of the early, nearly random policy as much as
today's. Q starts optimistic (q_init, as in q_learning.py); the first real returns wash that out.
Reference: Sutton & Barto, Reinforcement Learning: An Introduction (2nd ed.), section 5.4.
Run: rlrecipes icemaze monte-carlo --map 8x8 --slippery
"""

from dataclasses import dataclass, replace

import numpy as np
from tqdm import trange

from rlrecipes.icemaze.env import IceMaze, Result, check_episodes, check_gamma, linear_decay
from rlrecipes.icemaze.value_iteration import success_probability


@dataclass
class Config:
    episodes: int = 10_000  # training episodes
    gamma: float = 0.99  # discount: what a reward one step later is worth compared with one now
    lr: float = 0.1  # step size at the start: how far Q(s, a) moves towards each observed return
    lr_end: float = 0.01  # step size at the end (linear decay)
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


def monte_carlo_update(
    Q: np.ndarray, states: list[int], actions: list[int], rewards: list[float], lr: float, gamma: float
) -> None:
    first_visit = {}  # (s, a) -> the step at which it first appears
    for t, sa in enumerate(zip(states, actions)):
        first_visit.setdefault(sa, t)
    G = 0.0
    for t in reversed(range(len(rewards))):  # backwards, so the return builds up in one pass
        G = rewards[t] + gamma * G  # G_t = r_t + gamma * G_{t+1}
        s, a = states[t], actions[t]
        if first_visit[(s, a)] == t:  # only the first visit of (s, a) counts
            Q[s, a] += lr * (G - Q[s, a])


# --- end core ---


def monte_carlo(env: IceMaze, cfg: Config | None = None, progress: bool = False, **overrides) -> Result:
    """Train on `env`; keyword arguments override Config fields: monte_carlo(env, episodes=5000, seed=1)."""
    cfg = replace(cfg or Config(), **overrides)
    rng = np.random.default_rng(cfg.seed)
    # The ice gets its own seed drawn from ours. Seeding both with cfg.seed would hand them the very same
    # random numbers, and the ice would slip in step with the agent's choices.
    env_seed = int(rng.integers(2**31))
    Q = np.full((env.observation_space.n, env.action_space.n), cfg.q_init)  # (S, A)
    Q[env.terminal] = 0.0  # nothing more to earn once the episode is over
    curve, success_curve = [], []
    for episode in trange(cfg.episodes, desc="monte-carlo", disable=not progress):
        epsilon = linear_decay(cfg.epsilon_start, cfg.epsilon_end, cfg.decay_fraction, episode, cfg.episodes)
        lr = linear_decay(cfg.lr, cfg.lr_end, 1.0, episode, cfg.episodes)
        s, _ = env.reset(seed=env_seed if episode == 0 else None)
        states, actions, rewards, done = [], [], [], False
        while not done:  # play the whole episode first: MC needs the return, which needs the end
            a = epsilon_greedy(Q[s], epsilon, rng)
            s_next, reward, terminated, truncated, _ = env.step(a)
            states.append(s)
            actions.append(a)
            rewards.append(reward)
            s, done = s_next, terminated or truncated
        monte_carlo_update(Q, states, actions, rewards, lr, cfg.gamma)
        curve.append(sum(rewards))
        if (episode + 1) % cfg.eval_every == 0:
            success_curve.append((episode + 1, success_probability(env, Q.argmax(axis=1))))
    return Result(policy=Q.argmax(axis=1), curve=curve, success_curve=success_curve, Q=Q, V=Q.max(axis=1))


if __name__ == "__main__":
    import sys

    from rlrecipes.icemaze.cli import main

    sys.exit(main(["monte-carlo", *sys.argv[1:]]))
