"""IceMaze: reinforcement-learning basics on a FrozenLake-compatible grid world.

    from rlrecipes.icemaze import IceMaze
    from rlrecipes.icemaze.q_learning import q_learning
    from rlrecipes.icemaze.value_iteration import optimal_success, success_probability

    env = IceMaze(map_name="8x8", is_slippery=True)
    result = q_learning(env, episodes=10_000)
    print(success_probability(env, result.policy), "vs optimal", optimal_success(env))

Each algorithm is a module with a function of the same name (value_iteration, policy_iteration,
monte_carlo, q_learning, sarsa, reinforce, actor_critic); they are not re-exported here, so that
`rlrecipes.icemaze.q_learning` always means the module. Importing this package registers
"rlrecipes/IceMaze-v0" with gymnasium. The chapter is docs/icemaze.md.
"""

import gymnasium as gym

from rlrecipes.icemaze.env import IceMaze, Result, evaluate, rollout
from rlrecipes.icemaze.maps import MAPS, generate_map

ENV_ID = "rlrecipes/IceMaze-v0"
if ENV_ID not in gym.registry:  # importing twice (or reloading) must not register twice
    gym.register(id=ENV_ID, entry_point="rlrecipes.icemaze.env:IceMaze")

__all__ = ["ENV_ID", "MAPS", "IceMaze", "Result", "evaluate", "generate_map", "rollout"]
