"""What the serving-engine targets (tfserving, triton) share: the model's name in a
model repository, the repository's layout, and the sample request both document."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..conventions import sample_inputs

# Names generic enough that the folder holding the file says more (tests/fixtures/<case>/model.zip).
_GENERIC_STEMS = {"model", "agent", "policy", "best_model"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
VERSION = 1          # the one version a fresh export writes: NAME/1/
EXAMPLE_ROWS = 2     # observations in the documented sample request
EXAMPLE_SEED = 1


def model_name(model) -> str:
    """The agent's name in a model repository: `model.serving_name` when the caller set
    one (the many-agents export does, to keep names unique), else the file's stem,
    prefixed with the algorithm when the stem does not start with it
    (agents/ppo2/CartPole-v1.pkl -> ppo2_CartPole-v1)."""
    given = getattr(model, "serving_name", None)
    if given:
        return safe_name(given)
    path = Path(model.archive.path)
    stem = path.parent.name if path.stem.lower() in _GENERIC_STEMS and path.parent.name else path.stem
    algo = model.spec.algo.lower()
    return safe_name(stem if stem.lower().startswith(algo) else f"{algo}_{stem}")


def safe_name(name: str) -> str:
    """A model name both engines take in a URL path and as a folder name."""
    name = _UNSAFE.sub("_", str(name)).strip("._") or "policy"
    return name[:120]


def model_folders(repository: Path) -> list[Path]:
    """The model folders of a repository (hidden staging folders left out)."""
    return sorted(p for p in repository.iterdir() if p.is_dir() and not p.name.startswith("."))


def version_folders(model_folder: Path) -> list[Path]:
    """NAME/<n>/ folders, by version number (what both engines serve: the latest)."""
    return sorted((p for p in model_folder.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def example_inputs(spec) -> dict[str, np.ndarray]:
    """The observations (state, mask) of the documented sample request: two, or one
    when an observation is large (an image)."""
    rows = EXAMPLE_ROWS if int(np.prod(spec.observation_space.shape)) <= 1024 else 1
    return sample_inputs(spec, rows, EXAMPLE_SEED)


_INNER_LIST = re.compile(r"\[\s+([^\[\]{}]*?)\s+\]")


def dumps(doc) -> str:
    """JSON indented for reading, each innermost list of numbers on one line."""
    return _INNER_LIST.sub(lambda m: "[" + " ".join(m.group(1).split()) + "]", json.dumps(doc, indent=1)) + "\n"
