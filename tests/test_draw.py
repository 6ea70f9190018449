"""`nnspec draw`: the seed's picture as SVG, read back as XML (and rendered by Chromium where there is one)."""

from __future__ import annotations

import copy
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnspec
from nnspec.draw import MAX_EDGES, MAX_UNITS, svg
from nnspec.ir import Graph, TensorInfo
from nnspec.layers import LAYERS

SPECS = Path(__file__).resolve().parent.parent / "specs"
SVG = "{http://www.w3.org/2000/svg}"

# 2-3-1, every sign of weight and bias (a zero weight among them) and two activations.
TWO_THREE_ONE: dict[str, Any] = {
    "format": "nnspec/1",
    "name": "two_three_one",
    "inputs": [{"name": "p", "shape": [2]}],
    "layers": [
        {
            "type": "dense",
            "name": "hidden",
            "units": 3,
            "activation": "tansig",
            "weights": [[0.5, -0.2], [0.0, 0.4], [-0.3, 0.8]],
            "bias": [0.1, -0.1, 0.0],
        },
        {"type": "dense", "name": "score", "units": 1, "activation": "logsig", "weights": [[2.0, -1.0, 0.5]]},
    ],
}


def draw(spec: Any) -> ET.Element:
    """The drawing of a spec (a path, a dict or a Graph), parsed: it must be well-formed XML."""
    if isinstance(spec, dict):
        spec = nnspec.from_dict(copy.deepcopy(spec))
    graph = spec if isinstance(spec, Graph) else nnspec.graph(spec)
    root = ET.fromstring(svg(graph).encode())
    assert root.tag == f"{SVG}svg"
    return root


def nodes(root: ET.Element, kind: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{SVG}circle") if e.get("class", "").split() == ["node", kind]]


def edges(root: ET.Element, kind: str, target: str | None = None) -> list[ET.Element]:
    found = [e for e in root.iter(f"{SVG}path") if {"edge", kind} <= set(e.get("class", "").split())]
    return [e for e in found if e.get("data-to") is not None and (target is None or e.get("data-to") == target)]


def texts(root: ET.Element, kind: str | None = None) -> list[ET.Element]:
    return [e for e in root.iter(f"{SVG}text") if kind is None or e.get("class") == kind]


def blocks(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-name"): g for g in root.iter(f"{SVG}g") if "block" in g.get("class", "").split()}


def block_text(block: ET.Element) -> list[str]:
    return [t.text or "" for t in block.iter(f"{SVG}text")]


def start(edge: ET.Element) -> tuple[float, float]:
    x, y = edge.get("d", "")[1:].split("L")[0].split()
    return float(x), float(y)


# --- the seed's picture: nodes and weighted edges --------------------------------------------------


def test_party_is_the_seeds_neuron():
    root = draw(SPECS / "party.json")
    assert [c.get("data-index") for c in nodes(root, "input")] == ["0", "1"]
    assert [c.get("data-layer") for c in nodes(root, "neuron")] == ["decide"]
    weights = edges(root, "weight")
    assert [e.get("class") for e in weights] == ["edge weight negative", "edge weight positive"]  # w = [-4, 1]
    assert float(weights[0].get("stroke-width")) > float(weights[1].get("stroke-width"))  # |-4| > |1|
    labels = {t.text for t in texts(root)}
    assert {"p[0]", "p[1]", "decide", "f = linear", "b=2", "-4", "1"} <= labels
    # The bias shades the neuron: blue for b = 2 > 0, where a neuron without bias is white.
    fill = nodes(root, "neuron")[0].get("fill")
    assert fill != "#ffffff" and int(fill[5:7], 16) > int(fill[1:3], 16)


def test_small_network_one_node_per_input_and_neuron_one_edge_per_weight():
    graph = nnspec.graph(nnspec.from_dict(copy.deepcopy(TWO_THREE_ONE)))
    root = draw(graph)
    assert len(nodes(root, "input")) == 2
    assert [(c.get("data-layer"), c.get("data-index")) for c in nodes(root, "neuron")] == [
        ("hidden", "0"),
        ("hidden", "1"),
        ("hidden", "2"),
        ("score", "0"),
    ]
    for node in graph.nodes:
        drawn = edges(root, "weight", node.name)
        weights = node.params["weights"]
        assert len(drawn) == weights.size
        # One edge per W[j, i] in row-major order: its sign in its class, its width by |w| in its layer.
        signs = [e.get("class", "").split()[-1] for e in drawn]
        assert signs == [{1: "positive", -1: "negative", 0: "zero"}[int(np.sign(w))] for w in weights.flat]
        widths = [float(e.get("stroke-width")) for e in drawn]
        assert int(np.argmax(widths)) == int(np.argmax(np.abs(weights)))


def test_negative_weights_differ_without_colour():
    """Dashed as well as red, so that the sign reads in grey too (a colour-blind reader, a printout)."""
    style = draw(TWO_THREE_ONE).find(f"{SVG}style")
    assert style is not None and style.text is not None
    negative = next(line for line in style.text.splitlines() if line.startswith(".edge.negative"))
    positive = next(line for line in style.text.splitlines() if line.startswith(".edge.positive"))
    assert "stroke-dasharray" in negative and "stroke-dasharray" not in positive


def test_activation_is_named_under_each_layer():
    root = draw(TWO_THREE_ONE)
    for layer, name in [("hidden", "tanh"), ("score", "sigmoid")]:  # the usual names, as `nnspec show` prints
        circles = [c for c in nodes(root, "neuron") if c.get("data-layer") == layer]
        (label,) = [t for t in texts(root, "fn") if t.text == f"f = {name}"]
        assert float(label.get("x")) == float(circles[0].get("cx"))
        assert float(label.get("y")) > max(float(c.get("cy")) for c in circles)


def test_weight_edges_run_from_each_value_to_each_neuron():
    root = draw(TWO_THREE_ONE)
    inputs = [(float(c.get("cx")), float(c.get("cy"))) for c in nodes(root, "input")]
    starts = [start(e) for e in edges(root, "weight", "hidden")]
    assert [y for _, y in starts] == [inputs[i][1] for _ in range(3) for i in range(2)]
    assert all(x > inputs[0][0] for x, _ in starts)


# --- large layers become blocks ------------------------------------------------------------------


def test_wide_layers_are_blocks_with_their_shapes():
    text = svg(nnspec.graph(SPECS / "digits_mlp.json"))
    assert len(text.encode()) < 200_000
    root = ET.fromstring(text.encode())
    assert not nodes(root, "neuron") and not nodes(root, "input") and not edges(root, "weight")
    drawn = blocks(root)
    assert {"pixels", "fc1", "fc2", "logits", "probs"} == set(drawn)
    assert "[784]" in block_text(drawn["pixels"])
    assert {"dense", "W 256×784 + b", "[256]"} <= set(block_text(drawn["fc1"]))
    assert "[128]" in block_text(drawn["fc2"]) and "[10]" in block_text(drawn["logits"])
    assert [e.get("data-from") for e in edges(root, "flow", "fc1")] == ["pixels"]
    assert any(f"more than {MAX_UNITS}" in (t.text or "") for t in texts(root, "subtitle"))


@pytest.mark.parametrize("width, drawn", [(MAX_UNITS, True), (MAX_UNITS + 1, False)])
def test_collapse_threshold(width: int, drawn: bool):
    spec = {
        "format": "nnspec/1",
        "name": "wide",
        "inputs": [{"name": "x", "shape": [width]}],
        "layers": [{"type": "dense", "name": "d", "units": width, "weights": {"init": "glorot_uniform", "seed": 1}}],
    }
    root = draw(spec)
    assert len(nodes(root, "neuron")) == (width if drawn else 0)
    assert len(edges(root, "weight")) == (width * width if drawn else 0)
    assert ("d" in blocks(root)) != drawn


def test_a_network_of_too_many_edges_is_drawn_in_blocks():
    layers = [
        {"type": "dense", "name": f"d{k}", "units": MAX_UNITS, "weights": {"init": "he_normal", "seed": k}}
        for k in range(MAX_EDGES // MAX_UNITS**2 + 1)
    ]
    spec = {"format": "nnspec/1", "name": "deep", "inputs": [{"name": "x", "shape": [MAX_UNITS]}], "layers": layers}
    root = draw(spec)
    assert len(nodes(root, "input")) == MAX_UNITS and not nodes(root, "neuron") and not edges(root, "weight")
    assert set(blocks(root)) == {layer["name"] for layer in layers}
    # One layer fewer is drawn neuron by neuron.
    spec["layers"] = layers[:-1]
    assert len(edges(draw(spec), "weight")) == MAX_EDGES


# --- graph networks: branches and merges ---------------------------------------------------------


@pytest.mark.parametrize(
    "spec, merge, sources",
    [
        ("residual_block.json", "skip", {"x", "bn2"}),
        ("skip_concat.json", "skip", {"h1", "h2"}),
        ("skip_concat.json", "joined", {"skip", "side"}),
    ],
)
def test_merges_have_an_edge_from_each_source(spec: str, merge: str, sources: set[str]):
    root = draw(SPECS / spec)
    into = edges(root, "flow", merge)
    assert {e.get("data-from") for e in into} == sources
    merge_x = float(blocks(root)[merge].find(f"{SVG}rect").get("x"))  # type: ignore[union-attr]
    ends = {e.get("d", "").rsplit("H", 1)[-1] for e in into if "H" in e.get("d", "")}
    assert all(float(x) == merge_x for x in ends)  # the edges that skip columns end at the merge itself
    assert "merge" in blocks(root)[merge].get("class", "")


def test_branches_of_two_heads():
    root = draw(SPECS / "two_heads.json")
    assert len(nodes(root, "input")) == 4 + 2
    layers = [c.get("data-layer") for c in nodes(root, "neuron")]
    assert {name: layers.count(name) for name in set(layers)} == {"trunk": 8, "risk": 1, "mood": 3}
    assert {e.get("data-from") for e in edges(root, "weight", "trunk")} == {"features"}
    assert {e.get("data-from") for e in edges(root, "weight", "mood")} == {"context"}
    assert {e.get("data-from") for e in edges(root, "flow", "mood_probs")} == {"mood"}
    # Branches side by side: trunk and mood share a column, risk and mood_probs the next.
    x = {c.get("data-layer"): float(c.get("cx")) for c in root.iter(f"{SVG}circle")}
    assert x["trunk"] == x["mood"] > x["features"] == x["context"]
    assert x["risk"] > x["trunk"]


@pytest.mark.parametrize(
    "name, example",
    [
        pytest.param(name, example, id=f"{name}-{example['name']}")
        for name, entry in sorted(LAYERS.items())
        for example in entry.examples
    ],
)
def test_every_layer_type_draws(name: str, example: dict[str, Any]):
    graph = nnspec.graph(nnspec.from_dict(copy.deepcopy(example)))
    root = draw(graph)
    drawn = blocks(root)
    neurons = {c.get("data-layer") for c in nodes(root, "neuron")}
    for node in graph.nodes:
        assert (node.name in drawn) != (node.name in neurons), node.name  # a block or neurons, never both
        if node.name in drawn:
            lines = block_text(drawn[node.name])
            assert lines[0].startswith(node.op) and lines[-1] == f"[{', '.join(map(str, node.shape))}]"
        if node.activation is not None:
            assert f"f = {node.activation.label}" in {t.text for t in texts(root, "fn")}


@pytest.mark.parametrize("spec", sorted(p.name for p in SPECS.glob("*.json")))
def test_every_example_spec_draws(spec: str):
    graph = nnspec.graph(SPECS / spec)
    root = draw(graph)
    drawn = set(blocks(root)) | {c.get("data-layer") for c in root.iter(f"{SVG}circle")}
    assert drawn == {i.name for i in graph.inputs} | {n.name for n in graph.nodes}


# --- the user's text is escaped ------------------------------------------------------------------


def test_user_text_is_escaped():
    spec = copy.deepcopy(TWO_THREE_ONE)
    spec["description"] = 'a <b> & "c" </svg> <script>alert(1)</script>'
    graph = nnspec.graph(nnspec.from_dict(spec))
    # Names are restricted by the format; a Graph built by other means may still carry any text.
    odd = 'a<&"b'
    last = replace(graph.nodes[-1], name=odd)
    graph = replace(graph, nodes=(*graph.nodes[:-1], last), outputs=(TensorInfo(odd, last.shape),))
    text = svg(graph)
    root = ET.fromstring(text.encode())
    assert root.find(f"{SVG}desc").text == spec["description"]  # type: ignore[union-attr]
    assert "<script>" not in text and odd not in text
    assert odd in {t.text for t in texts(root)}
    assert {c.get("data-layer") for c in nodes(root, "neuron")} == {"hidden", odd}


# --- the command ---------------------------------------------------------------------------------


def test_cli_writes_the_drawing(cli, tmp_path):
    out = tmp_path / "party.svg"
    out.write_text("old")
    result = cli("draw", SPECS / "party.json", "-o", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout
    root = ET.fromstring(out.read_bytes())
    assert len(nodes(root, "input")) + len(nodes(root, "neuron")) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["party.svg"]  # written under a temporary name, then renamed


def test_cli_default_output_is_name_in_cwd(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli("draw", SPECS / "three_layer.json").exit_code == 0
    ET.parse(tmp_path / "three_layer.svg")


def test_cli_invalid_spec_exits_2_and_writes_nothing(cli, write_spec, party, tmp_path):
    party["layers"][0]["weights"] = [[-4, 1, 0]]
    out = tmp_path / "net.svg"
    out.write_text("old")
    result = cli("draw", write_spec(party), "-o", out)
    assert result.exit_code == 2
    assert (
        "error:" in result.stderr and "layers[0].weights" in result.stderr and "expected shape [1, 2]" in result.stderr
    )
    assert "Traceback" not in result.output
    assert out.read_text() == "old"


def test_cli_unwritable_path_exits_2(cli, tmp_path):
    result = cli("draw", SPECS / "party.json", "-o", tmp_path / "missing" / "net.svg")
    assert result.exit_code == 2
    assert "cannot write" in result.stderr and "Traceback" not in result.output
    result = cli("draw", SPECS / "party.json", "-o", tmp_path)
    assert result.exit_code == 2 and "folder" in result.stderr


# --- a browser renders it ------------------------------------------------------------------------

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def png_pixels(data: bytes) -> np.ndarray:
    """An 8-bit RGB or RGBA PNG, non-interlaced (what Chromium writes), as an [H, W, channels] array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    assert depth == 8 and colour in (2, 6) and interlace == 0, "not an 8-bit RGB(A) non-interlaced PNG"
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(b"".join(idat))
    rows = np.zeros((height, stride), np.uint8)
    above = np.zeros(stride, np.int32)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        if kind == 0:
            row = line
        elif kind == 1:  # Sub: a running sum along the row, per channel
            row = np.cumsum(line.reshape(-1, bpp), axis=0).reshape(-1) & 255
        elif kind == 2:  # Up
            row = (line + above) & 255
        else:  # Average or Paeth: each byte depends on the one before it
            out = [0] * stride
            for i in range(stride):
                a = out[i - bpp] if i >= bpp else 0
                b = int(above[i])
                c = int(above[i - bpp]) if i >= bpp else 0
                if kind == 3:
                    predicted = (a + b) // 2
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    predicted = a if pa <= pb and pa <= pc else b if pb <= pc else c
                out[i] = (int(line[i]) + predicted) & 255
            row = np.array(out, np.int32)
        rows[y] = row
        above = row
    return rows.reshape(height, width, bpp)


def test_headless_chromium_renders_the_drawing(tmp_path):
    browser = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if browser is None:
        pytest.skip(f"no Chromium or Chrome on PATH (looked for {', '.join(BROWSERS)}) to render the SVG")
    picture = tmp_path / "party.svg"
    picture.write_text(svg(nnspec.graph(SPECS / "party.json")), encoding="utf-8")
    shot = tmp_path / "party.png"
    command = [
        browser,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",  # its own profile: other Chromiums may be running
        f"--screenshot={shot}",
        "--window-size=640,320",
        picture.as_uri(),
    ]
    try:
        done = subprocess.run(command, capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.skip(f"{browser} did not finish a screenshot within 30 s (it cannot start here)")
    if done.returncode != 0 or not shot.is_file():
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        pytest.skip(f"{browser} could not start here (exit {done.returncode}): {' | '.join(tail)}")
    pixels = png_pixels(shot.read_bytes())[:, :, :3].astype(int)
    assert pixels.shape[:2] == (320, 640)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1, "the screenshot is blank"
    assert (pixels == 255).all(axis=2).mean() > 0.5  # mostly the white background: the PNG was read right
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    assert ((r > 180) & (g < 110) & (b < 110)).any(), "no red: the negative weight (-4) was not drawn"
    assert ((b > 150) & (b > r + 60)).any(), "no blue: the positive weight and the bias were not drawn"
