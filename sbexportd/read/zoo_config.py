"""rl-baselines-zoo's config.yml: the hyperparameters saved beside an agent.

The zoo writes them with yaml.dump of an OrderedDict, so the files carry
`!!python/object/apply:collections.OrderedDict` tags. They are read with a
SafeLoader subclass that understands exactly that tag (and !!python/tuple),
producing plain dicts and lists; any other python/* tag is refused, and so are
YAML aliases (no "billion laughs").
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from sbexportd.errors import ZooConfigError, reason, shown
from sbexportd.read.files import Confine, read_regular

__all__ = ["read_zoo_config", "ZooConfigLoader"]

MAX_CONFIG_BYTES = 1 << 20


class _Refused(Exception):
    pass


class ZooConfigLoader(yaml.SafeLoader):
    """SafeLoader + the two python tags the zoo's config files use."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(f"YAML alias *{event.anchor} at line {event.start_mark.line + 1}; "
                           "aliases are not expected in a zoo config")
        return super().compose_node(parent, index)


def _pairs_to_dict(pairs: Any) -> dict:
    out: dict = {}
    for pair in pairs or []:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise _Refused(f"OrderedDict item {shown(pair, 60)} is not a [key, value] pair")
        key, value = pair
        if isinstance(key, (list, dict)):
            raise _Refused(f"OrderedDict key {shown(key, 60)} is not hashable")
        out[key] = value
    return out


def _construct_ordered_dict(loader: ZooConfigLoader, node: yaml.Node) -> dict:
    if isinstance(node, yaml.SequenceNode):
        args = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        spec = loader.construct_mapping(node, deep=True)
        if set(spec) - {"args"}:
            raise _Refused("OrderedDict tag with keys other than 'args'")
        args = spec.get("args") or []
    else:
        raise _Refused("OrderedDict tag on a scalar")
    if len(args) > 1:
        raise _Refused("OrderedDict tag with more than one argument")
    return _pairs_to_dict(args[0] if args else [])


def _construct_tuple(loader: ZooConfigLoader, node: yaml.Node) -> list:
    if not isinstance(node, yaml.SequenceNode):  # as construct_sequence itself refuses it
        found = getattr(node, "id", "?")
        raise yaml.constructor.ConstructorError(None, None, f"expected a sequence node, but found {found}",
                                                node.start_mark)
    return loader.construct_sequence(node, deep=True)


ZooConfigLoader.add_constructor(
    "tag:yaml.org,2002:python/object/apply:collections.OrderedDict", _construct_ordered_dict)
ZooConfigLoader.add_constructor("tag:yaml.org,2002:python/tuple", _construct_tuple)


def read_zoo_config(path: str | os.PathLike, *, confine: Confine | None = None) -> dict[str, Any]:
    """The hyperparameters in a zoo config.yml (or in <folder>/config.yml) as a dict.

    confine: see sbexportd.read.files (PathNotAllowed before the file is opened)."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.yml"
    source = str(p)
    raw = read_regular(p, MAX_CONFIG_BYTES, what="the zoo's config.yml (a small YAML file of hyperparameters)",
                       error=ZooConfigError, confine=confine,
                       named="the zoo's config.yml beside the model (its normalize and frame_stack decide how the "
                             "agent runs)")
    try:
        text = raw.decode("utf-8")
        loader = ZooConfigLoader(text)
        try:
            doc = loader.get_single_data()
        finally:
            loader.dispose()
    except _Refused as e:
        raise ZooConfigError(f"refused: {e}", source) from e
    except yaml.constructor.ConstructorError as e:
        raise ZooConfigError(
            f"refusing YAML tag {getattr(e, 'problem', e)}: only plain YAML and "
            "!!python/object/apply:collections.OrderedDict are expected", source) from e
    except yaml.MarkedYAMLError as e:  # its str() quotes the offending lines: only say where
        mark = e.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ZooConfigError(f"not a valid YAML config: {e.problem or 'syntax error'}{where}", source) from e
    except UnicodeDecodeError as e:
        raise ZooConfigError("not a valid YAML config: not UTF-8 text", source) from e
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as e:
        raise ZooConfigError(f"not a valid YAML config: {reason(e)}", source) from e
    except OSError as e:
        raise ZooConfigError(f"cannot read the zoo config: {e.strerror or e}", source) from e
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ZooConfigError(f"config holds a {type(doc).__name__}, expected a mapping of "
                             "hyperparameters", source)
    return doc
