"""Value iteration and policy iteration: the exact answer, computed from the rules of the game.

When the transition table P is known, nobody has to play to find the best policy. The Bellman
optimality equation says what the best values satisfy:

    V*(s) = max_a  sum_s' P(s' | s, a) * [ r(s, a, s') + gamma * V*(s') ]

Value iteration (Sutton & Barto, section 4.4) turns that equation into an update and sweeps it over
every state until the values stop moving; the greedy policy of the result is optimal. Policy
iteration (section 4.3) alternates two steps until the policy stops changing: evaluate the current
policy exactly (the Bellman equation for a fixed policy is linear, V = R_pi + gamma * T_pi V, so one
numpy.linalg.solve does it), then make the policy greedy with respect to those values.

Also here, because they judge every learning algorithm in this package:
    policy_evaluation(env, policy, gamma)   exact V of any deterministic policy
    success_probability(env, policy)        exact chance of reaching G within the env's time limit

Simplified: terminal tiles (G, H) are worth 0 by definition, and we drop P's self-loops on them.
Reference: Sutton & Barto, Reinforcement Learning: An Introduction (2nd ed., 2018), chapter 4.
Run: rlrecipes icemaze value-iteration --map 8x8 --slippery   (or policy-iteration)
"""

from dataclasses import dataclass

import numpy as np

from rlrecipes.icemaze.env import IceMaze, check_gamma


@dataclass
class Config:
    gamma: float = 0.99  # discount: what a reward one step later is worth compared with one now
    tol: float = 1e-10  # value iteration stops when no state's value moves by more than this in a sweep

    def __post_init__(self):
        check_gamma(self.gamma)


# --- core ---
def bellman_backup(V: np.ndarray, T: np.ndarray, R: np.ndarray, terminal: np.ndarray, gamma: float) -> np.ndarray:
    # Q(s, a) = R(s, a) + gamma * sum_s' T(s, a, s') V(s'); a terminal tile has no future, so it counts 0.
    return R + gamma * T @ np.where(terminal, 0.0, V)  # (S, A)


def value_iteration(env: IceMaze, gamma: float = 0.99, tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    check_gamma(gamma)
    T, R, terminal = env.tables()  # (S, A, S), (S, A), (S,)
    V = np.zeros(len(R))  # (S,)
    for _ in range(1_000_000):
        Q = bellman_backup(V, T, R, terminal, gamma)  # (S, A)
        V, V_old = Q.max(axis=1), V  # (S,) act as well as possible now, then follow the current estimate
        if np.abs(V - V_old).max() < tol:
            return V, Q.argmax(axis=1)
    raise RuntimeError(f"value iteration did not converge with gamma={gamma}; try gamma < 1")


def policy_evaluation(env: IceMaze, policy: np.ndarray, gamma: float = 0.99) -> np.ndarray:
    # V = R_pi + gamma * T_pi V is linear in V: solve (I - gamma * T_pi) V = R_pi in one go.
    T, R, terminal = env.tables()
    s = np.arange(len(R))
    A = np.eye(len(R)) - gamma * T[s, policy] * ~terminal  # (S, S) I - gamma * T_pi, terminal tiles zeroed out
    if np.linalg.matrix_rank(A) < len(R):  # gamma = 1 and the policy can walk in circles forever
        raise ValueError(f"the policy's values are infinite with gamma={gamma}: it can loop forever; use gamma < 1")
    return np.linalg.solve(A, R[s, policy])  # (S,)


def policy_iteration(env: IceMaze, gamma: float = 0.99) -> tuple[np.ndarray, np.ndarray]:
    check_gamma(gamma)
    T, R, terminal = env.tables()
    policy = np.zeros(len(R), dtype=int)  # (S,) start by always going left
    while True:
        V = policy_evaluation(env, policy, gamma)  # (S,)
        Q = bellman_backup(V, T, R, terminal, gamma)  # (S, A)
        # Switch only where another action is strictly better: switching between ties would never stop.
        better = Q.max(axis=1) > Q[np.arange(len(R)), policy] + 1e-12  # (S,)
        if not better.any():
            return V, policy
        policy = np.where(better, Q.argmax(axis=1), policy)


# --- end core ---


def success_probability(env: IceMaze, policy: np.ndarray) -> float:
    """Exact probability that the policy reaches G within env.max_episode_steps steps.

    `policy` is (S,) actions or (S, A) action probabilities. Finite-horizon dynamic programming, with
    the same time limit as the evaluation rollouts (so the two agree up to sampling noise):
        p_0(s) = 0
        p_k(s) = sum_s' T_pi(s, s') * [1 if s' is G, 0 if s' is a hole, else p_{k-1}(s')]
    and the answer is p_K(start) with K = max_episode_steps.
    """
    T, _, terminal = env.tables()
    probs = np.eye(4)[policy] if np.ndim(policy) == 1 else np.asarray(policy)  # (S, A)
    T_pi = np.einsum("sa,sat->st", probs, T)  # (S, S)
    p = np.zeros(len(T))  # (S,)
    for _ in range(env.max_episode_steps):
        p = T_pi @ np.where(env.goal, 1.0, np.where(terminal, 0.0, p))
    return float(p[env.start_state])


def optimal_success(env: IceMaze, gamma: float = 0.99) -> float:
    """Success probability of the optimal policy for discount gamma: the bar every learner is held to."""
    return success_probability(env, value_iteration(env, gamma)[1])


if __name__ == "__main__":
    import sys

    from rlrecipes.icemaze.cli import main

    sys.exit(main(["value-iteration", *sys.argv[1:]]))
