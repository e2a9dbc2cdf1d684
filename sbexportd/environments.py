"""The environments SB2 agents were trained in, as gymnasium knows them today.

gym's ids moved on after SB2: `successor("Pendulum-v0")` is gymnasium's Pendulum-v1,
with a note where gymnasium's own version history says the dynamics or observations
changed (the notes quote gymnasium's env docstrings). PyBullet environments come from
pybullet_envs_gymnasium, registered when it is installed.

`published(algo, env)` is rl-baselines-zoo's published mean return of an agent
(benchmark.md: `|algo|env_id|mean_reward|std_reward|n_timesteps|n_episodes|`), from a
benchmark.md beside the agent's zoo (or the one given).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

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
