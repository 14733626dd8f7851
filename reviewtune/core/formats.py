"""The files reviewtune takes under incoming/: which names, how large, how each is read. One place for these facts."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024
# The largest object accepted (as stored, compressed or not), checked from the event's size before reading it; and the
# largest content a .gz file may expand to (a gzip bomb is refused while it is being read).
MAX_FILE_BYTES = 256 * MiB
MAX_DECOMPRESSED_BYTES = 256 * MiB
# Longest field and longest physical line; a longer one is refused with its line number, so memory stays bounded.
MAX_FIELD_CHARS = 1 * MiB
MAX_LINE_CHARS = 4 * MiB
# Most reviews a file may hold. What the start keeps per review (its text, its digest for duplicates, its place in a
# split, its hash for the champion comparison) is about 600 bytes beside the text: 985,552 distinct 60-character
# reviews (66 MiB) took +600 MiB at peak, within the function's 2,048 MB; 256 MiB of such reviews (3.8 million)
# took +2,253 MiB, past it. Split such a file. At this limit and MAX_FILE_BYTES, the worst case (a million distinct
# reviews, each with one emoji, so that Python keeps it at 4 bytes a character) peaks at 1,650 MiB with the handler's
# imports (bench/start_memory.py, run by `make bench`).
MAX_ROWS = 1_000_000
# Most physical lines a file may hold: lines holding no review (blank, or only separators) are not reviews, yet each
# costs reading time; without a bound, 256 MiB of them (a 1 MiB .gz) would take most of the function's time.
MAX_LINES = 4 * MAX_ROWS
# Most combining marks in a row (accents stacked on one letter): Unicode's stream-safe text format (UAX #15) allows 30,
# and no language needs more. Normalizing a review, as reviews are compared, sorts a run of marks one by one: 80,000
# mixed accents on one letter took 28 s, so a file of such runs would outlast the function.
MAX_COMBINING_MARKS = 30


@dataclass(frozen=True)
class FileFormat:
    suffix: str  # lower case, as listed to people
    delimiter: str
    compressed: bool

    @property
    def kind(self) -> str:
        return "TSV" if self.delimiter == "\t" else "CSV"


FORMATS = (
    FileFormat(".tsv", "\t", False),
    FileFormat(".csv", ",", False),
    FileFormat(".tsv.gz", "\t", True),
    FileFormat(".csv.gz", ",", True),
)
ACCEPTED_SUFFIXES = tuple(f.suffix for f in FORMATS)


def accepted_formats_text() -> str:
    """How the accepted formats are named to people, e.g. in a rejection."""
    return ", ".join(ACCEPTED_SUFFIXES) + " (UTF-8, any letter case)"


def file_format(key: str) -> FileFormat | None:
    """The format of a key from its name, in any letter case; None for any other file."""
    lower = key.lower()
    for candidate in sorted(FORMATS, key=lambda f: -len(f.suffix)):
        if lower.endswith(candidate.suffix):
            return candidate
    return None
