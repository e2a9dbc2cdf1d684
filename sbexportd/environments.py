"""The environments SB2 agents were trained in, as gymnasium knows them today.

gym's ids moved on after SB2: `successor("Pendulum-v0")` is gymnasium's Pendulum-v1,
with a note where gymnasium's own version history says the dynamics or observations
changed (the notes quote gymnasium's env docstrings). PyBullet environments come from
pybullet_envs_gymnasium, registered when it is installed.

`env_wrappers(config)` reads the wrappers a zoo config.yml's `env_wrapper` put around
the environment in training (the policy saw their observations: TimeFeatureWrapper
appends the remaining time), as their gymnasium-era counterparts; `wrap` applies them.

`published(algo, env)` is rl-baselines-zoo's published mean return of an agent
(benchmark.md: `|algo|env_id|mean_reward|std_reward|n_timesteps|n_episodes|`), from a
benchmark.md beside the agent's zoo (or the one given).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SbExportError


class UnknownEnvironment(SbExportError):
    code = "unknown_environment"


@dataclass(frozen=True)
class Successor:
    old: str            # the id the agent was trained on
    new: str            # the gymnasium id to run it in
    changed: str = ""   # what changed between them that an agent could feel ("" = nothing)


# id -> (gymnasium id, what changed). Ids not listed run under their own name.
SUCCESSORS: dict[str, tuple[str, str]] = {
    "Pendulum-v0": ("Pendulum-v1", ""),  # gymnasium: "v1: Simplify the math equations, no difference in behavior"
    "LunarLander-v2": ("LunarLander-v3", ("LunarLander-v3 resets the wind/turbulence offset at every reset, fixes "
                       "non-determinism from a world not fully destroyed, and declares wider observation bounds "
                       "(the observations themselves are computed as in v2)")),
    "LunarLanderContinuous-v2": ("LunarLanderContinuous-v3", ("as LunarLander-v3: wind/turbulence offset reset at "
                                 "every reset, a determinism fix, wider declared observation bounds")),
    "BipedalWalker-v2": ("BipedalWalker-v3", ("BipedalWalker-v3 returns the CLOSEST lidar trace instead of the "
                         "furthest: 10 of the 24 observations differ from what the agent was trained on")),
    "BipedalWalkerHardcore-v2": ("BipedalWalkerHardcore-v3", ("BipedalWalkerHardcore-v3 returns the CLOSEST lidar "
                                 "trace instead of the furthest: 10 of the 24 observations differ from training")),
    "FetchReach-v1": ("FetchReach-v4", ("gymnasium-robotics' FetchReach-v4 runs on the mujoco bindings instead of "
                      "mujoco-py")),
}

PYBULLET_PREFIXES = ("Bullet",)

# rl-baselines-zoo's wrappers (config.yml `env_wrapper`) -> the class rl_zoo3 names for
# them today. sb3_contrib's TimeFeatureWrapper is the zoo's, ported: the same feature
# (1 - step / max_steps, max_steps from the env's TimeLimit, else 1000).
ENV_WRAPPERS: dict[str, str] = {"utils.wrappers.TimeFeatureWrapper": "sb3_contrib.common.wrappers.TimeFeatureWrapper"}


@dataclass(frozen=True)
class EnvWrapper:
    trained_with: str         # the zoo's own name in config.yml
    name: str | None          # its counterpart, as rl_zoo3 imports it (None: none known)
    kwargs: dict              # its keyword arguments from config.yml ({} for most)

    def as_dict(self) -> dict:
        return {"trained_with": self.trained_with, "name": self.name, "kwargs": dict(self.kwargs)}

    @classmethod
    def from_dict(cls, d: dict) -> EnvWrapper:
        """(a manifest's entry: hostile input) ValueError unless it has the shape as_dict gives."""
        name, kwargs = d.get("name"), d.get("kwargs") or {}
        if not isinstance(d.get("trained_with"), str) or not (name is None or isinstance(name, str)) \
                or not _plain(kwargs):
            raise ValueError("not an env wrapper entry")
        return cls(d["trained_with"], name, {str(k): v for k, v in kwargs.items()})


def _plain(kwargs: object) -> bool:
    """Keyword arguments of numbers, booleans and strings only."""
    return isinstance(kwargs, dict) and all(isinstance(v, (bool, int, float, str)) for v in kwargs.values())


def env_wrappers(config: dict) -> list[EnvWrapper]:
    """The wrappers of a zoo config.yml's `env_wrapper`, in the order the zoo applied
    them: a name, {name: kwargs}, or a list of those (rl-baselines-zoo's
    get_wrapper_class), each with its counterpart (None where sbexportd knows none)."""
    value = config.get("env_wrapper")
    if not value:
        return []
    out = []
    for item in value if isinstance(value, list) else [value]:
        name: object = item
        kwargs: dict[str, Any] = {}
        if isinstance(item, dict) and len(item) == 1:
            name, args = next(iter(item.items()))
            kwargs = args or {}
        if not isinstance(name, str) or not _plain(kwargs):
            raise UnknownEnvironment(f"config.yml env_wrapper {str(item)[:80]!r}: expected a wrapper's name or "
                                     "{name: {keyword: number or string}}")
        out.append(EnvWrapper(name, ENV_WRAPPERS.get(name), {str(k): v for k, v in kwargs.items()}))
    return out


def wrap(env, wrappers: list[EnvWrapper]):
    """`env` inside `wrappers`, the first innermost (as the zoo built it). One without a
    counterpart is refused: the agent would be fed observations it never saw."""
    import importlib
    for w in wrappers:
        if w.name not in ENV_WRAPPERS.values():  # (never a class a file names: only the known counterparts)
            raise UnknownEnvironment(f"the agent was trained inside the zoo wrapper {w.trained_with[:80]!r} "
                                     "(config.yml env_wrapper), which has no gymnasium counterpart sbexportd "
                                     f"knows (it knows {', '.join(ENV_WRAPPERS)})")
        module, _, cls = str(w.name).rpartition(".")
        try:
            factory = getattr(importlib.import_module(module), cls)
        except ImportError as exc:
            package = module.split(".")[0]
            raise UnknownEnvironment(f"the agent's env wrapper {w.name} needs {package} (pip install "
                                     f"{package.replace('_', '-')}): {exc}") from exc
        try:
            env = factory(env, **w.kwargs)
        except (TypeError, ValueError, AssertionError) as exc:
            raise UnknownEnvironment(f"{w.name}({', '.join(f'{k}={v!r:.20}' for k, v in w.kwargs.items())}) "
                                     f"cannot wrap this environment: {str(exc)[:200]}") from exc
    return env


def successor(env_id: str) -> Successor:
    new, changed = SUCCESSORS.get(env_id, (env_id, ""))
    return Successor(env_id, new, changed)


def make(env_id: str, **kwargs):
    """gymnasium.make of the successor id (PyBullet and other registrations imported
    first). Raises UnknownEnvironment saying what to install."""
    import gymnasium as gym
    s = successor(env_id)
    if "Bullet" in s.new:
        try:
            import pybullet_envs_gymnasium  # noqa: F401  (registers the Bullet ids)
        except ImportError as exc:
            raise UnknownEnvironment(f"{env_id} needs pybullet_envs_gymnasium (pip install pybullet "
                                     f"pybullet_envs_gymnasium)") from exc
    if s.new.startswith("Fetch"):
        try:
            import gymnasium_robotics
            gym.register_envs(gymnasium_robotics)
        except ImportError as exc:
            raise UnknownEnvironment(f"{env_id} -> {s.new} needs gymnasium-robotics and mujoco, not installed "
                                     "here") from exc
    try:
        return gym.make(s.new, **kwargs)
    except gym.error.Error as exc:
        raise UnknownEnvironment(f"gymnasium cannot make {s.new!r}"
                                 + (f" (the successor of {env_id})" if s.new != env_id else "")
                                 + f": {exc}") from exc
    except ImportError as exc:  # a Box2D or MuJoCo env without its package
        raise UnknownEnvironment(f"{s.new}: {exc} (Box2D environments: pip install 'gymnasium[box2d]')") from exc


# --- rl-baselines-zoo's published returns ---------------------------------------------------
@dataclass(frozen=True)
class Published:
    algo: str
    env: str
    mean: float
    std: float
    n_timesteps: int
    n_episodes: int
    source: str

    def as_dict(self) -> dict:
        return {"algo": self.algo, "env": self.env, "mean_reward": self.mean, "std_reward": self.std,
                "n_timesteps": self.n_timesteps, "n_episodes": self.n_episodes, "source": self.source}


_ROW = re.compile(r"^\|\s*(\w+)\s*\|\s*([\w.-]+)\s*\|\s*(-?[\d.]+)\s*\|\s*(-?[\d.]+)\s*"
                  r"\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*$")


def read_benchmark(path: str | os.PathLike) -> dict[tuple[str, str], Published]:
    rows = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        m = _ROW.match(line)
        if m:
            algo, env, mean, std, steps, episodes = m.groups()
            rows[(algo, env)] = Published(algo, env, float(mean), float(std), int(steps), int(episodes), str(path))
    return rows


PACKAGED = Path(__file__).parent / "data" / "zoo_benchmark.md"


def find_benchmark(near: str | os.PathLike | None) -> Path | None:
    """$SBEXPORTD_ZOO_BENCHMARK, else a benchmark.md in the agent's folder or up to four
    folders above it, or in a sibling `zoo` folder there (../shared/zoo-more's agents cite
    ../zoo/benchmark.md), else the copy of the zoo's table sbexportd ships."""
    env = os.environ.get("SBEXPORTD_ZOO_BENCHMARK")
    if env and Path(env).is_file():
        return Path(env)
    if near is not None:
        p = Path(near).resolve()
        for folder in [p.parent, *list(p.parents)[1:5]]:
            for cand in (folder / "benchmark.md", folder / "zoo" / "benchmark.md"):
                if cand.is_file():
                    return cand
    return PACKAGED if PACKAGED.is_file() else None


def published(algo: str, env_id: str, benchmark: str | os.PathLike | None = None,
              near: str | os.PathLike | None = None) -> Published | None:
    path = Path(benchmark) if benchmark else find_benchmark(near)
    if path is None or not path.is_file():
        return None
    return read_benchmark(path).get((algo, env_id))
