"""Shared by the convolution and pooling families: fields given per spatial axis, padding, and the one rule for
where a sliding window goes and how many outputs it makes.

Channels first: a layer of rank r reads a per-sample [C, *spatial] value with r spatial axes ([C, L] or
[C, H, W]). Axis numbers in messages count the batch as axis 0 (ONNX and PyTorch), so spatial axis i is axis
i + 2. Padding is resolved to explicit begins and ends here, "same" included, so that the ONNX model carries
explicit `pads` and never `auto_pad`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import as_strided
from pydantic import PlainValidator, WithJsonSchema, model_validator

from ..errors import SpecError, suggest
from ..fields import kind_of, spec_error
from ..ir import Shape, Source
from ..lifting import OnnxNode, Unliftable, int_list
from .base import LayerSpec

PADDING_NAMES = ("valid", "same")


INT64_MAX = 2**63 - 1  # ONNX attributes (kernel_shape, strides, pads, dilations) are int64


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _found(value: Any) -> str:
    """A found value as written: `'3'`, `3.5`, or its kind."""
    return repr(value) if isinstance(value, str | float) else kind_of(value)


def _int_or_list(value: Any) -> int | list[int]:
    """An integer, or a non-empty list of integers (their count and range are checked against the rank)."""
    if _is_int(value):
        return value
    if isinstance(value, list) and value:
        for i, item in enumerate(value):
            if not _is_int(item):
                raise spec_error(f"expected an integer, found {_found(item)}", i)
        return value
    found = "an empty list" if value == [] else _found(value)
    raise spec_error(f"expected an integer or a list of integers, one per spatial axis, found {found}")


def _padding(value: Any) -> str | int | list[int]:
    if isinstance(value, str):
        if value not in PADDING_NAMES:
            raise spec_error(
                f'expected "valid", "same" or numbers (one per spatial axis, or the begins then the ends), '
                f"found {value!r}{suggest(value, PADDING_NAMES)}"
            )
        return value
    return _int_or_list(value)


_INTS_SCHEMA = {"type": "array", "items": {"type": "integer"}, "minItems": 1}
PerAxis = Annotated[
    int | list[int],
    PlainValidator(_int_or_list),
    WithJsonSchema(
        {
            "description": "an integer for every spatial axis, or a list with one per spatial axis",
            "anyOf": [{"type": "integer", "minimum": 1}, _INTS_SCHEMA],
        }
    ),
]
Padding = Annotated[
    str | int | list[int],
    PlainValidator(_padding),
    WithJsonSchema(
        {
            "description": '"valid" (none), "same" (output = ceil(input / stride), the extra at the end), or '
            "numbers: one per spatial axis for both sides, or the begins then the ends (ONNX pads)",
            "anyOf": [{"enum": list(PADDING_NAMES)}, {"type": "integer", "minimum": 0}, _INTS_SCHEMA],
        }
    ),
]


def spatial_names(rank: int) -> tuple[str, ...]:
    """`L` for 1-D, `H, W` for 2-D."""
    return {1: ("L",), 2: ("H", "W")}.get(rank) or tuple(f"D{i}" for i in range(rank))


def axis_label(i: int, rank: int) -> str:
    """Spatial axis i as users see it, the batch counted as axis 0: `axis 2 (H)`."""
    return f"axis {i + 2} ({spatial_names(rank)[i]})"


@dataclass(frozen=True)
class Window:
    """Where a window slides along each spatial axis: its size, steps, dilations and explicit padding."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    begins: tuple[int, ...]
    ends: tuple[int, ...]
    ceil_mode: bool = False

    @property
    def rank(self) -> int:
        return len(self.kernel)

    @property
    def extent(self) -> tuple[int, ...]:
        """The dilated kernel: how many input positions one window spans, dilation * (k - 1) + 1."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilations, strict=True))

    def output_shape(self, spatial: Sequence[int]) -> Shape:
        """out = floor_or_ceil((in + begin + end - dilation * (k - 1) - 1) / stride) + 1, per spatial axis."""
        axes = zip(spatial, self.extent, self.strides, self.begins, self.ends, strict=True)
        if self.ceil_mode:
            return tuple(-(-(size + b + e - extent) // s) + 1 for size, extent, s, b, e in axes)
        return tuple((size + b + e - extent) // s + 1 for size, extent, s, b, e in axes)

    def scratch(self, channels: int, spatial: Sequence[int]) -> int:
        """Numbers per sample the kernels hold: the padded input, and every window gathered (im2col)."""
        padded = math.prod(size + b + e for size, b, e in zip(spatial, self.begins, self.ends, strict=True))
        return channels * (padded + math.prod(self.kernel) * math.prod(self.output_shape(spatial)))

    def attrs(self) -> dict[str, Any]:
        """The ONNX attributes (JSON-serializable), explicit pads as begins then ends."""
        return {
            "kernel_shape": list(self.kernel),
            "strides": list(self.strides),
            "dilations": list(self.dilations),
            "pads": [*self.begins, *self.ends],
            "ceil_mode": int(self.ceil_mode),
        }

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> Window:
        rank = len(attrs["kernel_shape"])
        pads = tuple(attrs["pads"])
        return cls(
            tuple(attrs["kernel_shape"]),
            tuple(attrs["strides"]),
            tuple(attrs["dilations"]),
            pads[:rank],
            pads[rank:],
            bool(attrs["ceil_mode"]),
        )

    def view(self, x: np.ndarray, fill: float) -> np.ndarray:
        """Every window of x [N, C, *spatial] as a read-only strided view [N, C, *out, *kernel]; x is padded
        once, with `fill`, as far as the windows read (in ceil mode the last one may reach past `ends`)."""
        n, c, *spatial = x.shape
        out = self.output_shape(spatial)
        axes = zip(spatial, out, self.extent, self.strides, self.begins, strict=True)
        ends = [max((o - 1) * s + extent - b - size, 0) for size, o, extent, s, b in axes]
        if any(self.begins) or any(ends):  # np.pad costs ten times this on small arrays
            sizes = (b + size + e for b, size, e in zip(self.begins, spatial, ends, strict=True))
            padded = np.full((n, c, *sizes), fill, dtype=x.dtype)
            padded[(..., *(slice(b, b + size) for b, size in zip(self.begins, spatial, strict=True)))] = x
            x = padded
        sn, sc, *steps = x.strides
        # NOTE: along an axis with one window the stride is never taken; it may be far beyond the array
        # (strides of 2**61 are valid), so it is not multiplied into a byte stride that would overflow.
        strides = (
            sn,
            sc,
            *(step * (s if o > 1 else 1) for step, s, o in zip(steps, self.strides, out, strict=True)),
            *(step * d for step, d in zip(steps, self.dilations, strict=True)),
        )
        return as_strided(x, (n, c, *out, *self.kernel), strides, writeable=False)

    def unview(self, windows: np.ndarray, spatial: Sequence[int]) -> np.ndarray:
        """The adjoint of `view`, for backpropagation: [N, C, *out, *kernel] gradients of the windows summed back
        into the [N, C, *spatial] input positions they read (what fell on padding is dropped). One strided
        add per kernel tap."""
        n, c = windows.shape[:2]
        out = self.output_shape(spatial)
        axes = zip(spatial, out, self.extent, self.strides, self.begins, strict=True)
        ends = [max((o - 1) * s + extent - b - size, 0) for size, o, extent, s, b in axes]
        sizes = [b + size + e for b, size, e in zip(self.begins, spatial, ends, strict=True)]
        padded = np.zeros((n, c, *sizes), dtype=windows.dtype)
        for tap in np.ndindex(*self.kernel):
            where = tuple(
                slice(t * d, t * d + (o - 1) * s + 1, s)
                for t, d, o, s in zip(tap, self.dilations, out, self.strides, strict=True)
            )
            padded[(..., *where)] += windows[(..., *tap)]
        return padded[(..., *(slice(b, b + size) for b, size in zip(self.begins, spatial, strict=True)))]

    def taps(self, x: np.ndarray, fill: float) -> np.ndarray:
        """[prod(kernel), N, C, *out]: the windows' positions first, in one contiguous copy of `view`. A reduction
        over axis 0 of this runs at array speed; over the trailing window axes of the view, 15-20x slower."""
        windows = self.view(x, fill)
        firsts = tuple(range(self.rank))
        moved = np.moveaxis(windows, tuple(range(-self.rank, 0)), firsts)
        return np.ascontiguousarray(moved).reshape(-1, *windows.shape[: -self.rank])

    def counts(self, spatial: Sequence[int], include_pad: bool) -> np.ndarray:
        """[*out]: how many positions of each window an average divides by (dilation 1): the input's own, or,
        with `include_pad`, the explicit padding's too (never what ceil mode reads past it, as onnxruntime)."""
        total = np.ones(())
        for size, o, k, s, b, e in zip(
            spatial, self.output_shape(spatial), self.kernel, self.strides, self.begins, self.ends, strict=True
        ):
            start = np.arange(o) * s - b
            low, high = (-b, size + e) if include_pad else (0, size)
            per_axis = np.minimum(start + k, high) - np.maximum(start, low)
            total = np.multiply.outer(total, per_axis)
        return total.astype(np.float64)


class WindowSpec(LayerSpec):
    """A layer that slides a window over the spatial axes of a channels-first input: conv and pools."""

    rank: ClassVar[int]
    kernel_field: ClassVar[str]  # "kernel_size" or "pool_size": where a window that does not fit is reported
    per_axis_fields: ClassVar[tuple[str, ...]]  # int-or-list fields, each entry >= 1

    padding: Padding = "valid"

    @model_validator(mode="after")
    def _one_entry_per_axis(self) -> WindowSpec:
        for name in self.per_axis_fields:
            value = getattr(self, name)
            if value is not None:
                self._entries(value, name, least=1, counts=(self.rank,))
        if not isinstance(self.padding, str):
            self._entries(self.padding, "padding", least=0, counts=(self.rank, 2 * self.rank))
        return self

    def _entries(self, value: int | list[int], name: str, *, least: int, counts: tuple[int, ...]) -> None:
        """Refuse a list with the wrong number of entries, or an entry below `least` (as validation errors)."""
        entries = [value] if isinstance(value, int) else value
        if isinstance(value, list) and len(value) not in counts:
            spatial = ", ".join(spatial_names(self.rank))
            expected = f"{self.rank} entries (one per spatial axis: {spatial})" if self.rank > 1 else "1 entry"
            if len(counts) > 1:
                expected += f", or {counts[1]} (the begins, then the ends, as ONNX pads)"
            raise spec_error(f"expected {expected} for {self.type}, found {len(value)}: {value}", name)
        for i, item in enumerate(entries):
            at = (i,) if isinstance(value, list) else ()
            if item < least:
                raise spec_error(f"expected an integer >= {least}, found {item}", name, *at)
            if item > INT64_MAX:
                raise spec_error(
                    f"expected an integer <= {INT64_MAX} (ONNX stores it as int64), found {item}", name, *at
                )

    def per_axis(self, value: int | list[int]) -> tuple[int, ...]:
        """A validated int-or-list field as one entry per spatial axis."""
        return (value,) * self.rank if isinstance(value, int) else tuple(value)

    def split_input(self, src: Source) -> tuple[int, Shape]:
        """(channels, spatial shape) of a [C, *spatial] source; refuses a source of another rank."""
        if len(src.shape) != self.rank + 1:
            layout = "[C, " + ", ".join(spatial_names(self.rank)) + "]"
            raise SpecError(
                f"expected a per-sample {layout} input for {self.type} (channels first, {self.rank + 1} axes), "
                f"found {src.describe()} of shape {list(src.shape)}",
                ("inputs", 0) if self.inputs is not None else (),
            )
        return src.shape[0], src.shape[1:]

    def window(
        self,
        spatial: Shape,
        kernel: tuple[int, ...],
        strides: tuple[int, ...],
        dilations: tuple[int, ...],
        ceil_mode: bool = False,
    ) -> Window:
        """The window over `spatial`, its padding made explicit; refuses one that does not fit."""
        if self.padding == "valid":
            begins = ends = (0,) * self.rank
        elif self.padding == "same":
            begins, ends = self._same(spatial, kernel, strides, dilations)
        else:
            pads = self.per_axis(self.padding)
            begins, ends = (pads, pads) if len(pads) == self.rank else (pads[: self.rank], pads[self.rank :])
        window = Window(kernel, strides, dilations, begins, ends, ceil_mode)
        for i, (size, k, extent, b, e) in enumerate(zip(spatial, kernel, window.extent, begins, ends, strict=True)):
            if extent > size + b + e:
                what = f"the dilated {self.kernel_field} ({dilations[i]} x ({k} - 1) + 1 = {extent})"
                raise SpecError(
                    f"expected {what if extent != k else self.kernel_field} <= the padded input "
                    f"({size} + {b} + {e} = {size + b + e}) along {axis_label(i, self.rank)}, found {extent}",
                    (self.kernel_field,),
                )
        if ceil_mode:
            self._check_ceil(window, spatial)
        return window

    def _same(
        self, spatial: Shape, kernel: tuple[int, ...], strides: tuple[int, ...], dilations: tuple[int, ...]
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """ONNX SAME_UPPER (TensorFlow's "same"): out = ceil(in / stride), the odd pad at the end."""
        totals = [
            max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
            for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True)
        ]
        return tuple(t // 2 for t in totals), tuple(t - t // 2 for t in totals)

    def _check_ceil(self, window: Window, spatial: Shape) -> None:
        """Refuse a ceil-mode window that would start in the end padding.

        PyTorch and onnxruntime drop such a window; ONNX's own shape rule keeps it before opset 22 and drops
        it from 22 on, so the output's length would depend on the opset (and onnxruntime's kernel would
        disagree with the model's declared shape). A window that starts inside the input or the begin
        padding and runs past the end is kept by all of them, and reads only what is there.
        """
        out = window.output_shape(spatial)
        for i, (size, o, s, b) in enumerate(zip(spatial, out, window.strides, window.begins, strict=True)):
            start = (o - 1) * s - b
            if start >= size:
                raise SpecError(
                    f"expected every window to start inside the input or its begin padding, found ceil_mode's last "
                    f"window along {axis_label(i, self.rank)} starting at position {start}, in the end padding (the "
                    f"input's last position is {size - 1}): "
                    "onnxruntime and PyTorch drop such a window, ONNX before opset 22 keeps it; lower the end "
                    "padding or set ceil_mode to false",
                    ("ceil_mode",),
                )


# --- import ----------------------------------------------------------------------------------------


def compact(values: Sequence[int]) -> int | list[int]:
    """One number when every axis has the same, else the list (as a reviewer would write it)."""
    return int(values[0]) if len(set(values)) == 1 else [int(v) for v in values]


def lift_window(node: OnnxNode, rank: int) -> dict[str, Any]:
    """`strides` and `padding` spec fields from a Conv or pool node's attributes (ONNX's defaults filled)."""
    auto = node.attrs.get("auto_pad", "NOTSET")
    strides = int_list(node.attrs.get("strides") or [1] * rank)
    pads = int_list(node.attrs.get("pads") or [0] * (2 * rank))
    if auto in ("NOTSET", ""):
        begins, ends = pads[:rank], pads[rank:]
        padding: str | int | list[int] = "valid" if not any(pads) else compact(begins) if begins == ends else pads
    elif auto == "VALID":
        padding = "valid"
    elif auto == "SAME_UPPER":
        padding = "same"
    else:
        raise Unliftable(f"auto_pad={auto} (the format's 'same' is SAME_UPPER: the odd pad at the end)")
    return {"strides": compact(strides), "padding": padding}
