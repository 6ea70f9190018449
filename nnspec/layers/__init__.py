"""The layer registry. Each layer type lives in one module (a family shares one), imported here explicitly."""

from __future__ import annotations

from . import activation, conv, dense, embedding, merge, norm, pool, shape  # noqa: F401  (each registers its types)
from .base import LAYERS, LayerSpec, LayerType, register

__all__ = ["LAYERS", "LayerSpec", "LayerType", "register"]
