"""The seed's picture of a network, as SVG: inputs and neurons as nodes in columns, each weight an edge.

Layers too wide to draw neuron by neuron (and every layer that is not `dense`) are one labelled block with
its output shape. Columns follow the depth in the graph, so branches sit side by side and a merge gets an
edge from each of its sources. Geometry is computed here; `templates/network.svg.j2` writes the SVG.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from functools import cache

import jinja2
import numpy as np

from .ir import Graph, Node, Shape, TensorInfo
from .layers import LAYERS
from .render import templates

# NOTE: a layer (or input) of more than 16 values is one block: 16 nodes 40 px apart fill a screen's
# height, and the 16 x 16 = 256 edges between two such columns can still be told apart.
MAX_UNITS = 16
# NOTE: a network of more than 512 weight edges (two full 16 x 16 layers) draws every dense layer as a
# block: past that the lines merge into one grey mass, and each line adds about 200 bytes to the file.
MAX_EDGES = 512
# Weights are written on their edges when a layer has at most this many inputs and neurons (the party
# neuron, the seed's three-layer network): beyond it the numbers crowd each other; hover shows every one.
LABELLED = 4

TEMPLATE = "network.svg.j2"
POSITIVE = "#1f6fd1"  # blue: positive weights and biases
NEGATIVE = "#d62728"  # red; negative edges are also dashed, so that the sign reads without colour
MARGIN = 16
R = 11  # a node's radius
PITCH = 40  # between the nodes of a column
SPACE = 140  # between columns
LINE = 15  # a line of a block's text
ABOVE = 22  # room above an item for its name
BELOW = 26  # room below it for the activation (and under each neuron, its bias)
GAP = 26  # between the items of a column
LANE = 14  # between the lanes that carry edges across columns
CHAR = 6.4  # the width of a character at the labels' 11 px, a little wide for safety
LEGEND_WIDTH = 500
SYMBOLS = {"weights": "W", "bias": "b", "mean": "μ", "variance": "σ²", "scale": "γ", "offset": "β"}
SHOWN_ATTRS = {"strides": "stride", "dilations": "dilation", "group": "groups", "rate": "rate", "perm": "perm"}


@dataclass
class Item:
    """An input or a layer in its column: a column of nodes (one per value or neuron), or one block."""

    name: str
    order: int  # inputs first, then layers in the spec's order
    depth: int  # 0 for inputs; a layer sits one column right of its deepest source
    sources: tuple[str, ...]
    node: Node | None  # None for a network input
    units: int  # nodes drawn; 0 for a block
    lines: tuple[str, ...]  # a block's text, top to bottom
    family: str  # the block's colour: input, affine, pool, norm, merge, activation, shape
    below: str  # under the item: the activation, `f = tanh`
    output: bool
    tip: str  # the hover text: what the layer computes, as `nnspec show` prints it
    body: float = 0.0  # width of the nodes or the block
    room: float = 0.0  # width it needs, labels included; once placed, its column's
    x: float = 0.0  # the centre line
    top: float = 0.0  # the top of the nodes or block

    @property
    def height(self) -> float:
        return self.units * PITCH if self.units else 10 + LINE * len(self.lines)

    @property
    def extent(self) -> float:
        return ABOVE + self.height + BELOW

    @property
    def middle(self) -> float:
        return self.top + self.height / 2

    @property
    def left(self) -> float:
        return self.x - self.body / 2

    @property
    def right(self) -> float:
        return self.x + self.body / 2

    def y(self, i: int) -> float:
        return self.top + PITCH / 2 + i * PITCH


@dataclass(frozen=True)
class Circle:
    kind: str  # "input" or "neuron"
    layer: str
    index: int
    x: float
    y: float
    fill: str
    tip: str


@dataclass(frozen=True)
class Block:
    name: str
    family: str
    x: float
    y: float
    width: float
    height: float
    lines: tuple[str, ...]
    output: bool
    tip: str


@dataclass(frozen=True)
class Edge:
    kind: str  # "weight": one weight of a dense layer; "flow": a value passed on whole
    sign: str  # "positive", "negative" or "zero" for weights; "" for flows
    path: str
    width: float
    source: str  # item names, for readers and tests: data-from, data-to
    target: str
    arrow: bool
    tip: str


@dataclass(frozen=True)
class Label:
    kind: str  # CSS class: title, subtitle, description, name, output-name, fn, input-label, bias-label, weight-label
    x: float
    y: float
    text: str
    anchor: str = "middle"


@dataclass(frozen=True)
class Drawing:
    """Everything the template places, in SVG user units (px)."""

    name: str
    description: str
    width: float
    height: float
    edges: tuple[Edge, ...]
    blocks: tuple[Block, ...]
    circles: tuple[Circle, ...]
    labels: tuple[Label, ...]
    legend: tuple[float, float] | None  # where the weight legend starts, when there are weight edges


def svg(graph: Graph) -> str:
    """The network drawn as an SVG document (UTF-8 text); every name and description escaped."""
    return _environment().get_template(TEMPLATE).render(drawing=layout(graph), positive=POSITIVE, negative=NEGATIVE)


def layout(graph: Graph) -> Drawing:
    """Place every input, neuron, block, edge and label of the drawing."""
    drawn, note = _drawn(graph)
    items = _items(graph, drawn)
    columns: dict[int, list[Item]] = {}
    for item in items.values():
        columns.setdefault(item.depth, []).append(item)
    heights = {d: sum(i.extent for i in col) + GAP * (len(col) - 1) for d, col in columns.items()}
    tallest = max(heights.values())
    long_edges = [(s, i.name) for i in items.values() for s in i.sources if i.depth - items[s].depth > 1]

    # Vertically first from 0, to know which edges that skip columns run above the drawing and which below.
    for d in sorted(columns):
        # Branches: each item level with its sources on average, so that edges cross as little as they can.
        columns[d].sort(key=lambda i: (np.mean([items[s].middle for s in i.sources]) if i.sources else 0, i.order))
        y = (tallest - heights[d]) / 2
        for item in columns[d]:
            item.top = y + ABOVE
            y += item.extent + GAP
    above = [(s, t) for s, t in long_edges if items[s].middle <= tallest / 2]
    below = [(s, t) for s, t in long_edges if items[s].middle > tallest / 2]

    inputs = [_input_label(i.name, k) for i in items.values() if i.node is None for k in range(i.units)]
    cursor = MARGIN + (max(len(t) for t in inputs) * CHAR + R + 8 if inputs else 0)
    for d in sorted(columns):
        room = max(i.room for i in columns[d])
        for item in columns[d]:
            item.x, item.room = cursor + room / 2, room
        cursor += room + SPACE
    content_right = cursor - SPACE + MARGIN

    labels = _header(graph, note, content_right)
    header = max(label.y for label in labels) + 18
    body_top = header + (len(above) * LANE + 12 if above else 0)
    for item in items.values():
        item.top += body_top
    bottom = body_top + tallest

    circles: list[Circle] = []
    blocks: list[Block] = []
    edges: list[Edge] = []
    for item in items.values():
        labels.append(Label("output-name" if item.output else "name", item.x, item.top - 8, _short(item.name)))
        if item.below:
            labels.append(Label("fn", item.x, item.top + item.height + BELOW - 6, item.below))
        if item.units:
            circles += _nodes(item, labels)
        else:
            blocks.append(
                Block(
                    item.name,
                    item.family,
                    item.left,
                    item.top,
                    item.body,
                    item.height,
                    item.lines,
                    item.output,
                    item.tip,
                )
            )
        if item.units and item.node is not None:
            edges += _weights(item, items[item.sources[0]], labels)
        elif not item.units:
            for source in item.sources:
                if item.depth - items[source].depth == 1:
                    edges += _flows(items[source], item)
    for k, (source, target) in enumerate(above):
        edges.append(_across(items[source], items[target], body_top - 12 - k * LANE, k, up=True))
    for k, (source, target) in enumerate(below):
        edges.append(_across(items[source], items[target], bottom + 4 + k * LANE, k, up=False))
    bottom += len(below) * LANE + 8 if below else 0
    legend = None
    if any(e.kind == "weight" for e in edges):
        legend = (MARGIN, bottom + 8)
        bottom += 44
    width = max(content_right, max(len(label.text) * CHAR + 2 * MARGIN for label in labels if label.anchor == "start"))
    if legend:
        width = max(width, LEGEND_WIDTH + 2 * MARGIN)
    return Drawing(
        name=graph.name,
        description=graph.description or "",
        width=width,
        height=bottom + MARGIN,
        edges=tuple(edges),
        blocks=tuple(blocks),
        circles=tuple(circles),
        labels=tuple(labels),
        legend=legend,
    )


# --- the items ----------------------------------------------------------------------------------


def _items(graph: Graph, drawn: set[str]) -> dict[str, Item]:
    outputs = {o.name for o in graph.outputs}
    items: dict[str, Item] = {}
    for k, t in enumerate(graph.inputs):
        units = t.shape[0] if t.name in drawn else 0
        lines = () if units else ("input", *([t.dtype] if t.dtype else []), _dims(t.shape))
        tip = f"input {t.name}: {_dims(t.shape)} per sample" + (f", {t.dtype}" if t.dtype else "")
        items[t.name] = _sized(Item(t.name, k, 0, (), None, units, lines, "input", "", False, tip), t)
    for node in graph.nodes:
        depth = 1 + max(items[s].depth for s in node.inputs)
        units = node.shape[0] if node.name in drawn else 0
        below = f"f = {node.activation.label}" if node.activation is not None else ""
        tip = f"{node.name} (layers[{node.index}], {node.op}): {LAYERS[node.op].formula(node)} -> {_dims(node.shape)}"
        item = Item(
            node.name,
            len(graph.inputs) + node.index,
            depth,
            node.inputs,
            node,
            units,
            () if units else _block_lines(node),
            _family(node),
            below,
            node.name in outputs,
            tip,
        )
        items[node.name] = _sized(item, node)
    return items


def _drawn(graph: Graph) -> tuple[set[str], str]:
    """The inputs and dense layers drawn value by value (neuron by neuron), the rest being blocks; and a
    note for the reader when size alone made blocks."""
    # Integer ids (an embedding's tokens) are not features that a neuron weighs: a block.
    values = {t.name for t in graph.inputs if len(t.shape) == 1 and t.shape[0] <= MAX_UNITS and t.dtype is None}
    drawn, edges = set(values), 0
    for node in graph.nodes:
        if node.op == "dense" and len(node.shape) == 1 and node.shape[0] <= MAX_UNITS and node.inputs[0] in drawn:
            drawn.add(node.name)
            edges += node.params["weights"].size
    if edges > MAX_EDGES:
        return values, f"more than {MAX_EDGES} weights, so every dense layer is a block"
    wide = [t.shape for t in graph.inputs] + [n.shape for n in graph.nodes if n.op == "dense"]
    if any(len(shape) == 1 and shape[0] > MAX_UNITS for shape in wide):
        return drawn, f"layers and inputs of more than {MAX_UNITS} values are blocks"
    return drawn, ""


def _sized(item: Item, what: Node | TensorInfo) -> Item:
    texts = [_short(item.name), item.below]
    if item.units:
        item.body = 2 * R
        if isinstance(what, Node) and "bias" in what.params and item.units <= LABELLED:
            texts += [f"b={_number(b)}" for b in what.params["bias"]]
    else:
        item.body = max(96.0, max(len(line) for line in item.lines) * CHAR + 20)
    item.room = max(item.body, *(len(t) * CHAR for t in texts))
    return item


def _block_lines(node: Node) -> tuple[str, ...]:
    """A block's text: its type (and window), its parameters, what it is set to, its output shape."""
    title = "activation" if node.op == "activation" else node.op
    if "kernel_shape" in node.attrs:
        title += " " + "×".join(map(str, node.attrs["kernel_shape"]))
    lines = [title]
    if "weights" in node.params:
        lines.append(
            f"W {'×'.join(map(str, node.params['weights'].shape))}" + (" + b" if "bias" in node.params else "")
        )
    elif node.params:
        lines.append(" ".join(SYMBOLS.get(k, k) for k in node.params))
    shown = []
    for key, word in SHOWN_ATTRS.items():
        value = node.attrs.get(key)
        if isinstance(value, list | tuple) and any(v != 1 for v in value) and key != "perm":
            shown.append(f"{word} {'×'.join(map(str, value)) if len(set(value)) > 1 else value[0]}")
        elif key == "perm" and value is not None:
            shown.append(f"perm {list(value)}")
        elif key == "group" and isinstance(value, int) and value > 1:
            shown.append(f"{word} {value}")
        elif key == "rate" and value is not None:
            shown.append(f"rate {value:g}, identity")
    if shown:
        lines.append(", ".join(shown))
    lines.append(_dims(node.shape))
    return tuple(lines)


def _family(node: Node) -> str:
    if len(node.inputs) > 1:
        return "merge"
    if node.op == "activation":
        return "activation"
    if "weights" in node.params:
        return "affine"
    if "pool" in node.op:
        return "pool"
    if "norm" in node.op:
        return "norm"
    return "shape"


# --- nodes and edges ----------------------------------------------------------------------------


def _nodes(item: Item, labels: list[Label]) -> list[Circle]:
    if item.node is None:
        for i in range(item.units):
            labels.append(Label("input-label", item.x - R - 6, item.y(i) + 4, _input_label(item.name, i), "end"))
        return [
            Circle("input", item.name, i, item.x, item.y(i), "#f2f2f2", f"input {item.name}[{i}]")
            for i in range(item.units)
        ]
    bias = item.node.params.get("bias")
    scale = float(np.abs(bias).max()) if bias is not None and bias.size else 0.0
    written = item.units <= LABELLED and item.node.input_shapes[0][0] <= LABELLED
    circles = []
    for j in range(item.units):
        b = None if bias is None else float(bias[j])
        if b is not None and written:
            labels.append(Label("bias-label", item.x, item.y(j) + R + 10, f"b={_number(b)}"))
        tip = f"{item.name}[{j}]: " + ("no bias" if bias is None else f"bias b = {bias[j]}")
        circles.append(Circle("neuron", item.name, j, item.x, item.y(j), _bias_fill(b, scale), tip))
    return circles


def _weights(item: Item, source: Item, labels: list[Label]) -> list[Edge]:
    """One edge per weight W[j, i], from the source's value i to neuron j: colour and dashes by sign,
    width by size against the layer's largest."""
    assert item.node is not None
    weights = item.node.params["weights"]
    largest = float(np.abs(weights).max()) if weights.size else 0.0
    written = weights.shape[0] <= LABELLED and weights.shape[1] <= LABELLED
    edges = []
    for j in range(weights.shape[0]):
        for i in range(weights.shape[1]):
            w = float(weights[j, i])
            x1, y1, x2, y2 = source.x + R, source.y(i), item.x - R, item.y(j)
            sign = "positive" if w > 0 else "negative" if w < 0 else "zero"
            width = 0.6 + 2.4 * abs(w) / largest if largest else 0.6
            tip = f"{item.name}: w[{j}, {i}] = {weights[j, i]} (from {_input_label(source.name, i)})"
            edges.append(
                Edge("weight", sign, f"M{_n(x1)} {_n(y1)}L{_n(x2)} {_n(y2)}", width, source.name, item.name, False, tip)
            )
            if written:
                # Near the neuron, where the edges into it fan apart (midway for a single neuron).
                t = 0.5 if weights.shape[0] == 1 else 0.7
                labels.append(Label("weight-label", x1 + t * (x2 - x1), y1 + t * (y2 - y1) - 3, _number(w)))
    return edges


def _flows(source: Item, target: Item) -> list[Edge]:
    """A value passed on whole into a block in the next column: from each node of a column, or block to block."""
    x2, y2 = target.left, _entry(target, source.name)
    starts = [(source.x + R, source.y(i)) for i in range(source.units)] or [(source.right, source.middle)]
    tip = f"{source.name} -> {target.name}"
    return [
        Edge("flow", "", _curve(x1, y1, x2, y2), 1.2, source.name, target.name, not source.units, tip)
        for x1, y1 in starts
    ]


def _across(source: Item, target: Item, lane: float, k: int, up: bool) -> Edge:
    """An edge that skips columns (a skip connection, a branch joining later): to its own lane above the
    drawing (or below, from the lower half), along it, and into the target, never through the items between."""
    x1, y1 = (
        (source.right, source.middle) if not source.units else (source.x + R, source.y(0 if up else source.units - 1))
    )
    x2, y2 = target.left, _entry(target, source.name)
    # The vertical legs run outside both items' labels, each lane a little apart from the next.
    out, back = source.x + source.room / 2 + 10 + 4 * (k % 8), target.x - target.room / 2 - 10 - 4 * (k % 8)
    path = f"M{_n(x1)} {_n(y1)}H{_n(out)}V{_n(lane)}H{_n(back)}V{_n(y2)}H{_n(x2)}"
    return Edge("flow", "", path, 1.2, source.name, target.name, True, f"{source.name} -> {target.name}")


def _entry(target: Item, source: str) -> float:
    """Where an edge from `source` enters a block: its sources spread down the left side, in their order."""
    k, n = target.sources.index(source), len(target.sources)
    return target.top + target.height * (k + 1) / (n + 1)


def _curve(x1: float, y1: float, x2: float, y2: float) -> str:
    mid = (x1 + x2) / 2
    return f"M{_n(x1)} {_n(y1)}C{_n(mid)} {_n(y1)} {_n(mid)} {_n(y2)} {_n(x2)} {_n(y2)}"


def _bias_fill(b: float | None, scale: float) -> str:
    """White for no bias, towards blue for a positive one and red for a negative one, by size in its layer."""
    if not b or not scale:
        return "#ffffff"
    amount = 0.15 + 0.5 * abs(b) / scale
    colour = POSITIVE if b > 0 else NEGATIVE
    return "#" + "".join(f"{round(255 + amount * (int(colour[k : k + 2], 16) - 255)):02x}" for k in (1, 3, 5))


# --- text ---------------------------------------------------------------------------------------


def _header(graph: Graph, note: str, width: float) -> list[Label]:
    what = (
        f"{len(graph.inputs)} input(s), {len(graph.nodes)} layer(s), {graph.parameter_count:,} parameters, "
        f"{graph.dtype.name}; outputs: {', '.join(o.name for o in graph.outputs)}"
    )
    if note:
        what += f"; {note}"
    labels = [Label("title", MARGIN, 24, graph.name, "start"), Label("subtitle", MARGIN, 42, what, "start")]
    lines = textwrap.wrap(graph.description or "", max(90, int(width / CHAR)), max_lines=4, placeholder=" …")
    labels += [Label("description", MARGIN, 60 + 15 * k, line, "start") for k, line in enumerate(lines)]
    return labels


def _input_label(name: str, i: int) -> str:
    return f"{_short(name, 12)}[{i}]"


def _short(name: str, most: int = 24) -> str:
    return name if len(name) <= most else name[: most - 1] + "…"


def _dims(shape: Shape) -> str:
    return f"[{', '.join(map(str, shape))}]"


def _number(x: float) -> str:
    return f"{x:.3g}"


def _n(x: float) -> str:
    """A coordinate to 0.1 px, without trailing zeros."""
    return f"{x:.1f}".rstrip("0").rstrip(".")


@cache
def _environment() -> jinja2.Environment:
    # Autoescape: layer names and descriptions are the user's text, and SVG is XML.
    env = templates(autoescape=True, trim=True, trailing_newline=False)
    env.filters["n"] = _n
    return env
