"""param_str parsing: strict JSON into typed, frozen per-layer configs.

Every layer's param_str is a JSON object. Unknown keys, wrong types and out-of-range values raise
:class:`ParamError` naming the layer, the key and what is allowed. Never eval, never YAML.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Optional, Tuple


class ParamError(ValueError):
    """A bad param_str (or bad layer input) for a pygeometry layer."""


def _positive(v):
    return v > 0


@dataclasses.dataclass(frozen=True)
class SE3GeneratorConfig:
    translation: str = "direct"
    CHOICES = {"translation": ("direct", "se3_exp")}


@dataclasses.dataclass(frozen=True)
class Transform3DGridConfig:
    K: Optional[Tuple[float, float, float, float]] = None


@dataclasses.dataclass(frozen=True)
class PinholeProjectionConfig:
    K: Optional[Tuple[float, float, float, float]] = None
    output: str = "coords"
    eps: float = 1e-3
    CHOICES = {"output": ("coords", "flow")}
    CHECKS = {"eps": (_positive, "a number > 0")}


@dataclasses.dataclass(frozen=True)
class BilinearWarpConfig:
    input: str = "coords"
    padding: str = "zeros"
    CHOICES = {"input": ("coords", "flow"), "padding": ("zeros", "border")}


@dataclasses.dataclass(frozen=True)
class PhotometricLossConfig:
    alpha: float = 0.0
    CHECKS = {"alpha": (lambda v: 0 <= v <= 1, "a number in [0, 1]")}


@dataclasses.dataclass(frozen=True)
class RandomMirrorConfig:
    probability: float = 0.5
    seed: int = 0
    CHECKS = {"probability": (lambda v: 0 <= v <= 1, "a number in [0, 1]"), "seed": (lambda v: v >= 0, "an integer >= 0")}


@dataclasses.dataclass(frozen=True)
class RandomReverseConfig:
    probability: float = 0.5
    seed: int = 0
    CHECKS = {"probability": (lambda v: 0 <= v <= 1, "a number in [0, 1]"), "seed": (lambda v: v >= 0, "an integer >= 0")}


@dataclasses.dataclass(frozen=True)
class RandomColourConfig:
    gain: float = 0.2
    seed: int = 0
    CHECKS = {"gain": (lambda v: 0 <= v < 1, "a number in [0, 1)"), "seed": (lambda v: v >= 0, "an integer >= 0")}


@dataclasses.dataclass(frozen=True)
class MinReprojectionLossConfig:
    sources: int = 2
    automask: bool = True
    alpha: float = 0.85
    CHECKS = {"sources": (lambda v: 1 <= v <= 16, "an integer in [1, 16]"),
              "alpha": (lambda v: 0 <= v <= 1, "a number in [0, 1]")}


@dataclasses.dataclass(frozen=True)
class CorrelationConfig:
    max_displacement: int = 4
    CHECKS = {"max_displacement": (lambda v: 0 <= v <= 32, "an integer in [0, 32]")}


@dataclasses.dataclass(frozen=True)
class EdgeAwareSmoothnessConfig:
    pass


def check_K(layer: str, K, where: str = "param_str key 'K'"):
    """Validate intrinsics [fx, fy, cx, cy]: 4 finite numbers, fx > 0 and fy > 0."""
    if not isinstance(K, (list, tuple)) or len(K) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in K):
        raise ParamError(f"{layer}: {where} must be a list of 4 numbers [fx, fy, cx, cy], got {K!r}")
    if not all(math.isfinite(v) for v in K):
        raise ParamError(f"{layer}: {where} must be finite, got {K!r}")
    if K[0] <= 0 or K[1] <= 0:
        raise ParamError(f"{layer}: {where} needs focal lengths fx > 0 and fy > 0, got {K!r}")
    return tuple(float(v) for v in K)


def parse_param_str(layer: str, param_str: str, config_cls):
    """Parse a layer's param_str (JSON object, may be empty) into a frozen ``config_cls`` instance."""
    text = (param_str or "").strip()
    try:
        raw = json.loads(text) if text else {}
    except json.JSONDecodeError as e:
        raise ParamError(f"{layer}: param_str is not valid JSON ({e.msg} at position {e.pos}): {text!r}") from None
    if not isinstance(raw, dict):
        raise ParamError(f"{layer}: param_str must be a JSON object like {{\"key\": value}}, got {text!r}")
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    choices = getattr(config_cls, "CHOICES", {})
    checks = getattr(config_cls, "CHECKS", {})
    values = {}
    for key, value in raw.items():
        if key not in fields:
            raise ParamError(f"{layer}: unknown param_str key {key!r}; allowed keys: {sorted(fields)}")
        default = fields[key].default
        if key == "K":
            values[key] = check_K(layer, value)
        elif key in choices:
            if value not in choices[key]:
                raise ParamError(f"{layer}: param_str key {key!r} must be one of {list(choices[key])}, got {value!r}")
            values[key] = value
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ParamError(f"{layer}: param_str key {key!r} must be true or false, got {value!r}")
            values[key] = value
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ParamError(f"{layer}: param_str key {key!r} must be an integer, got {value!r}")
            values[key] = value
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ParamError(f"{layer}: param_str key {key!r} must be a finite number, got {value!r}")
            values[key] = float(value)
        else:  # pragma: no cover - every field is covered above
            values[key] = value
        if key in checks and not checks[key][0](values[key]):
            raise ParamError(f"{layer}: param_str key {key!r} must be {checks[key][1]}, got {value!r}")
    return config_cls(**values)
