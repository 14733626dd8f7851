"""Runs of combining marks (accents stacked on one letter) longer than MAX_COMBINING_MARKS, found in a line before any
review is normalized: normalizing sorts a run of marks one by one, in time that grows with the square of its length.

A mark here is a character that continues such a run once normalized: a combining mark, or a character whose NFKD
form is only marks (U+0F73 is two Tibetan vowel signs; half-width U+FF9E is U+3099). Those of the Basic Multilingual
Plane make one class of ranges (fast only within that plane); a line's characters in the blocks past U+FFFF that hold
marks are first written as U+0300 (a mark) or U+FFFD (not one), so positions are kept.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from reviewtune.core.formats import MAX_COMBINING_MARKS

# Every mark past U+FFFF is below U+1F000 (Unicode 14-16); emoji are past it, so a line of emoji is not rewritten.
_ASTRAL_MARK_BLOCKS = re.compile("[\U00010000-\U0001efff]")


def _is_mark(char: str) -> bool:
    return all(unicodedata.combining(part) for part in unicodedata.normalize("NFKD", char))


def _as_class(codes: list[int]) -> str:
    """A regular-expression class of ``codes`` (sorted code points), as ranges."""
    ranges, start = [], codes[0]
    for previous, current in zip(codes, [*codes[1:], None], strict=True):
        if current != previous + 1:
            last = re.escape(chr(previous))
            ranges.append(f"{re.escape(chr(start))}-{last}" if previous > start else last)
            start = current
    return "".join(ranges)


_RUN = re.compile(
    f"[{_as_class([code for code in range(0x10000) if not 0xD800 <= code <= 0xDFFF and _is_mark(chr(code))])}]"
    f"{{{MAX_COMBINING_MARKS + 1},}}"
)


@functools.cache
def _astral_marks() -> frozenset[str]:
    return frozenset(chr(code) for code in range(0x10000, 0x1F000) if _is_mark(chr(code)))


def too_long_run(line: str) -> re.Match[str] | None:
    """The first run of more than MAX_COMBINING_MARKS marks in ``line``, if any (its length and position as in the
    line)."""
    if _ASTRAL_MARK_BLOCKS.search(line):
        marks = _astral_marks()
        line = _ASTRAL_MARK_BLOCKS.sub(lambda char: "\u0300" if char.group() in marks else "\ufffd", line)
    return _RUN.search(line)
