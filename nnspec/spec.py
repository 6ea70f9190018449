"""The `nnspec/1` spec format: pydantic models, JSON reading, and errors that name the place."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import orjson
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from . import jsontext
from .errors import SpecError, SpecErrors, missing, suggest, unknown
from .fields import Name, StrictModel, holds_weights, kind_of, spec_error
from .layers import LAYERS
from .limits import Limits, human_bytes

FORMAT = "nnspec/1"
_FORMAT_RE = re.compile(r"^nnspec/(\d+)(?:\.(\d+))?$")
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")
_SPECIAL_RE = re.compile(r"-?(?:NaN|Infinity)")
# An ONNX name in `onnx_names` is at most this long: exporters' names run to a few hundred characters
# (TensorFlow scope paths such as 'model/dense_2/BiasAdd/ReadVariableOp:0'), and every message that
# quotes a name stays readable.
ONNX_NAME_MAX = 1024

# One member per registered layer type, told apart by its "type" tag.
Layer = Annotated[Union[tuple(t.spec for t in LAYERS.values())], Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007


class OutputTolerance(StrictModel):
    """A flat tolerance for one output, replacing the derived bound: |a - b| <= atol + rtol |b|."""

    rtol: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    atol: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0


class InputSpec(StrictModel):
    """A network input; `shape` is per sample, and a batch dimension N is always added in front."""

    name: Name
    shape: list[Annotated[int, Field(ge=1)]] = Field(min_length=1, description="per-sample shape, e.g. [2]")
    dtype: Literal["int64", "int32", "float32", "float64"] | None = Field(
        None, description="int64 or int32 for integer inputs such as token ids; default: the network's dtype"
    )


# A spec may name the JSON Schema it follows (the output of `nnspec schema`), so that editors validate and complete
# it; nnspec reads nothing from it, and it is not part of the network (its sha256 ignores it).
SCHEMA_KEY = "$schema"


def _schema_key_in_schema(schema: dict[str, Any]) -> None:
    schema.setdefault("properties", {})[SCHEMA_KEY] = {
        "type": "string",
        "description": "the JSON Schema this spec follows (`nnspec schema > nnspec.schema.json`); ignored by nnspec",
    }


class Spec(StrictModel):
    """A whole network: inputs, layers run in order, and the outputs to expose."""

    model_config = {**StrictModel.model_config, "json_schema_extra": _schema_key_in_schema}

    format: str = Field(description=f'must be "{FORMAT}"')
    name: Name
    description: str | None = None
    dtype: str = Field("float32", description='"float32" or "float64", for the whole network')
    inputs: list[InputSpec] = Field(min_length=1)
    layers: list[Layer] = Field(min_length=1)  # type: ignore[valid-type]
    outputs: list[Name] | None = Field(None, min_length=1, description="layer names; default: the last layer")
    tolerance: dict[str, OutputTolerance] | None = Field(
        None, description="per output name, a flat tolerance for the cross-check instead of the derived bound"
    )
    onnx_names: dict[str, Annotated[str, Field(min_length=1, max_length=ONNX_NAME_MAX)]] | None = Field(
        None,
        description="per input or output name, its name in the ONNX model the spec was imported from "
        "(e.g. 'onnx::Gemm_0'), used by `nnspec check --onnx`; a fresh export uses the spec's names",
    )

    _base_dir: Path | None = PrivateAttr(default=None)
    _source: str | None = PrivateAttr(default=None)
    _graph: Any = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:  # StrictModel's, with "$schema" allowed and dropped
        if isinstance(data, dict) and SCHEMA_KEY in data:
            if not isinstance(data[SCHEMA_KEY], str):
                raise spec_error(
                    f"expected a string (the address of nnspec's JSON Schema), found {kind_of(data[SCHEMA_KEY])}",
                    SCHEMA_KEY,
                )
            data = {key: value for key, value in data.items() if key != SCHEMA_KEY}
        return super()._known_keys(data)

    @field_validator("format", mode="plain")
    @classmethod
    def _format(cls, value: Any) -> str:
        if value == FORMAT:
            return value
        match = _FORMAT_RE.match(value) if isinstance(value, str) else None
        if match and (int(match[1]) > 1 or match[2]):
            raise spec_error(
                f"expected {FORMAT!r}, found {value!r}, a newer version of the format (upgrade nnspec to read it)"
            )
        raise spec_error(f"expected {FORMAT!r}, found {value!r}")

    @field_validator("dtype", mode="plain")
    @classmethod
    def _dtype(cls, value: Any) -> str:
        if value in ("float32", "float64"):
            return value
        hint = suggest(value, ["float32", "float64"]) if isinstance(value, str) else ""
        raise spec_error(f"expected 'float32' or 'float64', found {value!r}{hint}")

    @field_validator("onnx_names", mode="before")
    @classmethod
    def _onnx_names(cls, value: Any) -> Any:
        """Each ONNX name a non-empty string of at most ONNX_NAME_MAX characters (the keys: see build_graph)."""
        if not isinstance(value, dict):
            return value
        for key, name in value.items():
            if not isinstance(name, str):
                raise spec_error(f"expected the value's name in the ONNX model (a string), found {kind_of(name)}", key)
            if not 1 <= len(name) <= ONNX_NAME_MAX:
                raise spec_error(
                    f"expected a name of 1 to {ONNX_NAME_MAX} characters, found "
                    + (repr(name) if not name else f"{len(name):,} characters"),
                    key,
                )
        return value

    @field_validator("layers", mode="before")
    @classmethod
    def _layer_types(cls, value: Any) -> Any:
        """Check each layer's `type` first, so an unknown type gets one clear message."""
        if not isinstance(value, list):
            return value
        known = sorted(LAYERS)
        for i, layer in enumerate(value):
            if not isinstance(layer, dict):
                raise spec_error(f"expected a layer object, found {kind_of(layer)}", i)
            tag = layer.get("type")
            if tag is None:
                raise spec_error(missing("type", f"every layer has one: {', '.join(known)}"), i, "type")
            if not isinstance(tag, str):
                raise spec_error(f"expected a layer type ({', '.join(known)}), found {kind_of(tag)}", i, "type")
            if tag not in LAYERS:
                raise spec_error(unknown("layer type", tag, known), i, "type")
        return value

    @property
    def base_dir(self) -> Path | None:
        """The folder that weight files are resolved in (and confined to)."""
        return self._base_dir

    @property
    def source(self) -> str | None:
        return self._source

    def to_json(self) -> str:
        """The spec as JSON text (inline weights written out as nested lists)."""
        return self.model_dump_json(indent=2, exclude_none=True)


# --- reading -----------------------------------------------------------------------------------


def _clean_loc(loc: tuple[str | int, ...]) -> list[str | int]:
    """Drop the discriminator tag pydantic puts after `layers[i]`."""
    out: list[str | int] = []
    for i, part in enumerate(loc):
        if i >= 2 and loc[0] == "layers" and i == 2 and isinstance(loc[1], int) and part in LAYERS:
            continue
        out.append(part)
    return out


def _found(value: Any) -> str:
    """A found value as it was written in JSON: `'3'`, `3.5`, `true`, `null`, or its kind."""
    if isinstance(value, bool) or value is None:
        return orjson.dumps(value).decode()
    text = repr(value) if isinstance(value, str | int | float) else kind_of(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(error: Any) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "missing":
        return missing(str(error["loc"][-1]))
    if kind == "greater_than_equal":
        what = "an integer" if isinstance(ctx["ge"], int) else "a number"
        return f"expected {what} >= {ctx['ge']}, found {_found(value)}"
    if kind == "too_short":
        return f"expected at least {ctx['min_length']} item(s), found {ctx.get('actual_length', 0)}"
    if kind in ("int_type", "int_from_float"):
        return f"expected an integer, found {_found(value)}"
    if kind == "string_type":
        return f"expected a string, found {_found(value)}"
    if kind == "list_type":
        return f"expected a list, found {_found(value)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected an object, found {_found(value)}"
    if kind == "extra_forbidden":
        return "unknown key"
    message = str(error["msg"])
    message = re.sub(r"^Input should be", "expected", message)
    return f"{message}, found {_found(value)}"


def errors_from(exc: ValidationError, source: str | None = None) -> SpecErrors:
    """Turn pydantic's errors into nnspec's: a spec path, what was expected, what was found."""
    out: list[SpecError] = []
    seen: set[str] = set()
    for error in exc.errors(include_url=False):
        loc = _clean_loc(tuple(error["loc"]))
        if error["type"] == "nnspec":
            loc += error["ctx"]["subloc"]
            message = error["ctx"]["message"]
        else:
            message = _message(error)
        item = SpecError(message, loc)
        if str(item) not in seen:
            seen.add(str(item))
            out.append(item)
    return SpecErrors(out, source=source)


# Per layer type, the fields that hold weights: where `read_spec` reads large inline numbers as arrays.
_WEIGHT_FIELDS = {
    name: {k for k, info in t.spec.model_fields.items() if holds_weights(info)} for name, t in LAYERS.items()
}


def _inline_weights_at(root: Any, path: tuple[str | int, ...]) -> bool:
    """Whether `path` leads to a weight field of a layer (`layers[1].weights`)."""
    if len(path) != 3 or path[0] != "layers" or not isinstance(path[2], str):
        return False
    kind = root["layers"][path[1]].get("type")
    return isinstance(kind, str) and path[2] in _WEIGHT_FIELDS.get(kind, ())


def parse_json(
    text: bytes | str, source: str | None = None, limits: Limits | None = None, *, inline_arrays: bool = False
) -> Any:
    """Parse JSON, explaining where it is malformed; refuses NaN and Infinity, duplicate keys, and texts
    with more values or deeper nesting than `limits` allow (checked before parsing). With `inline_arrays`,
    large inline weights come back as float64 arrays rather than nested lists (see `jsontext.parse`)."""
    data = text.encode() if isinstance(text, str) else text
    try:
        return jsontext.parse(data, limits or Limits.from_env(), _inline_weights_at if inline_arrays else None)
    except jsontext.Refused as exc:
        raise SpecError(str(exc.problem), source=source) from None
    except orjson.JSONDecodeError as exc:
        if "memory" in exc.msg.lower():  # orjson reports running out of memory as a decode error
            raise SpecError(
                f"expected a JSON text that fits in memory, found one of {len(data):,} bytes that does not "
                "(lower NNSPEC_MAX_JSON_VALUES or NNSPEC_MAX_SPEC_BYTES to refuse such texts before parsing)",
                source=source,
            ) from None
        raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        if not raw.strip():
            raise SpecError("malformed JSON: expected a JSON object, found an empty file", source=source) from None
        rest = raw[exc.pos :]
        number = _NUMBER_RE.match(rest)
        special = _SPECIAL_RE.match(raw[exc.pos - 1 :] if raw[exc.pos - 1 : exc.pos] == "-" else rest)
        if special:
            why = f"expected a finite number, found {special[0]} (NaN and Infinity are not allowed)"
        elif "infinity" in exc.msg and number:
            why = f"expected a finite number, found {number[0]!r}, too large for a 64-bit float"
        else:
            line = rest.split("\n", 1)[0].strip()
            found = repr(line[:20] + ("..." if len(line) > 20 else "")) if line else "the end of the line"
            why = f"{exc.msg}; found {found}" if rest else f"{exc.msg}; found the end of the file"
        raise SpecError(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {why}", source=source) from None


def from_dict(data: Any, base_dir: str | Path | None = None, *, source: str | None = None) -> Spec:
    """Validate a parsed spec (the structure only; `build_graph` checks shapes and loads weights)."""
    if not isinstance(data, dict):
        raise SpecError(f"expected a JSON object at the top level, found {kind_of(data)}", source=source)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise errors_from(exc, source) from None
    spec._base_dir = Path(base_dir) if base_dir is not None else None
    spec._source = source
    return spec


def read_spec(path: str | Path, limits: Limits | None = None) -> Spec:
    """Read and validate the structure of a spec file."""
    limits = limits or Limits.from_env()
    path = Path(path)
    source = str(path)
    try:
        size = path.stat().st_size
        if size > limits.max_spec_bytes:
            raise SpecError(
                f"expected a spec file of at most {human_bytes(limits.max_spec_bytes)} (NNSPEC_MAX_SPEC_BYTES), "
                f"found {human_bytes(size)}; large weights belong in .npy/.npz files",
                source=source,
            )
        text = path.read_bytes()
    except FileNotFoundError:
        raise SpecError("no such file", source=source) from None
    except IsADirectoryError:
        raise SpecError("expected a spec file, found a folder", source=source) from None
    except OSError as exc:
        raise SpecError(f"cannot read: {exc.strerror}", source=source) from None
    data = parse_json(text, source, limits, inline_arrays=True)
    del text  # the parsed spec holds the weights; the text need not outlive it
    return from_dict(data, path.parent, source=source)
