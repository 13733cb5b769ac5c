"""IceMaze the environment: FrozenLake's transitions exactly, the extra knobs, gymnasium's API, clear errors."""

import importlib

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import rlrecipes.icemaze
from rlrecipes.icemaze import ENV_ID, MAPS, IceMaze, evaluate, generate_map, rollout
from rlrecipes.icemaze.maps import goal_reachable
from rlrecipes.icemaze.value_iteration import success_probability, value_iteration


@pytest.mark.parametrize("map_name", ["4x4", "8x8"])
@pytest.mark.parametrize("is_slippery", [True, False])
def test_transitions_equal_frozenlake(map_name, is_slippery):
    ours = IceMaze(map_name=map_name, is_slippery=is_slippery).P
    theirs = gym.make("FrozenLake-v1", map_name=map_name, is_slippery=is_slippery).unwrapped.P
    assert ours.keys() == theirs.keys()
    for s in theirs:
        assert ours[s].keys() == theirs[s].keys()
        for a in theirs[s]:
            assert len(ours[s][a]) == len(theirs[s][a])
            for (p, s_next, r, done), (p_fl, s_next_fl, r_fl, done_fl) in zip(ours[s][a], theirs[s][a]):
                # 1/3 is computed as 1 - 2/3 on one side and (1 - 1/3) / 2 on the other: equal up to rounding
                assert p == pytest.approx(p_fl, abs=1e-12)
                assert (s_next, r, done) == (s_next_fl, r_fl, done_fl)


def test_maps_are_frozenlakes():
    from gymnasium.envs.toy_text.frozen_lake import MAPS as FROZENLAKE_MAPS

    assert MAPS == FROZENLAKE_MAPS
    frozen_lake = gym.make("FrozenLake-v1", map_name="8x8").unwrapped
    np.testing.assert_array_equal(IceMaze(desc=frozen_lake.desc).desc, frozen_lake.desc)  # its desc works as ours


def test_slip_prob_splits_between_the_two_perpendicular_moves():
    env = IceMaze(map_name="8x8", slip_prob=0.2)
    s = 2 * 8 + 1  # a tile in the middle, so no wall is involved
    for a in range(4):
        probs = {(a - 1) % 4: 0.1, a: 0.8, (a + 1) % 4: 0.1}
        assert [p for p, *_ in env.P[s][a]] == pytest.approx([probs[(a - 1) % 4], probs[a], probs[(a + 1) % 4]])
    assert IceMaze(slip_prob=0.0).tables()[0].max(axis=2).min() == 1.0  # no slip: every move is certain


@settings(max_examples=25, deadline=None)
@given(size=st.integers(2, 9), p_frozen=st.floats(0.5, 1.0), seed=st.integers(0, 10_000), slip=st.floats(0.0, 1.0))
def test_random_maps_are_solvable_and_transitions_are_distributions(size, p_frozen, seed, slip):
    desc = generate_map(size, p_frozen, seed)
    assert len(desc) == size and all(len(row) == size for row in desc)
    assert desc[0][0] == "S" and desc[-1][-1] == "G" and goal_reachable(desc)
    assert generate_map(size, p_frozen, seed) == desc  # the seed fixes the map
    T, R, terminal = IceMaze(desc=desc, slip_prob=slip).tables()
    np.testing.assert_allclose(T.sum(axis=2), 1.0)
    assert terminal.sum() == sum(row.count("H") + row.count("G") for row in desc)


def test_penalties_show_up_in_rewards():
    env = IceMaze(map_name="4x4", is_slippery=False, step_penalty=-0.01, hole_penalty=-1.0)
    assert env.P[0][2] == [(1.0, 1, -0.01, False)]  # a plain step
    assert env.P[1][1] == [(1.0, 5, -1.01, True)]  # into the hole below: hole penalty plus the step's
    assert env.P[14][2] == [(1.0, 15, 0.99, True)]  # onto the goal
    assert env.P[5][0] == [(1.0, 5, 0.0, True)]  # inside a hole nothing more happens


def test_step_penalty_trades_success_for_speed():
    # Every step now costs 0.01, so the optimal policy takes shorter, riskier routes (and a hole, which ends
    # the paying, starts to look attractive): fewer steps and a lower chance of reaching G.
    calm, hurried = IceMaze(map_name="8x8"), IceMaze(map_name="8x8", step_penalty=-0.01)
    calm_policy, hurried_policy = value_iteration(calm)[1], value_iteration(hurried)[1]
    assert success_probability(hurried, hurried_policy) < success_probability(calm, calm_policy) - 0.3
    steps = [
        np.mean([len(rollout(env, policy, seed=i)[0]) for i in range(200)])
        for env, policy in [(calm, calm_policy), (hurried, hurried_policy)]
    ]
    assert steps[1] < steps[0] / 1.5


def test_time_limit_truncates_without_terminating():
    env = IceMaze(map_name="4x4", is_slippery=False, max_episode_steps=7)
    env.reset(seed=0)
    for t in range(7):
        s, reward, terminated, truncated, _ = env.step(0)  # walk into the left wall, forever
        assert s == 0 and reward == 0.0 and not terminated
        assert truncated == (t == 6)
    assert IceMaze(map_name="4x4").max_episode_steps == 100 and IceMaze(map_name="8x8").max_episode_steps == 200


def test_step_follows_p():
    env = IceMaze(map_name="4x4", slip_prob=0.5)
    env.reset(seed=0)
    counts = np.zeros(16)
    for _ in range(6000):
        env.s = 6  # jump to tile 6 and press "down" (S, A, S') = (6, 1, .)
        s_next, *_ = env.step(1)
        counts[s_next] += 1
    np.testing.assert_allclose(counts / counts.sum(), env.tables()[0][6, 1], atol=0.03)


def test_rollouts_agree_with_the_exact_success_probability():
    env = IceMaze(map_name="4x4")
    policy = value_iteration(env)[1]
    exact = success_probability(env, policy)
    measured = evaluate(env, policy, episodes=2000, seed=0)
    assert abs(measured - exact) < 4 * np.sqrt(exact * (1 - exact) / 2000)  # 4 standard errors
    assert evaluate(env, policy, episodes=50, seed=3) == evaluate(env, policy, episodes=50, seed=3)


def test_gymnasium_make_check_env_and_registration_once():
    importlib.reload(rlrecipes.icemaze)  # a second import must not register twice
    env = gym.make(ENV_ID, map_name="8x8", is_slippery=True)
    assert env.unwrapped.nrow == 8 and env.unwrapped.is_slippery
    check_env(env.unwrapped)
    check_env(gym.make(ENV_ID, render_mode="ansi").unwrapped)
    obs, info = env.reset(seed=1)
    assert obs == 0 and info == {"prob": 1.0}


def test_ansi_render_shows_the_map_and_the_last_move():
    env = IceMaze(render_mode="ansi", is_slippery=False)
    env.reset(seed=0)
    env.step(2)
    text = env.render()
    assert "(Right)" in text and "FHFH" in text and "HFFG" in text


# --- clear errors: each names the bad value and says what is valid ---


@pytest.mark.parametrize(
    ("desc", "message"),
    [
        (["FFF", "FFG"], "0 start tiles"),
        (["SFF", "FFF"], "no goal"),
        (["SFS", "FFG"], "2 start tiles"),
        (["SFX", "FFG"], r"unknown letters \['X'\]"),
        (["SFFF", "FFG"], "different lengths"),
        (["SHF", "HFG"], "no goal 'G' is reachable"),
        ([], "not a map"),
    ],
)
def test_bad_maps_are_refused(desc, message):
    with pytest.raises(ValueError, match=message):
        IceMaze(desc=desc)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"map_name": "5x5"}, r"unknown map_name='5x5'.*\['4x4', '8x8'\]"),
        ({"slip_prob": 1.5}, r"slip_prob=1.5 .* \[0, 1\]"),
        ({"slip_prob": -0.1}, r"slip_prob=-0.1 .* \[0, 1\]"),
        ({"slip_prob": 0.3, "is_slippery": False}, "is_slippery=False"),
        ({"max_episode_steps": 0}, "max_episode_steps=0"),
        ({"render_mode": "human"}, "render_mode='human'"),
    ],
)
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        IceMaze(**kwargs)


def test_bad_random_map_arguments_are_refused():
    with pytest.raises(ValueError, match="size=1"):
        generate_map(1)
    with pytest.raises(ValueError, match="p_frozen=0"):
        generate_map(4, p_frozen=0)
