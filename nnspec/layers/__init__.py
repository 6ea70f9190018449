"""The layer registry. Each layer type lives in one module, imported here explicitly."""

from __future__ import annotations

from . import activation, dense  # noqa: F401  (each module registers its type)
from .base import LAYERS, LayerSpec, LayerType, register

__all__ = ["LAYERS", "LayerSpec", "LayerType", "register"]
