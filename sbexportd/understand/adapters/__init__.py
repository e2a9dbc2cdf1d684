"""One adapter per SB2 algorithm: Context -> PolicySpec.

A2C, ACER, ACKTR, PPO1, PPO2, TRPO and GAIL all build their policies from
common.policies (ActorCriticPolicy), so they share one adapter; the others have
policy modules of their own.
"""
from __future__ import annotations

from collections.abc import Callable

from ...errors import UnknownAlgorithm
from ...registry import Registry
from ..context import Context
from ..spec import PolicySpec
from . import actor_critic, dqn, her, off_policy

Adapter = Callable[[Context], PolicySpec]

ADAPTERS: Registry[Adapter] = Registry("algorithm", UnknownAlgorithm, [
    ("a2c", actor_critic.build),
    ("acer", actor_critic.build),
    ("acktr", actor_critic.build),
    ("ppo1", actor_critic.build),
    ("ppo2", actor_critic.build),
    ("trpo", actor_critic.build),
    ("gail", actor_critic.build),
    ("dqn", dqn.build),
    ("sac", off_policy.build_sac),
    ("td3", off_policy.build_td3),
    ("ddpg", off_policy.build_ddpg),
    ("her", her.build),
])
