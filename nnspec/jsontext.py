"""JSON text read safely: value count, nesting depth and duplicate keys checked before it is parsed.

orjson parses fast and refuses NaN, but it would build any number of objects a text asks for, nests up
to its own fixed 1024 levels, and keeps the last of two equal keys silently. A spec is reviewed as
data: `{"weights": A, "weights": B}` would show a reviewer A while another reader runs B.

The checks need only the text's structure: its quotes, brackets and braces, and the object keys. Those
bytes are found with NumPy, a block of the text at a time, so that a long array of numbers costs no
Python-level work; which brackets are outside strings, how deep each one is and which object a key
belongs to are then worked out over those positions alone, in rounds of a bounded number of them.

`parse` can also read a large array of plain numbers (inline weights) straight into a NumPy array, one
row at a time, instead of building a Python list of floats for every number first.
"""

from __future__ import annotations

import bisect
import gc
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from .limits import Limits, env_var

# A JSON string as the checks read it. A backslash followed by a line break matches nothing: the text is
# malformed there, and everything from that quote on is left to the parser.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_COLON = re.compile(rb"\s*:")  # after a string: it is an object key
_OBJECT_TEXT = re.compile(rb"[ \t\n\r]*\{")
_SPACE = b" \t\n\r"  # JSON's whitespace
_QUOTE, _OPEN, _CLOSE, _OPEN_OBJECT, _CLOSE_OBJECT, _COMMA, _COLON_BYTE = b'"[]{},:'
_REGEX_SPACE = np.frombuffer(b" \t\n\r\x0b\x0c", np.uint8)  # what `\s` matches in a bytes pattern

_BLOCK = 1 << 18  # bytes compared per NumPy pass: its temporary masks stay in the CPU's cache
_ROUND = 1 << 18  # structural bytes worked out together; memory stays bounded whatever the text
# Arrays of numbers written in at least this many bytes are read by `parse` into NumPy arrays, piece by
# piece of about this size; smaller ones are left to orjson whole.
_ARRAY_BYTES = 1 << 16
_ARRAY_MAX_DEPTH = 256  # deeper texts are parsed whole (the reading below recurses per level)

JsonPath = tuple[str | int, ...]  # keys and indices from the root to a value
ArraysAt = Callable[[Any, JsonPath], bool]


@dataclass(frozen=True)
class Problem:
    """Why a JSON text is refused, and where (1-based line and column; 0 when it is the whole text)."""

    message: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}" if self.line else self.message


class Refused(Exception):
    """`parse` found a Problem before parsing."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def problem(data: bytes, limits: Limits) -> Problem | None:
    """The first reason to refuse `data` before parsing it, or None.

    Values are counted from above: every array element and object member but the first of its
    container follows a comma, so commas (inside strings too) + containers + 1 bound them. The
    commas are counted first, so a text with too many is refused before its structure is looked at.
    Malformed JSON is left to the parser, which explains it better.
    """
    return _Scan(data, limits).problem


def loads(data: bytes) -> Any:
    """orjson.loads with the cyclic garbage collector paused: building millions of lists is 7x faster."""
    with _gc_paused():
        return orjson.loads(data)


def parse(data: bytes, limits: Limits, arrays_at: ArraysAt | None = None) -> Any:
    """`data` parsed once `problem` finds nothing (Refused otherwise; orjson.JSONDecodeError if malformed).

    Where `arrays_at(root, path)` holds (`root` being the parsed text, `path` the keys and indices that
    lead to the value), an array of at least _ARRAY_BYTES of text that holds only numbers, as a
    rectangular nested list, comes back as a float64 NumPy array, equal to `np.asarray` of the list
    orjson would give. It is read a row at a time, so its numbers never all exist as Python floats.
    Any other value is exactly what `loads` gives, and so are malformed texts' errors.
    """
    scan = _Scan(data, limits, _ARRAY_BYTES if arrays_at is not None else 0)
    if scan.problem is not None:
        raise Refused(scan.problem)
    if arrays_at is None or not scan.quiet or scan.deepest > _ARRAY_MAX_DEPTH or not _OBJECT_TEXT.match(data):
        return loads(data)
    with _gc_paused():
        try:
            return _ArrayReader(data, scan.quiet, arrays_at).parse()
        except (_Malformed, orjson.JSONDecodeError):
            pass
    return loads(data)  # raises the parser's own message, for the whole text


@contextmanager
def _gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --- the checks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Quiet:
    """A stretch of text outside strings without quotes or braces: arrays of numbers, if anything."""

    start: int
    end: int
    containers_before: int  # arrays and objects opened before `start`


class _Opens:
    """A round's opening brackets (outside strings): where each is and the depth it opens, found by depth."""

    def __init__(self, at: np.ndarray, depth: np.ndarray, n: int) -> None:
        self.at, self.depth, self.n = at, depth, n
        self.by_depth = np.lexsort((at, depth))
        self.ranked = depth[self.by_depth] * n + at[self.by_depth]  # sorted by depth, then position

    def before(self, depth: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Per position, the last opening before it at the given depth; -1 where this round has none."""
        i = np.searchsorted(self.ranked, depth * self.n + positions) - 1
        if not len(self.ranked):
            return np.full(len(positions), -1)
        found = self.by_depth[np.maximum(i, 0)]
        return np.where((i >= 0) & (self.depth[found] == depth), self.at[found], -1)

    def last(self, depth: int) -> int:
        """The last opening at `depth` in this round (there must be one)."""
        return int(self.at[self.by_depth[np.searchsorted(self.ranked, (depth + 1) * self.n) - 1]])


class _Scan:
    """One pass over a text's structure: its first problem, its depth, and (if asked) its quiet stretches.

    A round handles the quotes, brackets and braces of some blocks of the text. State carried between
    rounds: where the text resumes (after a string that crossed into the next round), the open
    containers (their positions, outermost first) and the keys of the open objects.
    """

    def __init__(self, data: bytes, limits: Limits, quiet: int = 0) -> None:
        self.data = data
        self.bytes = np.frombuffer(data, np.uint8)
        self.value_limit = limits.max_json_values
        self.depth_limit = limits.max_json_depth
        self.escapes = b"\\" in data  # without any, strings are simply the text between pairs of quotes
        self.resume = 0  # tokens before this lie in a string that began in an earlier round
        self.stop = len(data)  # a quote that starts no valid string: the parser will explain the text there
        self.stack: list[int] = []  # positions of the open arrays and objects, outermost first
        self.keys: dict[int, dict[bytes, int]] = {}  # per open object (its position): key -> where it was
        self.opened = 0  # containers opened so far
        self.deepest = 0
        self.quiet_bytes = quiet
        self.quiet: list[_Quiet] = []
        self.loud_end, self.loud_end_opened = 0, 0  # end of the last string or brace, and containers before it
        self.problem = self._run()

    def _run(self) -> Problem | None:
        # Commas + containers + 1 can exceed the limit only in a text longer than it.
        self.values = self._count(_COMMA) + 1 if len(self.data) >= self.value_limit else None
        if self.values is not None and self.values > self.value_limit:
            return Problem(self._too_many(f"the text has {self.values - 1:,} commas"))
        for tokens in self._rounds():
            if (found := self._round(tokens)) is not None:
                return found
        stop = np.array([self.stop])
        self._note_quiet(stop, stop, np.array([], dtype=np.int64))  # the stretch up to the end
        return None

    def _too_many(self, found: str) -> str:
        return (
            f"expected at most {self.value_limit:,} JSON values ({env_var('max_json_values')}), found more ({found}); "
            "large arrays belong in .npy/.npz files"
        )

    def _count(self, byte: int) -> int:
        return sum(int(np.count_nonzero(block == byte)) for _, block in _blocks(self.bytes))

    def _rounds(self) -> Iterator[np.ndarray]:
        """Positions of every quote, bracket and brace (inside strings too), in order, some blocks at a time."""
        found: list[np.ndarray] = []
        count = 0
        for lo, block in _blocks(self.bytes):
            if lo >= self.stop:
                return
            mask = block >= _OPEN  # [ \ ] ^ _ ` a-z { | } ~ and non-ASCII: rare in numbers, which is what counts
            mask |= block == _QUOTE
            candidates = np.flatnonzero(mask)
            byte = block[candidates]
            structural = (byte == _QUOTE) | (byte == _OPEN) | (byte == _CLOSE)
            structural |= (byte == _OPEN_OBJECT) | (byte == _CLOSE_OBJECT)
            found.append(candidates[structural] + lo)
            count += len(found[-1])
            if count >= _ROUND:
                yield np.concatenate(found)
                found, count = [], 0
        if found:
            yield np.concatenate(found)

    def _strings(self, quotes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(starts, ends) of the strings that begin at `quotes` (ends exclusive); sets `stop` and `resume`."""
        data = self.data
        if not self.escapes:
            starts, ends = quotes[0::2], quotes[1::2] + 1
            if len(quotes) % 2:  # the last string ends in a later round, or never
                close = data.find(b'"', int(quotes[-1]) + 1)
                if close < 0:
                    self.stop, starts = int(quotes[-1]), starts[:-1]
                else:
                    ends = np.append(ends, close + 1)
        else:
            at = quotes.tolist()
            start_list, end_list = [], []
            i = 0
            while i < len(at):
                match = _STRING.match(data, at[i])
                if match is None:
                    self.stop = at[i]
                    break
                start_list.append(at[i])
                end_list.append(match.end())
                i = bisect.bisect_left(at, match.end(), i + 1)
            starts, ends = np.array(start_list, dtype=np.int64), np.array(end_list, dtype=np.int64)
        if len(ends):
            self.resume = max(self.resume, int(ends[-1]))
        return starts, ends

    def _keys(self, ends: np.ndarray) -> np.ndarray:
        """Which of the strings ending at `ends` are object keys (followed by a colon)."""
        inside = ends < len(self.data)
        after = self.bytes[np.minimum(ends, len(self.data) - 1)]
        is_key = inside & (after == _COLON_BYTE)
        for i in np.flatnonzero(inside & np.isin(after, _REGEX_SPACE)).tolist():
            is_key[i] = _COLON.match(self.data, int(ends[i])) is not None
        return is_key

    def _round(self, tokens: np.ndarray) -> Problem | None:
        tokens = tokens[tokens >= self.resume]
        byte = self.bytes[tokens]
        starts, ends = self._strings(tokens[byte == _QUOTE])
        brackets = tokens[(byte != _QUOTE) & (tokens < self.stop)]
        if len(starts):
            before = np.searchsorted(starts, brackets, side="right") - 1
            brackets = brackets[(before < 0) | (brackets >= ends[np.maximum(before, 0)])]
        is_key = self._keys(ends)

        # Depth after each bracket: a running sum that never goes below 0 (a stray closing bracket at the
        # top level is the parser's to explain), which is the sum minus its lowest point so far.
        kind = self.bytes[brackets]
        opening = (kind == _OPEN) | (kind == _OPEN_OBJECT)
        total = len(self.stack) + np.cumsum(np.where(opening, 1, -1))
        depth = total - np.minimum(np.minimum.accumulate(total), 0) if len(total) else total
        opens = _Opens(brackets[opening], depth[opening], len(self.data) + 1)

        limit_at, refused = self._limit_problem(opens)
        if (repeated := self._key_problem(starts[is_key], ends[is_key], brackets, depth, opens, limit_at)) is not None:
            return repeated
        if refused is not None:
            return refused

        if self.quiet_bytes:
            braces = brackets[(kind == _OPEN_OBJECT) | (kind == _CLOSE_OBJECT)]
            loud_starts, loud_ends = np.concatenate([starts, braces]), np.concatenate([ends, braces + 1])
            order = np.argsort(loud_starts, kind="stable")
            self._note_quiet(loud_starts[order], loud_ends[order], opens.at)
        self.opened += len(opens.at)
        if len(depth):  # the containers still open: those below the lowest depth reached, then the new ones
            self.deepest = max(self.deepest, int(depth.max()))
            del self.stack[min(len(self.stack), int(depth.min())) :]
            self.stack += [opens.last(level) for level in range(len(self.stack) + 1, int(depth[-1]) + 1)]
            if self.keys:
                open_now = set(self.stack)
                self.keys = {at: keys for at, keys in self.keys.items() if at in open_now}
        return None

    def _limit_problem(self, opens: _Opens) -> tuple[int, Problem | None]:
        """The first opening bracket one value too many or one level too deep, and where it is."""
        at, found = len(self.data), None
        if self.values is not None and len(opens.at) > (allowed := self.value_limit - self.values - self.opened):
            at = int(opens.at[allowed])
            found = Problem(self._too_many("counting commas and brackets up to here"), *_line_column(self.data, at))
        too_deep = np.flatnonzero(opens.depth > self.depth_limit)
        if len(too_deep) and int(opens.at[too_deep[0]]) < at:
            at = int(opens.at[too_deep[0]])
            found = Problem(
                f"expected arrays and objects nested at most {self.depth_limit} deep ({env_var('max_json_depth')}), "
                "found deeper",
                *_line_column(self.data, at),
            )
        return at, found

    def _key_problem(
        self, starts: np.ndarray, ends: np.ndarray, brackets: np.ndarray, depth: np.ndarray, opens: _Opens, until: int
    ) -> Problem | None:
        """The first key (of those at `starts`, before `until`) that its object already has."""
        # A key's container: the last one opened before it at the key's depth, in this round or else carried.
        last_bracket = np.searchsorted(brackets, starts) - 1
        key_depth = np.where(
            last_bracket >= 0, depth[np.maximum(last_bracket, 0)] if len(depth) else 0, len(self.stack)
        )
        containers = opens.before(key_depth, starts)
        for at, end, level, container in zip(
            starts.tolist(), ends.tolist(), key_depth.tolist(), containers.tolist(), strict=True
        ):
            if at > until:
                break
            if level == 0:  # a key outside any container: malformed, left to the parser
                continue
            container = container if container >= 0 else self.stack[level - 1]
            if self.data[container] != _OPEN_OBJECT:
                continue
            raw = self.data[at:end]
            # "\u0061" and "a" are the same key: escaped keys are compared decoded, as UTF-8 like the rest
            key = _unescaped(raw) if b"\\" in raw else raw
            first = self.keys.setdefault(container, {}).setdefault(key, at)
            if first != at:
                line, column = _line_column(self.data, first)
                return Problem(
                    f"expected each key once in an object, found {key[1:-1].decode('utf-8', 'replace')!r} again "
                    f"(first at line {line}, column {column}); JSON readers disagree on which one counts",
                    *_line_column(self.data, at),
                )
        return None

    def _note_quiet(self, loud_starts: np.ndarray, loud_ends: np.ndarray, opens: np.ndarray) -> None:
        """Record the gaps of at least `quiet_bytes` before each string or brace (outside strings)."""
        if not self.quiet_bytes or not len(loud_starts):
            return
        gap_starts = np.concatenate([[self.loud_end], loud_ends[:-1]])
        wide = np.flatnonzero(loud_starts - gap_starts >= self.quiet_bytes)
        for i in wide.tolist():
            start = int(gap_starts[i])
            opened = self.loud_end_opened if i == 0 else self.opened + int(np.searchsorted(opens, start))
            self.quiet.append(_Quiet(start, int(loud_starts[i]), opened))
        self.loud_end = int(loud_ends[-1])
        self.loud_end_opened = self.opened + int(np.searchsorted(opens, self.loud_end))


def _blocks(text: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(offset, block) over `text`, _BLOCK bytes at a time."""
    for lo in range(0, len(text), _BLOCK):
        yield lo, text[lo : lo + _BLOCK]


def _unescaped(raw: bytes) -> bytes:
    """A quoted key with its escapes decoded, quoted again; a malformed escape is left for the parser."""
    try:
        return b'"' + str(orjson.loads(raw)).encode() + b'"'
    except orjson.JSONDecodeError:
        return raw


def _line_column(data: bytes, pos: int) -> tuple[int, int]:
    start = data.rfind(b"\n", 0, pos) + 1
    return data.count(b"\n", 0, pos) + 1, len(data[start:pos].decode("utf-8", "replace")) + 1


# --- large arrays of numbers, read as arrays ---------------------------------------------------------


class _Malformed(Exception):
    """Part of the text does not parse: the whole text is parsed again, for the parser's message."""


@dataclass(frozen=True)
class _Span:
    """An array of numbers in the text, from its `[` (at `brackets[first]`) to its `]` (`brackets[last]`)."""

    brackets: np.ndarray  # positions of the brackets of its quiet stretch
    opening: np.ndarray  # which of them are `[`
    depth: np.ndarray  # depth within the stretch after each of them
    first: int
    last: int

    @property
    def start(self) -> int:
        return int(self.brackets[self.first])

    @property
    def end(self) -> int:
        return int(self.brackets[self.last]) + 1

    def part(self, first: int, last: int) -> _Span:
        return _Span(self.brackets, self.opening, self.depth, first, last)


class _ArrayReader:
    """The text parsed with each large array of numbers cut out, then put back, as an array where wanted.

    The arrays are cut from the quiet stretches the scan found, each replaced by `[]`. Containers appear
    in the parsed text in the order of their opening brackets, so the cut ones are found again by
    counting containers in that order.
    """

    def __init__(self, data: bytes, quiet: list[_Quiet], arrays_at: ArraysAt) -> None:
        self.data = data
        self.view = memoryview(data)
        self.arrays_at = arrays_at
        self.spans: dict[int, _Span] = {}  # by the index of the `[]` left in its place among all containers
        cut_containers = 0
        for stretch in quiet:
            for span, before in _arrays_in(data, stretch):
                self.spans[before - cut_containers] = span
                cut_containers += (span.last - span.first - 1) // 2  # the arrays nested in it

    def parse(self) -> Any:
        if not self.spans:
            return loads(self.data)
        pieces: list[bytes | memoryview] = []
        pos = 0
        for span in self.spans.values():
            pieces += [self.view[pos : span.start], b"[]"]
            pos = span.end
        pieces.append(self.view[pos:])
        self.root = orjson.loads(b"".join(pieces))
        self.seen = 0  # containers met in the order they open, the root being number 0
        self._put_back(self.root, ())
        return self.root

    def _put_back(self, container: dict[str, Any] | list[Any], path: JsonPath) -> None:
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, value in items:
            if not self.spans:
                return
            if isinstance(value, dict | list):
                self.seen += 1
                if (span := self.spans.pop(self.seen, None)) is not None:
                    container[key] = self._value(span, (*path, key))  # type: ignore[index]
                else:
                    self._put_back(value, (*path, key))

    def _value(self, span: _Span, path: JsonPath) -> Any:
        if self.arrays_at(self.root, path) and (array := self._array(span)) is not None:
            return array
        return orjson.loads(self.view[span.start : span.end])  # as the parser would have it

    def _array(self, span: _Span) -> np.ndarray | None:
        """The span as a float64 array; None when it is not a rectangular array of numbers."""
        if span.end - span.start < _ARRAY_BYTES:
            return _numbers(orjson.loads(self.view[span.start : span.end]))
        if span.last == span.first + 1:
            return self._flat(span)
        # The items: the arrays one level down, separated by a comma and nothing else
        inner = slice(span.first + 1, span.last)
        level = span.depth[span.first]
        item_starts = np.flatnonzero(span.opening[inner] & (span.depth[inner] == level + 1)) + span.first + 1
        item_ends = np.flatnonzero(span.depth[inner] == level) + span.first + 1
        item_at = span.brackets[np.column_stack((item_starts, item_ends)).ravel()].tolist()
        edges = [span.start + 1, *item_at, span.end - 1]
        data = self.data
        if data[edges[0] : edges[1]].strip(_SPACE) or data[edges[-2] + 1 : edges[-1]].strip(_SPACE):
            return None
        if any(data[edges[i] + 1 : edges[i + 1]].strip(_SPACE) != b"," for i in range(2, len(edges) - 2, 2)):
            return None
        out: np.ndarray | None = None
        for i, (first, last) in enumerate(zip(item_starts.tolist(), item_ends.tolist(), strict=True)):
            item = self._array(span.part(first, last))
            if item is None or (out is not None and item.shape != out.shape[1:]):
                return None
            if out is None:
                out = np.empty((len(item_starts), *item.shape))
            out[i] = item
        return out

    def _flat(self, span: _Span) -> np.ndarray | None:
        """A one-level array, parsed a piece of about _ARRAY_BYTES at a time (cut after a comma)."""
        pieces = []
        pos, end = span.start + 1, span.end - 1
        while True:
            cut = end if end - pos <= _ARRAY_BYTES else self.data.find(b",", pos + _ARRAY_BYTES, end)
            cut = end if cut < 0 else cut
            items = orjson.loads(b"".join((b"[", self.view[pos:cut], b"]")))
            if not items and (pos, cut) != (span.start + 1, end):  # `[1,,2]` or `[1,]`
                raise _Malformed
            if (numbers := _numbers(items)) is None:
                return None
            pieces.append(numbers)
            if cut == end:
                return np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
            pos = cut + 1


def _arrays_in(data: bytes, stretch: _Quiet) -> Iterator[tuple[_Span, int]]:
    """The outermost arrays of at least _ARRAY_BYTES wholly inside a quiet stretch, each with the number of
    containers opened before it."""
    text = np.frombuffer(data, np.uint8, count=stretch.end - stretch.start, offset=stretch.start)
    found = []
    for lo, block in _blocks(text):
        is_bracket = block == _OPEN
        is_bracket |= block == _CLOSE
        found.append(np.flatnonzero(is_bracket) + (stretch.start + lo))
    brackets = np.concatenate(found)
    opening = np.frombuffer(data, np.uint8)[brackets] == _OPEN
    depth = np.cumsum(np.where(opening, 1, -1))
    # Each `[` pairs with the next bracket at its depth, when that is a `]` (depth counted before a `]`).
    level = np.where(opening, depth, depth + 1)
    order = np.lexsort((brackets, level))
    pairs = np.flatnonzero(opening[order[:-1]] & ~opening[order[1:]] & (level[order[:-1]] == level[order[1:]]))
    firsts, lasts = order[pairs], order[pairs + 1]
    wide = brackets[lasts] - brackets[firsts] + 1 >= _ARRAY_BYTES
    opens_before = np.cumsum(opening) - opening  # in the stretch, before each bracket
    end = -1
    for first, last in sorted(zip(firsts[wide].tolist(), lasts[wide].tolist(), strict=True)):
        if first > end:  # not inside the previous one
            yield _Span(brackets, opening, depth, first, last), stretch.containers_before + int(opens_before[first])
            end = last


def _numbers(items: Any) -> np.ndarray | None:
    """np.asarray of parsed numbers, as float64, when they are a rectangular array of int64s and floats."""
    try:
        array = np.asarray(items)
    except (ValueError, OverflowError):
        return None
    return array.astype(np.float64, copy=False) if array.dtype in (np.float64, np.int64) else None
