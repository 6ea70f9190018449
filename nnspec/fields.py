"""Spec field types shared by the layer models: strict objects, activations and weight sources.

Weights are validated as whole arrays (one `np.asarray` call), never number by number, so that a
large inline matrix loads at about the speed the JSON parser reads it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, get_args

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from . import activations
from .errors import missing, suggest, unknown

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$"
NAME_RE = re.compile(NAME_PATTERN)


def spec_error(message: str, *subloc: str | int) -> PydanticCustomError:
    """An error raised inside a validator; `subloc` extends the field's location in the spec."""
    return PydanticCustomError("nnspec", "{message}", {"message": message, "subloc": list(subloc)})


def kind_of(value: Any) -> str:
    """A JSON-flavoured name for the type of a parsed value, for 'found ...' messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def check_keys(value: dict[str, Any], allowed: list[str], required: list[str] = ()) -> None:  # type: ignore[assignment]
    """Refuse unknown keys (naming the closest valid one) and missing required keys."""
    for key in value:
        if key not in allowed:
            raise spec_error(unknown("key", str(key), allowed), key)
    for key in required:
        if key not in value:
            raise spec_error(missing(key), key)


class StrictModel(BaseModel):
    """A spec object: unknown keys are refused with a suggestion, and values are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            check_keys(data, [f.alias or name for name, f in cls.model_fields.items()])
        return data


def finite_float(value: Any, *loc: str | int) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise spec_error(f"expected a number, found {kind_of(value)}", *loc)
    if not math.isfinite(value):
        raise spec_error(f"expected a finite number, found {value}", *loc)
    return float(value)


# --- activations -------------------------------------------------------------------------------


def parse_activation(value: Any) -> activations.Activation:
    """`"relu"` or `{"name": "leaky_relu", "alpha": 0.1}` -> a bound Activation."""
    if isinstance(value, activations.Activation):
        return value
    if isinstance(value, str):
        name, given = value, {}
    elif isinstance(value, dict):
        if "name" not in value:
            raise spec_error(
                'expected an activation object with a "name", e.g. {"name": "leaky_relu", "alpha": 0.1}, '
                f"found keys {sorted(value)}"
            )
        name, given = value["name"], {k: v for k, v in value.items() if k != "name"}
        if not isinstance(name, str):
            raise spec_error(f"expected an activation name, found {kind_of(name)}", "name")
    else:
        raise spec_error(f"expected an activation name or object, found {kind_of(value)}")
    entry = activations.lookup(name)
    if entry is None:
        names = sorted(activations.REGISTRY)
        aliases = sorted(set(activations.ALIASES) - set(names))
        raise spec_error(
            unknown("activation", name, names, f" (aliases: {', '.join(aliases)})", also=aliases),
            *(("name",) if isinstance(value, dict) else ()),
        )
    params = entry.defaults()
    for key, raw in given.items():
        if key not in entry.params:
            allowed = list(entry.params)
            if not allowed:
                raise spec_error(f"expected no parameters ({entry.name} takes none), found {key!r}", key)
            raise spec_error(unknown(f"{entry.name} parameter", key, allowed), key)
        default = entry.params[key]
        if isinstance(default, activations.Choice):
            if raw not in default.values:
                raise spec_error(f"expected one of {', '.join(map(repr, default.values))}, found {raw!r}", key)
            params[key] = raw
        else:
            params[key] = finite_float(raw, key)
    return activations.Activation(entry, params)


def _activation_schema() -> dict[str, Any]:
    names = sorted(activations.ALIASES)
    objects = []
    for entry in activations.REGISTRY.values():
        props: dict[str, Any] = {"name": {"enum": [entry.name, *entry.aliases]}}
        for key, default in entry.params.items():
            if isinstance(default, activations.Choice):
                props[key] = {"enum": list(default.values), "default": default.default}
            else:
                props[key] = {"type": "number", "default": default}
        objects.append({"type": "object", "properties": props, "required": ["name"], "additionalProperties": False})
    return {
        "description": "An activation function: a name, or an object with a name and parameters.",
        "anyOf": [{"type": "string", "enum": names}, *objects],
    }


ActivationField = Annotated[
    activations.Activation,
    PlainValidator(parse_activation),
    PlainSerializer(lambda a: a.to_json()),
    WithJsonSchema(_activation_schema()),
]


# --- weight sources ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Inline:
    """Numbers written in the spec, as a float64 array."""

    array: np.ndarray


@dataclass(frozen=True)
class FileRef:
    """An array in a `.npy` file, or one member of a `.npz` file, relative to the spec's folder."""

    file: str
    key: str | None = None
    sha256: str | None = None  # hex digest of the whole file, verified before it is read


@dataclass(frozen=True)
class Init:
    """A named initializer, materialized once from its parameters (random ones need a seed)."""

    init: str
    params: dict[str, Any] = field(default_factory=dict)

    # Default ranges for uniform and normal follow the common Keras defaults (U(-0.05, 0.05),
    # N(0, 0.05)): small enough that a stack of layers neither saturates nor explodes.
    KINDS: ClassVar[dict[str, dict[str, Any]]] = {
        "zeros": {},
        "ones": {},
        "constant": {"value": None},
        "uniform": {"seed": None, "low": -0.05, "high": 0.05},
        "normal": {"seed": None, "mean": 0.0, "std": 0.05},
        "glorot_uniform": {"seed": None},
        "he_normal": {"seed": None},
    }


WeightSource = Inline | FileRef | Init


def parse_inline(value: Any) -> Inline:
    """Nested lists of numbers (or an array of them, as `jsontext.parse` reads large ones) as float64."""
    try:
        array = np.asarray(value)
    except ValueError:
        raise spec_error(
            "expected a rectangular nested list of numbers, found rows of unequal length or depth"
        ) from None
    except OverflowError:
        raise spec_error("expected numbers that fit in a float64, found an integer too large for one") from None
    if array.dtype == object:
        found = (
            "integers too large for a float64" if _has_big_int(value) else "null, an object, or rows of unequal length"
        )
        raise spec_error(f"expected a rectangular nested list of numbers, found {found}")
    if array.dtype.kind not in "iuf":
        raise spec_error(f"expected numbers, found {array.dtype.kind == 'b' and 'booleans' or 'strings'}")
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise spec_error(f"expected finite numbers, found {array[where]} at index {list(where)}")
    return Inline(array)


def _has_big_int(value: Any) -> bool:
    if isinstance(value, list):
        return any(_has_big_int(v) for v in value)
    return isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64


def parse_file_ref(value: dict[str, Any]) -> FileRef:
    check_keys(value, ["file", "key", "sha256"], ["file"])
    file, key, digest = value["file"], value.get("key"), value.get("sha256")
    if digest is not None and not (isinstance(digest, str) and re.fullmatch(r"[0-9a-fA-F]{64}", digest)):
        shown = repr(digest) if isinstance(digest, str) else kind_of(digest)
        raise spec_error(f"expected 64 hexadecimal digits (a SHA-256 of the file), found {shown}", "sha256")
    if not isinstance(file, str) or not file:
        raise spec_error(f"expected a path relative to the spec's folder, found {kind_of(file)}", "file")
    if key is not None and not isinstance(key, str):
        raise spec_error(f"expected the name of an array in the .npz file, found {kind_of(key)}", "key")
    suffix = file.lower().rsplit(".", 1)[-1] if "." in file else ""
    if suffix not in ("npy", "npz"):
        raise spec_error(f"expected a .npy or .npz file, found {file!r}", "file")
    if suffix == "npz" and key is None:
        raise spec_error(missing("key", "a .npz file holds several arrays: name one"), "key")
    if suffix == "npy" and key is not None:
        raise spec_error(f'expected no "key" (a .npy file holds one array), found {key!r}', "key")
    return FileRef(file, key, digest.lower() if digest else None)


def parse_init(value: dict[str, Any]) -> Init:
    kind = value["init"]
    kinds = list(Init.KINDS)
    if not isinstance(kind, str):
        raise spec_error(f"expected an initializer name ({', '.join(kinds)}), found {kind_of(kind)}", "init")
    if kind not in Init.KINDS:
        raise spec_error(unknown("initializer", kind, kinds), "init")
    spec = Init.KINDS[kind]
    check_keys(value, ["init", *spec], ["init", *(k for k, d in spec.items() if d is None and k != "seed")])
    if "seed" in spec and "seed" not in value:
        raise spec_error(
            missing("seed", f"{kind} draws random numbers; an integer seed makes every backend see the same ones"),
            "seed",
        )
    params: dict[str, Any] = {}
    for key, default in spec.items():
        raw = value.get(key, default)
        if key == "seed":
            if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw < 2**63:
                raise spec_error(f"expected an integer seed in [0, 2**63), found {raw!r}", key)
            params[key] = raw
        else:
            params[key] = finite_float(raw, key)
    if kind == "uniform" and not params["low"] < params["high"]:
        raise spec_error(f"expected low < high, found low={params['low']} and high={params['high']}", "high")
    if kind == "normal" and params["std"] < 0:
        raise spec_error(f"expected std >= 0, found {params['std']}", "std")
    return Init(kind, params)


def parse_weight_source(value: Any) -> WeightSource:
    """Inline numbers, `{"file": ...}` or `{"init": ...}`."""
    if isinstance(value, Inline | FileRef | Init):
        return value
    if isinstance(value, dict):
        if "file" in value:
            return parse_file_ref(value)
        if "init" in value:
            return parse_init(value)
        hint = next((h for h in (suggest(str(k), ["file", "init"]) for k in value) if h), "")
        raise spec_error(
            f'expected numbers, {{"file": ...}} or {{"init": ...}}, found an object with keys {sorted(value)}{hint}'
        )
    if isinstance(value, list | int | float | np.ndarray) and not isinstance(value, bool):
        return parse_inline(value)
    raise spec_error(f'expected numbers, {{"file": ...}} or {{"init": ...}}, found {kind_of(value)}')


def dump_weight_source(source: WeightSource) -> Any:
    if isinstance(source, Inline):
        return source.array.tolist()
    if isinstance(source, FileRef):
        extra = {k: v for k, v in (("key", source.key), ("sha256", source.sha256)) if v}
        return {"file": source.file, **extra}
    return {"init": source.init, **source.params}


WEIGHT_SCHEMA: dict[str, Any] = {
    "description": "Inline nested numbers, an array in a .npy/.npz file next to the spec, or an initializer.",
    "anyOf": [
        {"type": "array", "description": "nested lists of numbers, outermost first"},
        {
            "type": "object",
            "properties": {
                "file": {"type": "string"},
                "key": {"type": "string"},
                "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
            },
            "required": ["file"],
            "additionalProperties": False,
        },
        *(
            {
                "type": "object",
                "properties": {
                    "init": {"const": kind},
                    **{k: {"type": "integer" if k == "seed" else "number"} for k in params},
                },
                "required": ["init", *(k for k, d in params.items() if d is None)],
                "additionalProperties": False,
            }
            for kind, params in Init.KINDS.items()
        ),
    ],
}

_WEIGHT_VALIDATOR = PlainValidator(parse_weight_source)

WeightField = Annotated[
    WeightSource,
    _WEIGHT_VALIDATOR,
    PlainSerializer(dump_weight_source),
    WithJsonSchema(WEIGHT_SCHEMA),
]


def holds_weights(info: FieldInfo) -> bool:
    """Whether a model's field is a WeightField (`weights: WeightField`, `bias: WeightField | None`)."""

    def mentions(annotation: Any) -> bool:
        return any(m is _WEIGHT_VALIDATOR for m in getattr(annotation, "__metadata__", ())) or any(
            mentions(arg) for arg in get_args(annotation)
        )

    return any(m is _WEIGHT_VALIDATOR for m in info.metadata) or mentions(info.annotation)


def check_name(value: Any) -> str:
    if not isinstance(value, str):
        raise spec_error(f"expected a name (a string), found {kind_of(value)}")
    if not NAME_RE.match(value):
        raise spec_error(
            f"expected a name of letters, digits, '_', '.' or '-' that starts with a letter or '_' "
            f"(at most 128 characters), found {value!r}"
        )
    return value


Name = Annotated[str, PlainValidator(check_name), WithJsonSchema({"type": "string", "pattern": NAME_PATTERN})]
