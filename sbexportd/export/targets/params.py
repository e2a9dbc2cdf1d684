"""`params`: the raw weights by SB2 name (SB2's "manual export"), three encodings, and
the spec in JSON so the weights can be wired by hand."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...params import dump
from .portable import spec_document


def write(model, folder: Path) -> None:
    params = model.archive.params
    for suffix in (".npz", ".json", ".msgpack"):
        dump(params, folder / f"params{suffix}")
    (folder / "spec.json").write_text(json.dumps(spec_document(model.spec), indent=1) + "\n")


def load(folder: Path, spec):
    """Check the weights by rebuilding the policy from params.npz + spec.json."""
    from ...realize.numpy_backend import NumpyPolicy
    from .portable import spec_from_document

    doc = json.loads((folder / "spec.json").read_text())
    with np.load(folder / "params.npz", allow_pickle=False) as npz:
        weights = {k: npz[k] for k in npz.files}
    consts = {k: np.asarray(v["data"], v["dtype"]).reshape(v["shape"]) for k, v in doc["constants"].items()}
    policy = NumpyPolicy(spec_from_document(doc, {**weights, **consts}))
    return _runner(policy, doc["outputs"]), "numpy (params.npz + spec.json)"


def _runner(policy, outputs):
    def run(feeds):
        env = policy.forward(feeds["obs"], feeds.get("state"), feeds.get("mask"))
        return {name: env[tensor] for name, tensor in outputs.items()}
    return run
