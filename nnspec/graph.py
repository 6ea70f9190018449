"""Resolve a validated spec into a Graph: names, sources, shapes, limits, then the weights themselves."""

from __future__ import annotations

import math

import numpy as np

from .errors import LimitError, SpecError, suggest, unknown
from .ir import Graph, LayerPlan, Node, Source, TensorInfo
from .layers import LAYERS
from .limits import Limits, human_bytes
from .spec import Spec
from .weights import materialize


def layer_names(spec: Spec) -> list[str]:
    """Every layer's name: its own, or `<type>_<index>` (with a suffix if that is taken)."""
    return auto_names([(layer.type, layer.name) for layer in spec.layers], [i.name for i in spec.inputs])


def auto_names(layers: list[tuple[str, str | None]], inputs: list[str]) -> list[str]:
    """`layer_names` over (type, name) pairs, for documents not (yet) validated."""
    taken = {name for _, name in layers if name} | set(inputs)
    names = []
    for i, (kind, given) in enumerate(layers):
        if given:
            names.append(given)
            continue
        name, k = f"{kind}_{i}", 1
        while name in taken:
            name, k = f"{kind}_{i}_{k}", k + 1
        taken.add(name)
        names.append(name)
    return names


def _check_unique(spec: Spec) -> None:
    seen: dict[str, str] = {}
    for i, inp in enumerate(spec.inputs):
        if inp.name in seen:
            raise SpecError(
                f"expected a unique name, found {inp.name!r}, which {seen[inp.name]} already has", ("inputs", i, "name")
            )
        seen[inp.name] = f"inputs[{i}]"
    for i, layer in enumerate(spec.layers):
        if layer.name is None:
            continue
        if layer.name in seen:
            raise SpecError(
                f"expected a unique name, found {layer.name!r}, which {seen[layer.name]} already has",
                ("layers", i, "name"),
            )
        seen[layer.name] = f"layers[{i}]"


def _sources(spec: Spec, i: int, names: list[str], env: dict[str, Source]) -> list[Source]:
    layer = spec.layers[i]
    wanted = layer.inputs if layer.inputs is not None else [names[i - 1] if i else spec.inputs[0].name]
    fewest, most = layer.arity
    if len(wanted) < fewest or (most is not None and len(wanted) > most):
        count = str(fewest) if fewest == most else f"{fewest} or more" if most is None else f"{fewest} to {most}"
        raise SpecError(
            f"expected {count} source(s) for a {layer.type} layer, found {len(wanted)}: {wanted}",
            ("layers", i, "inputs"),
        )
    sources = []
    for j, ref in enumerate(wanted):
        if ref not in env:
            later = [k for k in range(i, len(names)) if names[k] == ref]
            if later and later[0] == i:
                why = f"expected a network input or an earlier layer, found {ref!r}, which is this layer itself"
            elif later:
                why = (
                    f"expected a network input or an earlier layer, found {ref!r}, which is layers[{later[0]}] "
                    "and runs later (layers run in order)"
                )
            else:
                why = (
                    f"expected a network input or an earlier layer ({', '.join(env)}), "
                    f"found unknown {ref!r}{suggest(ref, env)}"
                )
            raise SpecError(why, ("layers", i, "inputs", j))
        source = env[ref]
        if source.integer != layer.integer_inputs:
            takes = "integer ids" if layer.integer_inputs else "numbers of the network's dtype"
            raise SpecError(
                f"expected a source of {takes} for a {layer.type} layer, found {source.describe()}, which holds "
                f"{source.dtype or 'floats'}" + ("" if layer.integer_inputs else " (only embedding layers read ids)"),
                ("layers", i, "inputs", j) if layer.inputs is not None else ("layers", i),
            )
        sources.append(source)
    return sources


def _outputs(spec: Spec, names: list[str], shapes: dict[str, tuple[int, ...]]) -> tuple[TensorInfo, ...]:
    if spec.outputs is None:
        return (TensorInfo(names[-1], shapes[names[-1]]),)
    seen: dict[str, int] = {}
    for j, ref in enumerate(spec.outputs):
        if ref in seen:
            raise SpecError(
                f"expected each output once, found {ref!r} again (also outputs[{seen[ref]}])", ("outputs", j)
            )
        seen[ref] = j
        if ref not in shapes:
            if ref in {i.name for i in spec.inputs}:
                raise SpecError(
                    f"expected a layer's name, found {ref!r}, which is a network input (outputs name layers)",
                    ("outputs", j),
                )
            raise SpecError(unknown("layer", ref, names), ("outputs", j))
    return tuple(TensorInfo(ref, shapes[ref]) for ref in spec.outputs)


def _check_onnx_names(spec: Spec, outputs: tuple[TensorInfo, ...], names: list[str]) -> None:
    """Keys name a network input or an output; no two inputs (or outputs) take the same name in the model."""
    ends = {"input": [i.name for i in spec.inputs], "output": [o.name for o in outputs]}
    shown = f"inputs: {', '.join(ends['input'])}; outputs: {', '.join(ends['output'])}"
    renamed = spec.onnx_names or {}
    for key in renamed:
        if key in ends["input"] or key in ends["output"]:
            continue
        if key in names:
            why = f'found {key!r}, a layer that is not an output (list it in "outputs" to expose it)'
        else:
            why = f"found unknown {key!r}{suggest(key, [*ends['input'], *ends['output']])}"
        raise SpecError(f"expected a network input or output ({shown}), {why}", ("onnx_names", key))
    for kind, ends_of_kind in ends.items():
        taken: dict[str, str] = {}
        for name in ends_of_kind:
            in_model = renamed.get(name, name)
            if in_model in taken:
                key = name if name in renamed else taken[in_model]
                raise SpecError(
                    f"expected each {kind} to have its own name in the ONNX model, found {in_model!r} for both "
                    f"{taken[in_model]!r} and {name!r}",
                    ("onnx_names", key),
                )
            taken[in_model] = name


def _input_dtype(spec: Spec, k: int) -> str | None:
    """An input's dtype: an integer type by name, or None for the network's own float dtype."""
    dtype = spec.inputs[k].dtype
    if dtype is None or dtype == spec.dtype:
        return None
    if dtype.startswith("float"):
        raise SpecError(
            f"expected the network's dtype {spec.dtype!r} or an integer type (int64, int32), found {dtype!r} "
            "(a network computes in one float dtype)",
            ("inputs", k, "dtype"),
        )
    return dtype


def _check_limits(spec: Spec, plans: list[LayerPlan], itemsize: int, limits: Limits) -> None:
    """Refuse from declared sizes alone, before a single weight or activation is allocated."""
    sample_limit = human_bytes(limits.max_batch_bytes)
    for i, inp in enumerate(spec.inputs):
        size = math.prod(inp.shape) * itemsize
        if size > limits.max_batch_bytes:
            raise LimitError(
                f"expected one sample to need at most {sample_limit} (NNSPEC_MAX_BATCH_BYTES), found "
                f"{human_bytes(size)} for shape {inp.shape} as {spec.dtype}",
                ("inputs", i, "shape"),
            )
    total = count = 0
    for i, plan in enumerate(plans):
        for name, param in plan.params.items():
            numbers = math.prod(param.shape)
            size = numbers * itemsize
            total += size
            if total > limits.max_weight_bytes:
                raise LimitError(
                    f"expected at most {human_bytes(limits.max_weight_bytes)} of weights in all "
                    f"(NNSPEC_MAX_WEIGHT_BYTES), found {human_bytes(total)} as {spec.dtype} declared up to here, "
                    f"{human_bytes(size)} of it for this one of shape {list(param.shape)} ({param.reason})",
                    ("layers", i, name),
                )
            count += numbers
            if count > limits.max_parameters:
                raise LimitError(
                    f"expected at most {limits.max_parameters:,} parameters in all (NNSPEC_MAX_PARAMETERS), found "
                    f"{count:,} declared up to here, {numbers:,} of them for this one of shape "
                    f"{list(param.shape)} ({param.reason})",
                    ("layers", i, name),
                )
        work = plan.scratch * itemsize
        if work > limits.max_batch_bytes:
            raise LimitError(
                f"expected one sample of a layer's workspace to need at most {sample_limit} (NNSPEC_MAX_BATCH_BYTES), "
                f"found {human_bytes(work)} ({plan.scratch:,} numbers: the padded input and its windows) as "
                f"{spec.dtype}; lower the padding or dilation",
                ("layers", i),
            )
        size = math.prod(plan.shape) * itemsize
        if size > limits.max_batch_bytes:
            raise LimitError(
                f"expected one sample of a layer's output to need at most {sample_limit} (NNSPEC_MAX_BATCH_BYTES), "
                f"found {human_bytes(size)} for shape {list(plan.shape)} as {spec.dtype}",
                ("layers", i),
            )


def _check_activation_fits(plan: LayerPlan, dtype: np.dtype, i: int) -> None:
    """Activation parameters become constants of the network's dtype; they must stay finite there."""
    if plan.activation is None:
        return
    for key, value in plan.activation.params.items():
        if isinstance(value, float) and abs(value) > float(np.finfo(dtype).max):
            raise SpecError(
                f"expected a value that fits in {dtype.name} (|x| <= {float(np.finfo(dtype).max):.4g}), found {value}",
                ("layers", i, "activation", key),
            )


def build_graph(spec: Spec, limits: Limits | None = None) -> Graph:
    """Resolve names, sources and shapes, check limits from declared sizes, then load the weights."""
    limits = limits or Limits.from_env()
    dtype = np.dtype(spec.dtype)
    try:
        if len(spec.layers) > limits.max_layers:
            raise LimitError(
                f"expected at most {limits.max_layers} layers (NNSPEC_MAX_LAYERS), found {len(spec.layers)}",
                ("layers",),
            )
        _check_unique(spec)
        names = layer_names(spec)
        env = {
            i.name: Source(i.name, tuple(i.shape), "input", _input_dtype(spec, k)) for k, i in enumerate(spec.inputs)
        }
        plans: list[LayerPlan] = []
        wiring: list[list[Source]] = []
        for i, layer in enumerate(spec.layers):
            sources = _sources(spec, i, names, env)
            try:
                plan = layer.plan(sources)
            except SpecError as exc:  # a layer's shape rule names the place within the layer
                raise SpecError(exc.message, ("layers", i, *exc.loc)) from None
            _check_activation_fits(plan, dtype, i)
            plans.append(plan)
            wiring.append(sources)
            env[names[i]] = Source(names[i], plan.shape, "layer")
        outputs = _outputs(spec, names, {n: env[n].shape for n in names})
        for key in spec.tolerance or {}:
            if key not in {o.name for o in outputs}:
                shown = ", ".join(o.name for o in outputs)
                raise SpecError(
                    f"expected an output name{suggest(key, [o.name for o in outputs])} (outputs: {shown}), found {key!r}",
                    ("tolerance", key),
                )
        _check_onnx_names(spec, outputs, names)
        _check_limits(spec, plans, dtype.itemsize, limits)
        nodes = []
        for i, (layer, plan, sources) in enumerate(zip(spec.layers, plans, wiring, strict=True)):
            params = {
                key: materialize(p.source, p.shape, p.reason, dtype, spec.base_dir, ("layers", i, key), limits)
                for key, p in plan.params.items()
                if p.source is not None
            }
            nodes.append(
                Node(
                    name=names[i],
                    op=layer.type,
                    inputs=tuple(s.name for s in sources),
                    input_shapes=tuple(s.shape for s in sources),
                    shape=plan.shape,
                    params=params,
                    activation=plan.activation,
                    attrs=plan.attrs,
                    index=i,
                    scratch=plan.scratch,
                )
            )
        for node in nodes:
            check = LAYERS[node.op].loaded
            if check is not None:
                check(node)
    except SpecError as exc:
        exc.source = spec.source
        raise
    assert all(n.op in LAYERS for n in nodes)
    return Graph(
        name=spec.name,
        dtype=dtype,
        inputs=tuple(TensorInfo(i.name, tuple(i.shape), env[i.name].dtype) for i in spec.inputs),
        nodes=tuple(nodes),
        outputs=outputs,
        description=spec.description,
        tolerances={k: (t.rtol, t.atol) for k, t in (spec.tolerance or {}).items()},
        onnx_names=dict(spec.onnx_names or {}),
    )
