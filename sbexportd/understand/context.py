"""What every adapter starts from: the archive, its spaces and the policy's settings."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import NotAModelFile, UnknownActivation, UnknownAlgorithm, UnsupportedModel
from ..read.archive import Archive, VecNormalizeStats
from .spaces import attr, class_name, to_space
from .spec import ACTIVATIONS, Box, Space

ALGORITHMS = ("a2c", "acer", "acktr", "ddpg", "dqn", "gail", "her", "ppo1", "ppo2", "sac", "td3", "trpo")

# Data keys only one algorithm saves (each algorithm's `save`), most telling first.
_SIGNATURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("her", ("model_class", "her_obs_space", "goal_selection_strategy")),
    ("td3", ("policy_delay", "target_policy_noise")),
    ("ddpg", ("nb_rollout_steps", "actor_lr", "normalize_observations")),
    ("sac", ("target_entropy",)),
    ("dqn", ("exploration_fraction", "double_q", "prioritized_replay")),
    ("acktr", ("kfac_clip", "vf_fisher_coef", "kfac_update")),
    ("acer", ("q_coef", "replay_ratio", "rprop_alpha")),
    ("ppo2", ("cliprange", "nminibatches", "noptepochs")),
    ("ppo1", ("clip_param", "optim_epochs", "timesteps_per_actorbatch")),
    ("trpo", ("max_kl", "cg_iters", "timesteps_per_batch")),
    ("a2c", ("alpha", "lr_schedule")),
)

# Policy modules, for files whose data keys say too little.
_POLICY_MODULES = {
    "stable_baselines.deepq.policies": "dqn",
    "stable_baselines.sac.policies": "sac",
    "stable_baselines.td3.policies": "td3",
    "stable_baselines.ddpg.policies": "ddpg",
}

_ALGO_CLASSES = {"A2C": "a2c", "ACER": "acer", "ACKTR": "acktr", "DDPG": "ddpg", "DQN": "dqn",
                 "GAIL": "gail", "HER": "her", "PPO1": "ppo1", "PPO2": "ppo2", "SAC": "sac",
                 "TD3": "td3", "TRPO": "trpo"}


def detect_algorithm(data: dict[str, Any], source: str = "") -> str:
    if "using_gail" in data:
        return "gail" if data.get("using_gail") else "trpo"
    for algo, keys in _SIGNATURES:
        if any(k in data for k in keys):
            return algo
    policy = data.get("policy")
    module = getattr(policy, "sb_module", "") or ""
    if module in _POLICY_MODULES:
        return _POLICY_MODULES[module]
    raise UnknownAlgorithm(
        "cannot tell which SB2 algorithm saved this file (its data has none of the keys A2C, ACER, "
        "ACKTR, DDPG, DQN, GAIL, HER, PPO1, PPO2, SAC, TD3 or TRPO save); pass algo=... to say so",
        source)


def algorithm_of_class(cls: Any) -> str | None:
    return _ALGO_CLASSES.get(class_name(cls))


@dataclass
class PolicyInfo:
    """The saved policy class: a stand-in, so only its name and pedigree are known."""
    name: str
    module: str
    known: bool               # an SB2 class sbexportd knows by name
    by_value: bool            # its code was pickled into the file (a user's __main__ class)
    bases: tuple[str, ...]    # names of its base classes, when pickled by value
    init_names: tuple[str, ...] = ()  # names its pickled __init__ refers to (by value only)

    @classmethod
    def of(cls, policy: Any) -> PolicyInfo:
        if isinstance(policy, str):
            return cls(policy, "", False, False, ())
        bases = tuple(class_name(b) for b in (getattr(policy, "sb_bases", ()) or ()))
        module = getattr(policy, "sb_module", "") or getattr(policy, "__module__", "")
        init = (getattr(policy, "sb_class_dict", None) or {}).get("__init__")
        names = tuple(n for n in (getattr(getattr(init, "code", None), "co_names", ()) or ()) if isinstance(n, str))
        return cls(class_name(policy), module, bool(getattr(policy, "sb_known", False)) and
                   module.startswith("stable_baselines"), bool(getattr(policy, "sb_by_value", False)), bases,
                   names)

    @property
    def custom(self) -> bool:
        return not self.known


@dataclass
class Context:
    archive: Archive
    algo: str
    policy: PolicyInfo
    observation_space: Space
    action_space: Space
    policy_kwargs: dict[str, Any]
    activation_override: str | None = None
    vecnormalize: VecNormalizeStats | None = None
    frame_stack: int = 0                    # VecFrameStack's n_stack put in front of the policy
    notes: list[str] = field(default_factory=list)
    stack_state: str | None = None          # the frame stack's state output, once built

    @property
    def input_space(self) -> Space:
        """What the program's "obs" takes: one frame when frames are stacked in front,
        else the policy's own observation space."""
        if not self.frame_stack:
            return self.observation_space
        return frame_space(self.observation_space, self.frame_stack, self.source)

    @property
    def source(self) -> str:
        return str(self.archive.path)

    @property
    def params(self) -> dict[str, np.ndarray]:
        return self.archive.params

    def activation(self, default: str) -> str:
        """Caller override > the file's policy_kwargs act_fun > the base class default."""
        if self.activation_override:
            check_activation(self.activation_override, self.source)
            return self.activation_override
        fn = self.policy_kwargs.get("act_fun")
        if fn is not None:
            name = getattr(fn, "sb_activation", None) or class_name(fn)
            if name in ACTIVATIONS:
                return name
            self.notes.append(f"act_fun {name!r} is not a known activation; assumed {default!r} "
                              f"(override with activation=...)")
            return default
        named = [n for n in self.policy.init_names if n in ACTIVATIONS and n != "identity"]
        if len(set(named)) == 1:
            # A class pickled by value: its __init__'s code is data we can read (never
            # run); `act_fun=tf.nn.relu` leaves "relu" among the names it refers to.
            self.notes.append(f"custom policy {self.policy.name!r}: activation {named[0]!r} read from "
                              f"the names its pickled __init__ refers to")
            return named[0]
        if self.policy.custom:
            self.notes.append(f"custom policy {self.policy.name!r}: its code is not in the file, so the "
                              f"activation is assumed to be {default!r}, the default of its base class "
                              f"(override with activation=...)")
        return default


def check_activation(name: object, source: str | None = None) -> None:
    """A caller's activation override must be one the op contract knows."""
    if name not in ACTIVATIONS:
        raise UnknownActivation(f"unknown activation {name!r:.40}; choose one of {', '.join(ACTIVATIONS)}", source)


def frame_space(stacked: Space, n: int, source: str) -> Box:
    """One frame of a VecFrameStack(n) observation space. SB2 built the stacked bounds
    with np.repeat along the last axis, so element j of a frame is repeated n times."""
    if not isinstance(stacked, Box) or not stacked.shape or stacked.shape[-1] % n:
        raise UnsupportedModel(f"frame_stack={n}: the policy's observation space {stacked.describe()} is not "
                               f"{n} frames stacked on the last axis", source)
    shape = (*stacked.shape[:-1], stacked.shape[-1] // n, n)
    low, high = stacked.low.reshape(shape), stacked.high.reshape(shape)
    return Box(low=low[..., 0].copy(), high=high[..., 0].copy(), dtype=stacked.dtype)


def make_context(archive: Archive, *, algo: str | None = None, activation: str | None = None,
                 vecnormalize: VecNormalizeStats | None = None, frame_stack: int = 0) -> Context:
    data = archive.data
    for key in ("observation_space", "action_space", "policy"):
        if key not in data:
            raise NotAModelFile(f"the model data has no {key!r}: not a Stable Baselines 2 model", archive.path)
    if algo is not None and algo not in ALGORITHMS:
        raise UnknownAlgorithm(f"unknown algorithm {algo!r}; expected one of {', '.join(ALGORITHMS)}",
                               archive.path)
    if activation:  # before any building: a naming search must not take it for a misfit
        check_activation(activation, str(archive.path))
    algo = algo or detect_algorithm(data, str(archive.path))
    kwargs = data.get("policy_kwargs") or {}
    if not isinstance(kwargs, dict):
        kwargs = dict(attr(kwargs, "__dict__", {}) or {})
    return Context(archive=archive, algo=algo, policy=PolicyInfo.of(data["policy"]),
                   observation_space=to_space(data["observation_space"], str(archive.path)),
                   action_space=to_space(data["action_space"], str(archive.path)),
                   policy_kwargs=kwargs, activation_override=activation, vecnormalize=vecnormalize,
                   frame_stack=frame_stack if frame_stack and frame_stack > 1 else 0)
