"""Checks shared by the networks' dataclass configs (:class:`models.TopKConfig`, :class:`models.SDTConfig`,
:class:`models.LGCNConfig`, :class:`models.PivotGATConfig`): each raises ``ValueError`` naming the config and the
field, e.g. ``SDTConfig.d_model must be a positive integer, got 0``."""
from __future__ import annotations

import math
from dataclasses import MISSING, Field, fields
from typing import Any

__all__ = ["check_choice", "check_config_type", "check_divisible", "check_dropout", "check_flag", "check_integer",
           "check_positive", "check_feature_rank", "config_from_dict"]


def _value(cfg: Any, name: str) -> tuple[str, Any]:
    return f"{type(cfg).__name__}.{name}", getattr(cfg, name)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_integer(cfg: Any, name: str) -> None:
    """``cfg.name`` is an integer (any sign; not a bool)."""
    label, v = _value(cfg, name)
    if not _is_int(v):
        raise ValueError(f"{label} must be an integer, got {v!r}")


def check_feature_rank(cfg: Any) -> None:
    """``cfg.feature_rank`` is an integer >= 0, and 0 unless ``cfg.relational`` (feature tokens hold the whole
    features)."""
    label, v = _value(cfg, "feature_rank")
    if not _is_int(v) or v < 0:
        raise ValueError(f"{label} must be an integer >= 0, got {v!r}")
    if v and not cfg.relational:
        raise ValueError(f"{label} needs relational=True (feature tokens hold the whole features), got {v!r}")


def check_positive(cfg: Any, *names: str) -> None:
    """Every ``cfg.name`` is an integer >= 1."""
    for name in names:
        label, v = _value(cfg, name)
        if not _is_int(v) or v < 1:
            raise ValueError(f"{label} must be a positive integer, got {v!r}")


def check_flag(cfg: Any, *names: str) -> None:
    """Every ``cfg.name`` is ``True`` or ``False``."""
    for name in names:
        label, v = _value(cfg, name)
        if not isinstance(v, bool):
            raise ValueError(f"{label} must be true or false, got {v!r}")


def check_dropout(cfg: Any, name: str = "dropout") -> None:
    """``cfg.name`` is a probability in [0, 1)."""
    label, v = _value(cfg, name)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or not 0.0 <= v < 1.0:
        raise ValueError(f"{label} must be a number in [0, 1), got {v!r}")


def check_choice(cfg: Any, name: str, allowed: tuple[str, ...]) -> None:
    """``cfg.name`` is one of ``allowed``."""
    label, v = _value(cfg, name)
    if v not in allowed:
        raise ValueError(f"{label} must be one of {', '.join(map(repr, allowed))}, got {v!r}")


def check_divisible(cfg: Any, name: str, by: int, why: str) -> None:
    """``cfg.name`` (already checked positive) is a multiple of ``by``; ``why`` says where ``by`` comes from."""
    label, v = _value(cfg, name)
    if v % by:
        raise ValueError(f"{label}={v} must be divisible by {by} ({why})")


def check_config_type(net: Any, config: Any) -> None:
    """``config`` is exactly the ``config_class`` of the network ``net`` is building (``TypeError`` otherwise, with
    the call to write: networks take one dataclass config, not keyword arguments)."""
    expected = type(net).config_class
    if type(config) is not expected:
        raise TypeError(f"{type(net).__name__} takes one {expected.__name__} "
                        f"({type(net).__name__}({expected.__name__}(feat_dim=..., ...))), got {type(config).__name__}")


def config_from_dict(config_class: type, values: Any) -> Any:
    """``config_class(**values)`` for a dict read from a file (a model file's ``config``, a checkpoint's flat
    ``init_args``), after checking its keys: ``ValueError`` for a non-dict, an unknown field or a missing field
    without a default (fields with defaults may be left out: files written before the field existed). The values
    are then checked by the config itself."""
    if not isinstance(values, dict):
        raise ValueError(f"{config_class.__name__} must be a dict of fields, got {type(values).__name__}")
    known = {f.name: f for f in fields(config_class)}
    unknown = sorted(set(values) - set(known), key=str)
    if unknown:
        raise ValueError(f"unknown {config_class.__name__} field(s) {', '.join(map(repr, unknown))}")
    required = [name for name, f in known.items() if name not in values and _required(f)]
    if required:
        raise ValueError(f"{config_class.__name__} field(s) {', '.join(map(repr, required))} missing")
    return config_class(**values)


def _required(f: Field) -> bool:
    return f.default is MISSING and f.default_factory is MISSING
