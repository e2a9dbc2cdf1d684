"""The fixtures older SB2 releases saved (tools/legacy/make_era_fixtures.py): every on-disk
format era is there, and the reader gets each file's raw parameters as that release wrote
them. Their parity with the release's own answers is in test_parity_fixtures.py."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import fixture_cases, load_meta
from sbexportd.read import read_model

ERA_CASES = [(name, d, load_meta(d)) for name, d in fixture_cases() if "era" in load_meta(d)]
# What changed on disk, in release order (tools/legacy/README.md, "On-disk format eras").
ERAS = ("pkl-list", "pkl-list-kwargs", "pkl-list-obsrms", "pkl-dict", "zip")


def test_every_era_has_the_ddpg_case():
    """DDPG with layer_norm, normalize_observations and param_noise together, in every era."""
    have = {meta["era"]["name"]: meta for _, _, meta in ERA_CASES if meta["algo"] == "ddpg"}
    assert sorted(have) == sorted(ERAS), "run `make fixtures-eras` (tools/legacy/README.md)"
    for meta in have.values():
        kw = meta["algo_kwargs"]
        assert meta["policy"] == "LnMlpPolicy"
        assert kw["normalize_observations"] == "True" and kw["param_noise"].startswith("AdaptiveParamNoiseSpec")


@pytest.mark.parametrize("case", ERA_CASES, ids=[n for n, _, _ in ERA_CASES])
def test_reader_gets_the_saved_parameters(case):
    """An unnamed list comes back in its order, each array shaped like the variable SB2
    saved there (meta.json "saved_params", recorded by the saving release); a named file
    comes back with SB2's names in SB2's order."""
    _, folder, meta = case
    (fmt,) = meta["formats"]
    archive = read_model(folder / f"model.{fmt}")
    saved = meta["saved_params"]
    assert len(archive.params) == saved["count"]
    if saved["layout"][fmt] == "list":
        assert archive.data.get("_params_unnamed") is True
        shapes = [list(np.shape(v)) for v in archive.params.values()]
        assert shapes == [meta["params"][name] for name in saved["names"]]
    else:
        assert list(archive.params) == list(meta["params"])
        assert {k: list(np.shape(v)) for k, v in archive.params.items()} == meta["params"]
