"""The HTML report's layout: histogram labels inside the picture and clear of each other, numbers kept whole,
a wide table that scrolls in its own box, and (where Chromium is installed) no sideways scroll on a phone."""

from __future__ import annotations

import copy
import html as html_escape
import itertools
import math
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from conftest import SPECS
from onnx import numpy_helper

import nnspec
from nnspec.harness import HISTOGRAM_BINS
from nnspec.render import html

# Monospace fonts advance 0.5 to 0.6 em per character, so 0.62 em overestimates every label's width; a
# line of text spans about 0.8 em above its baseline and 0.25 em below.
ADVANCE, ASCENT, DESCENT = 0.62, 0.8, 0.25
# A count for every width the bars' labels take, the largest far above the rest (its neighbours' bars are flat).
STRESS_COUNTS = [0, 7, 999, 1_000, 9_999, 10_000, 123_456, 999_999, 1_000_000, 12_345_678, 3, 0, 1]


@pytest.fixture(scope="module")
def passing():
    return nnspec.check(nnspec.load(SPECS / "three_layer.json"))


@pytest.fixture(scope="module")
def failing():
    """A model whose first layer's weights are 1% off: every row of the table and every verdict line filled."""
    spec = nnspec.load(SPECS / "three_layer.json")
    model = nnspec.to_onnx(spec)
    for init in model.graph.initializer:
        if init.name == "hidden1.weights":
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.01), init.name))
    report = nnspec.check(spec, onnx_model=model.SerializeToString())
    assert not report.passed
    return report


@pytest.fixture(scope="module")
def stressed(passing):
    report = copy.deepcopy(passing)
    report.outputs[0].histogram = dict(zip(HISTOGRAM_BINS, STRESS_COUNTS, strict=True))
    return report


@pytest.fixture(params=["passing", "failing", "stressed"])
def page(request) -> str:
    return html(request.getfixturevalue(request.param))


def svgs(page: str) -> list[ET.Element]:
    return [ET.fromstring(svg) for svg in re.findall(r"<svg\b.*?</svg>", page, re.S)]


def css_rules(page: str) -> list[tuple[list[str], str]]:
    """(selectors, declarations) for each rule of the page's inline style sheet."""
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    return [([s.strip() for s in sel.split(",")], body) for sel, body in re.findall(r"([^{}]+)\{([^}]*)\}", style)]


def selectors_with(page: str, declaration: str) -> set[str]:
    """The selectors of every rule that sets `declaration` (a regex such as `white-space:\\s*nowrap`)."""
    return {s for selectors, body in css_rules(page) if re.search(declaration, body) for s in selectors}


def font_size(page: str, svg: ET.Element) -> float:
    """The SVG's font size, set on the <svg> or, failing that, by a `svg text` rule of the style sheet."""
    if svg.get("font-size"):
        return float(svg.get("font-size"))
    return float(re.search(r"svg text \{[^}]*?([\d.]+)px", page).group(1))


def picture_box(svg: ET.Element) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of what the SVG shows: its viewBox, or its width and height without one."""
    if svg.get("viewBox"):
        x, y, w, h = map(float, svg.get("viewBox").split())
        return x, y, x + w, y + h
    return 0.0, 0.0, float(svg.get("width")), float(svg.get("height"))


def text_corners(text: ET.Element, size: float) -> list[tuple[float, float]]:
    """The corners of the box a <text> element's glyphs fill at most, in order round the box, in SVG units."""
    x, y = float(text.get("x")), float(text.get("y"))
    width = len(text.text) * ADVANCE * size
    left = x - {"start": 0, "middle": width / 2, "end": width}[text.get("text-anchor", "start")]
    top, bottom = y - ASCENT * size, y + DESCENT * size
    corners = [(left, top), (left + width, top), (left + width, bottom), (left, bottom)]
    rotation = re.fullmatch(r"rotate\(([-\d.]+) ([-\d.]+) ([-\d.]+)\)", text.get("transform", "rotate(0 0 0)"))
    assert rotation, f"expected no transform other than rotate(angle cx cy), found {text.get('transform')!r}"
    angle, cx, cy = map(float, rotation.groups())
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [(cx + (px - cx) * cos - (py - cy) * sin, cy + (px - cx) * sin + (py - cy) * cos) for px, py in corners]


def overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> bool:
    """Whether two convex polygons overlap (separating axis theorem: none of their edges' normals separates them)."""
    for polygon in (a, b):
        for (x1, y1), (x2, y2) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
            normal = (y1 - y2, x2 - x1)
            pa = [normal[0] * x + normal[1] * y for x, y in a]
            pb = [normal[0] * x + normal[1] * y for x, y in b]
            if max(pa) <= min(pb) or max(pb) <= min(pa):
                return False
    return True


# --- the histogram ----------------------------------------------------------------------------------------


def test_every_histogram_label_lies_inside_the_picture(page):
    for svg in svgs(page):
        size, (left, top, right, bottom) = font_size(page, svg), picture_box(svg)
        for text in svg.iter("text"):
            for x, y in text_corners(text, size):
                assert left <= x <= right and top <= y <= bottom, f"label {text.text!r} reaches ({x:.1f}, {y:.1f})"


def test_no_two_histogram_labels_overlap(page):
    for svg in svgs(page):
        size = font_size(page, svg)
        texts = [(text.text, text_corners(text, size)) for text in svg.iter("text")]
        assert len(texts) > len(HISTOGRAM_BINS)  # a label per bin, and at least one count
        for (a, box_a), (b, box_b) in itertools.combinations(texts, 2):
            assert not overlap(box_a, box_b), f"labels {a!r} and {b!r} overlap"


def test_a_histogram_shows_its_exact_counts_in_the_bars_titles(stressed):
    titles = re.findall(r"<title>([^<]*)</title>", html(stressed))[1:]  # the first is the page's title
    assert titles == [f"{html_escape.escape(b)}: {n}" for b, n in zip(HISTOGRAM_BINS, STRESS_COUNTS, strict=True)]


def test_histograms_scale_down_to_a_narrow_window(page):
    assert all(svg.get("viewBox") for svg in svgs(page)), "an SVG without a viewBox cannot scale"
    shrinking = selectors_with(page, r"max-width:\s*100%") & selectors_with(page, r"height:\s*auto")
    assert any(selector.split()[-1] == "svg" for selector in shrinking), "no rule lets the SVGs shrink"


# --- the page's text --------------------------------------------------------------------------------------


class Elements(HTMLParser):
    """Each run of text in the body with the elements it sits in, and the attributes of each <table>'s parent."""

    VOID = {"br", "meta", "img", "hr", "input", "link"}

    def __init__(self, page: str):
        super().__init__()
        self.open: list[tuple[str, set[str]]] = []
        self.texts: list[tuple[str, list[tuple[str, set[str]]]]] = []
        self.table_parents: list[tuple[str, set[str]]] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.table_parents.append(self.open[-1])
        if tag not in self.VOID:
            self.open.append((tag, set((dict(attrs).get("class") or "").split())))

    def handle_endtag(self, tag):
        while self.open and self.open.pop()[0] != tag:
            pass

    def handle_data(self, data):
        if not any(tag in ("head", "svg") for tag, _ in self.open):
            self.texts.append((data, list(self.open)))


def matches(element: tuple[str, set[str]], selectors: set[str]) -> bool:
    tag, classes = element
    return tag in selectors or any(f".{c}" in selectors for c in classes)


def test_the_table_scrolls_in_its_own_box(page):
    parents = Elements(page).table_parents
    assert parents, "expected a results table"
    scrolling = selectors_with(page, r"overflow-x:\s*auto")
    assert all(matches(parent, scrolling) for parent in parents), f"tables sit in {parents}, which do not scroll"


def test_numbers_never_break_inside(page):
    """A word holding a digit (1.23e-05, [3,1], -1000) sits in an element that does not wrap. A lone character
    cannot break; the template lets a word over 32 characters (a long path) break, so that it cannot push the
    page sideways."""
    nowrap = selectors_with(page, r"white-space:\s*nowrap")
    words = [
        (word, where)
        for text, where in Elements(page).texts
        for word in text.split()
        if re.search(r"\d", word) and 1 < len(word) <= 32
    ]
    assert len(words) > 10
    broken = [word for word, where in words if not any(matches(element, nowrap) for element in where)]
    assert not broken, f"these may break inside: {broken}"


# --- in a browser -----------------------------------------------------------------------------------------

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
PHONE = (375, 800)


def chromium(*args: str) -> str:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=2000"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=60, check=True).stdout


def png_pixels(data: bytes) -> np.ndarray:
    """The pixels of an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes), as (height, width, channels)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and not interlace
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    bpp = 3 if color == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, width * bpp + 1)
    rows = [np.zeros(width * bpp, np.int64)]
    for kind, line in zip(raw[:, 0], raw[:, 1:].astype(np.int64), strict=True):
        prev = rows[-1]
        if kind == 0:
            row = line
        elif kind == 1:  # Sub: a running sum along the row, channel by channel
            row = np.cumsum(line.reshape(width, bpp), axis=0).reshape(-1)
        elif kind == 2:  # Up
            row = line + prev
        else:  # Average or Paeth: each byte depends on the one just decoded
            row, above = line.tolist(), prev.tolist()
            for i in range(len(row)):
                left, up_left = (row[i - bpp], above[i - bpp]) if i >= bpp else (0, 0)
                up = above[i]
                if kind == 3:
                    row[i] = (row[i] + (left + up) // 2) & 255
                else:
                    guess = left + up - up_left
                    nearest = min(
                        (abs(guess - left), 0, left), (abs(guess - up), 1, up), (abs(guess - up_left), 2, up_left)
                    )
                    row[i] = (row[i] + nearest[2]) & 255
            row = np.array(row)
        rows.append(row & 255)
    return np.stack(rows[1:]).reshape(height, width, bpp)


@pytest.mark.parametrize("name", ["passing", "failing"])
def test_a_phone_wide_window_does_not_scroll_sideways(request, tmp_path, name):
    if CHROMIUM is None:
        pytest.skip("chromium not installed")
    page = html(request.getfixturevalue(name))
    # Headless Chromium's window is at least 500 px wide, so the page is measured in a 375 px frame.
    host = tmp_path / "host.html"
    host.write_text(
        f'<!doctype html><title>-</title><body style="margin:0"><iframe id="f" style="border:0; width:{PHONE[0]}px; '
        f'height:{PHONE[1]}px" srcdoc="{html_escape.escape(page)}"></iframe><script>f.onload = () => '
        "{ const root = f.contentDocument.documentElement; document.title = root.scrollWidth + ' ' + root.clientWidth; }"
        "</script>"
    )
    scroll_width, client_width = map(
        int, re.search(r"<title>(\d+) (\d+)</title>", chromium("--dump-dom", host.as_uri())).groups()
    )
    assert client_width <= PHONE[0] and scroll_width <= client_width, f"{scroll_width} px of content in {client_width}"

    report, shot = tmp_path / "report.html", tmp_path / "shot.png"
    report.write_text(page)
    chromium(f"--screenshot={shot}", f"--window-size={PHONE[0]},{PHONE[1]}", report.as_uri())
    pixels = png_pixels(shot.read_bytes())
    assert pixels.shape[:2] == (PHONE[1], PHONE[0])
    drawn = (pixels[..., :3] != pixels[0, 0, :3]).any(axis=2)  # pixels unlike the background's
    assert drawn.mean() > 0.02, "the screenshot is blank"
