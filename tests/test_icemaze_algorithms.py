"""IceMaze algorithms in three layers: the math of each core, smoke and determinism, learning to a stated bar."""

import importlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlrecipes.icemaze import IceMaze
from rlrecipes.icemaze.actor_critic import actor_critic_update
from rlrecipes.icemaze.monte_carlo import monte_carlo_update
from rlrecipes.icemaze.q_learning import q_learning, q_learning_update
from rlrecipes.icemaze.reinforce import discounted_returns, reinforce_update
from rlrecipes.icemaze.sarsa import sarsa_update
from rlrecipes.icemaze.value_iteration import (
    bellman_backup,
    optimal_success,
    policy_evaluation,
    policy_iteration,
    success_probability,
    value_iteration,
)

LEARNERS = ["monte_carlo", "q_learning", "sarsa", "reinforce", "actor_critic"]


def train_fn(name: str):
    return getattr(importlib.import_module(f"rlrecipes.icemaze.{name}"), name)


# --- math: the exact solvers ---


@pytest.mark.parametrize("map_name", ["4x4", "8x8"])
@pytest.mark.parametrize("is_slippery", [True, False])
@pytest.mark.parametrize("penalties", [{}, {"step_penalty": -0.01, "hole_penalty": -1.0}])
def test_value_iteration_solves_the_bellman_equations(map_name, is_slippery, penalties):
    env = IceMaze(map_name=map_name, is_slippery=is_slippery, **penalties)
    V, policy = value_iteration(env, gamma=0.95)
    np.testing.assert_allclose(V, policy_evaluation(env, policy, gamma=0.95), atol=1e-6)
    V_pi, _ = policy_iteration(env, gamma=0.95)
    np.testing.assert_allclose(V, V_pi, atol=1e-6)


def test_bellman_backup_and_policy_evaluation_match_plain_loops_over_p():
    env = IceMaze(map_name="4x4", slip_prob=0.4, step_penalty=-0.01, hole_penalty=-0.5)
    gamma, rng = 0.9, np.random.default_rng(0)
    V = rng.normal(size=16)
    Q_loop = np.array(
        [
            [sum(p * (r + gamma * (0.0 if done else V[s2])) for p, s2, r, done in env.P[s][a]) for a in range(4)]
            for s in range(16)
        ]
    )
    np.testing.assert_allclose(bellman_backup(V, *env.tables(), gamma), Q_loop)

    policy = rng.integers(4, size=16)
    V_loop = np.zeros(16)
    for _ in range(500):  # iterative policy evaluation, Sutton & Barto section 4.1
        V_loop = np.array(
            [
                sum(p * (r + gamma * (0.0 if done else V_loop[s2])) for p, s2, r, done in env.P[s][policy[s]])
                for s in range(16)
            ]
        )
    np.testing.assert_allclose(policy_evaluation(env, policy, gamma), V_loop, atol=1e-9)


def test_success_probability_by_hand():
    # One row "SG": from S, "right" reaches G with probability 1/3 per step (the slides bump into walls),
    # so within K steps: 1 - (2/3)^K. A uniform policy: left never gets there, the other three 1/3 each.
    env = IceMaze(desc=["SG"], max_episode_steps=5)
    assert success_probability(env, np.array([2, 0])) == pytest.approx(1 - (2 / 3) ** 5)
    assert success_probability(env, np.array([0, 0])) == 0.0
    assert success_probability(env, np.full((2, 4), 0.25)) == pytest.approx(1 - (3 / 4) ** 5)
    calm = IceMaze(map_name="8x8", is_slippery=False)
    assert success_probability(calm, value_iteration(calm)[1]) == pytest.approx(1.0)


def test_optimal_success_numbers_quoted_in_the_chapter():
    assert optimal_success(IceMaze(map_name="4x4")) == pytest.approx(0.740, abs=5e-4)
    assert optimal_success(IceMaze(map_name="8x8")) == pytest.approx(0.863, abs=5e-4)


def test_policy_evaluation_refuses_a_policy_that_loops_forever_undiscounted():
    with pytest.raises(ValueError, match="gamma=1.0"):
        policy_evaluation(IceMaze(is_slippery=False), np.zeros(16, dtype=int), gamma=1.0)


# --- math: the learning cores, against numbers worked out by hand ---


def test_q_learning_and_sarsa_targets():
    Q = np.zeros((2, 4))
    Q[1] = [0.0, 0.5, 0.2, 0.0]
    assert q_learning_update(Q, 0, 2, 0.0, 1, False, lr=0.1, gamma=0.9) == pytest.approx(0.45)  # best next: 0.5
    assert Q[0, 2] == pytest.approx(0.045)
    Q[0, 2] = 0.0
    assert sarsa_update(Q, 0, 2, 0.0, 1, 2, False, lr=0.1, gamma=0.9) == pytest.approx(0.18)  # the action taken: 0.2
    assert sarsa_update(Q, 0, 3, 1.0, 1, 1, True, lr=1.0, gamma=0.9) == pytest.approx(1.0)  # G: no future


def test_monte_carlo_uses_the_first_visit_only():
    Q = np.zeros((2, 4))
    # (0, right) -> (1, left) -> (0, right) -> reward 1; with gamma 0.5 the returns are 0.25, 0.5, 1.
    monte_carlo_update(Q, states=[0, 1, 0], actions=[2, 0, 2], rewards=[0.0, 0.0, 1.0], lr=1.0, gamma=0.5)
    assert Q[0, 2] == pytest.approx(0.25)  # the first visit's return, not the last one's (1.0)
    assert Q[1, 0] == pytest.approx(0.5)


@given(st.lists(st.floats(-1, 1), max_size=30), st.floats(0, 1))
def test_discounted_returns_match_the_definition(rewards, gamma):
    expected = [sum(gamma**k * r for k, r in enumerate(rewards[t:])) for t in range(len(rewards))]
    np.testing.assert_allclose(discounted_returns(rewards, gamma), expected, atol=1e-9)


def test_reinforce_step_by_hand():
    logits = np.zeros((1, 4))
    reinforce_update(logits, None, [0], [1], [1.0], lr=1.0, lr_v=0.0, gamma=0.9)
    np.testing.assert_allclose(logits[0], [-0.25, 0.75, -0.25, -0.25])  # G * (onehot(a) - pi)
    logits, V = np.zeros((1, 4)), np.array([0.4])
    reinforce_update(logits, V, [0], [1], [1.0], lr=1.0, lr_v=0.5, gamma=0.9)
    np.testing.assert_allclose(logits[0], 0.6 * np.array([-0.25, 0.75, -0.25, -0.25]))  # (G - V) * ...
    assert V[0] == pytest.approx(0.7)  # 0.4 + 0.5 * (1 - 0.4)


def test_actor_critic_advantage_is_the_td_error():
    logits, V = np.zeros((2, 4)), np.array([0.2, 0.5])
    adv = actor_critic_update(logits, V, 0, 3, 0.0, 1, False, lr=1.0, lr_v=0.1, gamma=0.9)
    assert adv == pytest.approx(0.9 * 0.5 - 0.2)
    np.testing.assert_allclose(logits[0], 0.25 * np.array([-0.25, -0.25, -0.25, 0.75]))
    assert V[0] == pytest.approx(0.2 + 0.1 * 0.25)
    assert actor_critic_update(logits, V, 1, 0, 1.0, 0, True, lr=1.0, lr_v=0.1, gamma=0.9) == pytest.approx(
        0.5
    )  # r - V(s)


# --- smoke: every learner runs, is reproducible, and moves what it learns ---


@pytest.mark.parametrize("name", LEARNERS)
def test_learner_is_reproducible_and_learns_something(name):
    env = IceMaze(map_name="4x4")
    first = train_fn(name)(env, episodes=200, seed=3, eval_every=50)
    again = train_fn(name)(env, episodes=200, seed=3, eval_every=50)
    other = train_fn(name)(env, episodes=200, seed=4, eval_every=50)
    table = first.Q if first.Q is not None else first.logits
    assert table.shape == (16, 4) and first.policy.shape == (16,) and len(first.curve) == 200
    assert [e for e, _ in first.success_curve] == [50, 100, 150, 200]
    np.testing.assert_array_equal(table, again.Q if again.Q is not None else again.logits)
    assert first.curve == again.curve and first.success_curve == again.success_curve
    assert first.curve != other.curve
    assert np.ptp(table[~env.terminal]) > 0  # the values / preferences have moved away from their start


@pytest.mark.parametrize("name", LEARNERS)
def test_bad_hyper_parameters_are_refused(name):
    Config = importlib.import_module(f"rlrecipes.icemaze.{name}").Config
    with pytest.raises(ValueError, match=r"gamma=1.5 .* \[0, 1\]"):
        Config(gamma=1.5)
    with pytest.raises(ValueError, match="episodes=-1"):
        train_fn(name)(IceMaze(), episodes=-1)


def test_exact_solvers_refuse_a_bad_gamma():
    for solver in (value_iteration, policy_iteration):
        with pytest.raises(ValueError, match="gamma=-0.1"):
            solver(IceMaze(), gamma=-0.1)


# --- learning: fixed seeds, the exact success probability of the greedy policy, a stated bar ---


@pytest.mark.slow
def test_q_learning_4x4_slippery_within_0_05_of_optimal():
    env = IceMaze(map_name="4x4")
    result = q_learning(env, episodes=3000, seed=0)
    assert success_probability(env, result.policy) >= optimal_success(env) - 0.05


@pytest.mark.slow
def test_q_learning_8x8_slippery_within_0_10_of_optimal():
    env = IceMaze(map_name="8x8")
    result = q_learning(env, seed=0)  # the defaults: 10 000 episodes
    assert success_probability(env, result.policy) >= optimal_success(env) - 0.10


# (learner, overrides, fraction of the optimal success it must reach) on the 4x4 slippery lake, seed 0.
LEARNING_BARS = [
    ("sarsa", {"episodes": 3000}, 0.9),
    ("monte_carlo", {"episodes": 10_000}, 0.9),
    ("reinforce", {"episodes": 6000, "baseline": True}, 0.8),
    ("reinforce", {"episodes": 6000, "baseline": False}, 0.8),
    ("actor_critic", {"episodes": 3000}, 0.9),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "overrides", "fraction"), LEARNING_BARS)
def test_learner_reaches_its_stated_fraction_of_optimal(name, overrides, fraction):
    env = IceMaze(map_name="4x4")
    learned = success_probability(env, train_fn(name)(env, seed=0, **overrides).policy)
    random_policy = success_probability(env, np.full((16, 4), 0.25))  # about 0.014
    assert learned >= fraction * optimal_success(env)
    assert learned >= 10 * random_policy
