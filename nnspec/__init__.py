"""nnspec: a network written down once as data, compiled to ONNX, and proven to compute what was written."""

from __future__ import annotations

from ._version import __version__
from .api import check, from_dict, graph, import_onnx, load, to_numpy, to_onnx
from .errors import InputDataError, LimitError, NNSpecError, SpecError, WeightError
from .evaluator import NumpyModel
from .harness import Report, Tolerance
from .limits import Limits
from .spec import FORMAT, Spec

__all__ = [
    "FORMAT",
    "InputDataError",
    "LimitError",
    "Limits",
    "NNSpecError",
    "NumpyModel",
    "Report",
    "Spec",
    "SpecError",
    "Tolerance",
    "WeightError",
    "__version__",
    "check",
    "from_dict",
    "graph",
    "import_onnx",
    "load",
    "to_numpy",
    "to_onnx",
]
