"""Reading SB2 save files: file -> Archive, with nothing from the file imported or run.

    read_model(path)            .zip or legacy .pkl -> Archive
    read_vecnormalize(path)     vecnormalize.pkl / obs_rms.pkl / a folder -> VecNormalizeStats
    find_vecnormalize(model)    the zoo's statistics file for a model, or None
    read_zoo_config(path)       the zoo's config.yml -> dict
    zoo_settings(model)         what the zoo's enjoy.py wrapped around the agent (VecNormalize, frame stack)
    zoo_sidecars(model), statistics_sidecars(stats)
                                the files beside them those decisions read, present or not

Pickled objects come back as inert stand-ins: see `sbexportd.read.standins`.
"""
from sbexportd.read.archive import Archive, VecNormalizeStats
from sbexportd.read.model import read_model, sniff
from sbexportd.read.safe_pickle import safe_loads
from sbexportd.read.sb2zip import Limits
from sbexportd.read.standins import (
    EMPTY_CELL,
    InertCell,
    InertCode,
    InertDescriptor,
    InertFunction,
    InertModule,
    InertObject,
    StandIn,
    is_standin,
    is_standin_class,
    qualified_name,
)
from sbexportd.read.vecnormalize import (
    find_vecnormalize,
    read_vecnormalize,
    statistics_sidecars,
    vecnormalize_kwargs,
)
from sbexportd.read.zoo_config import read_zoo_config
from sbexportd.read.zoo_settings import ZooSettings, zoo_settings, zoo_sidecars

__all__ = [
    "Archive", "VecNormalizeStats", "Limits", "read_model", "read_vecnormalize",
    "find_vecnormalize", "read_zoo_config", "vecnormalize_kwargs", "ZooSettings", "zoo_settings", "safe_loads", "sniff",
    "statistics_sidecars", "zoo_sidecars",
    "StandIn", "is_standin", "is_standin_class", "qualified_name", "InertFunction",
    "InertCode", "InertCell", "InertModule", "InertDescriptor", "InertObject", "EMPTY_CELL",
]
