"""Read a dropped review file as a stream, strictly: every row checked, nothing guessed, memory independent of size.

The object's body (a botocore StreamingBody or any binary file object) is read through a counting, hashing wrapper,
``gzip.GzipFile`` for ``.gz`` files (the expanded size bounded too), ``io.TextIOWrapper`` (UTF-8, BOM or not) and
Python's ``csv`` with ``strict=True``. Valid rows are yielded one at a time; once a problem is found nothing more is
yielded, but the file is read to the end to count every problem. Any problem raises a DatasetError with line numbers
and short excerpts (see ``reasons``).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import itertools
import re
import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from reviewtune.core import display
from reviewtune.core.combining_marks import too_long_run
from reviewtune.core.errors import DatasetError
from reviewtune.core.formats import (
    MAX_COMBINING_MARKS,
    MAX_DECOMPRESSED_BYTES,
    MAX_FIELD_CHARS,
    MAX_FILE_BYTES,
    MAX_LINE_CHARS,
    MAX_LINES,
    MAX_ROWS,
    FileFormat,
)
from reviewtune.core.reasons import Problems, bounded, excerpt

TEXT_COLUMNS = ("review_body", "review_text", "text", "review", "body", "content")
SENTIMENT_COLUMNS = ("sentiment", "label")
RATING_COLUMNS = ("rating", "stars", "star_rating")
SPLIT_COLUMN = "split"
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}
_LONGEST_SPLIT_NAME = max(len(name) for name in SPLIT_ALIASES)
SENTIMENT_VALUES = ("-1", "0", "1")
RATING_VALUES = ("1", "2", "3", "4", "5")
_HEADER_NAMES_SHOWN = 10
_COLUMNS_LISTED = 5  # of a column named twice or more
_SEPARATORS = ((",", "commas"), (";", "semicolons"), ("\t", "tabs"), ("|", "pipes"))
# what a line without content holds: spaces and separators (a spreadsheet's empty row)
_BLANK_LINE = " \t\r\n" + "".join(mark for mark, _ in _SEPARATORS)
# Excel's first line naming the separator ("sep=;"), before the header; as saved again by a spreadsheet it may be
# quoted or followed by more separators ('"sep=,"', "sep=,,,"). The separator is printable or a tab.
_SEP_DIRECTIVE = re.compile(r'"?sep=([^\x00-\x08\x0a-\x1f\x7f"\udc80-\udcff])"?\1*', re.IGNORECASE | re.ASCII)
_CHUNK = 1024 * 1024
# minus signs other than ASCII's hyphen-minus: MINUS SIGN, EN DASH, HYPHEN, NON-BREAKING HYPHEN, SMALL and FULLWIDTH
# HYPHEN-MINUS; in a label they can mean only a minus
_MINUS_SIGNS = str.maketrans(dict.fromkeys("\u2212\u2013\u2010\u2011\ufe63\uff0d", "-"))
# a whole number with one or two zero decimals (a decimal point or comma; three would read as thousands in some locales)
_WHOLE_NUMBER = re.compile(r"([+-]?[0-9]{1,3})(?:[.,]0{1,2})?")
_PLAIN_LABELS = frozenset(SENTIMENT_VALUES + RATING_VALUES)
# full-width digits, signs, point and comma (an East Asian input method's) as their ASCII forms
_FULL_WIDTH = str.maketrans({chr(0xFF10 + n): str(n) for n in range(10)} | {"\uff0b": "+", "\uff0e": ".", "\uff0c": ","})
# a text that is a missing-value marker (R's NA, pandas' NaN, SQL's NULL, a spreadsheet's N/A): an empty review
_MISSING_TEXTS = frozenset({"na", "n/a", "nan", "null", "#n/a"})
_MISSING_TEXT_LONGEST = max(len(marker) for marker in _MISSING_TEXTS)
# What a file that is not text starts with, and what it is; matched on the first line as read (bytes that are not
# UTF-8 become lone surrogates, so each magic is decoded the same way).
_NOT_TEXT = tuple((magic.decode("utf-8", "surrogateescape"), what) for magic, what in (
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Excel workbook (.xls) or another Office document, not text; open it "
                                          "and save the sheet as CSV UTF-8"),
    (b"%PDF-", "a PDF document, not text; export the reviews as CSV UTF-8"),
    (b"BZh", "bzip2-compressed; decompress it, or compress it with gzip and name it .gz"),
    (b"\xfd7zXZ\x00", "xz-compressed; decompress it, or compress it with gzip and name it .gz"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive; drop the review file itself, or compress it with gzip and name it .gz"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed; decompress it, or compress it with gzip and name it .gz"),
))
_TAR_MAGIC_AT = 257  # "ustar" in a tar archive's first header

_WHITESPACE = re.compile(r"\s+")
# A text of only spaces and invisible characters (zero-width spaces and joiners, a soft hyphen, a byte-order mark, word
# joiners, bidi marks) is an empty review.
_INVISIBLE_ONLY = re.compile(r"[\s\u00ad\u180e\u200b-\u200f\u2060-\u2064\ufeff]*")
# C0 controls except tab, line feed and carriage return; DEL; C1 controls. (NUL bytes and other binary content; C1:
# Windows-1252 text read as Latin-1 before it was saved as UTF-8.)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Bytes that are not UTF-8 arrive as lone surrogates (errors="surrogateescape"), so each is found on its own line.
_NOT_UTF8 = re.compile(r"[\udc80-\udcff]")
# what a spreadsheet or a word processor writes for a line break inside a cell
_SOFT_BREAKS = {"\x0b": "a line break from a spreadsheet cell or Word: replace it with a space",
                "\x0c": "a page break: replace it with a space"}
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # what ends a line of the file (str.splitlines splits on more)
_SUSPECT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\udc80-\udcff]")
_C1 = "a character of Windows-1252, such as a dash or a curly quote, read as Latin-1 when the file was made UTF-8"


csv.field_size_limit(MAX_FIELD_CHARS)


def rating_to_sentiment(rating: int) -> int:
    """Ratings 1-2 are negative, 3 neutral, 4-5 positive."""
    return -1 if rating <= 2 else (0 if rating == 3 else 1)


def clean_text(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def normalise_column(column: str) -> str:
    """A header cell as matched with the known names: NFKC (full-width letters), case and padding ignored, spaces,
    hyphens and dots (R's ``Review.Text``) as underscores."""
    name = unicodedata.normalize("NFKC", column).strip().lower()
    return _WHITESPACE.sub("_", name).replace("-", "_").replace(".", "_")


@dataclass(frozen=True)
class Row:
    sentiment: int
    text: str  # whitespace collapsed
    split: str | None  # from the file's split column, else None
    line: int


@dataclass
class ReadInfo:
    """What reading found; complete once ``rows()`` is exhausted."""

    text_column: str = ""
    label_column: str = ""
    label_kind: str = ""
    has_split_column: bool = False
    rows_read: int = 0
    dropped_empty_text: int = 0
    bytes_read: int = 0
    content_bytes: int = 0
    content_sha256: str = ""
    lines: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class _Counted(io.RawIOBase):
    """A raw stream that counts (and optionally hashes) what passes through and refuses more than ``limit`` bytes."""

    def __init__(self, source: Any, limit: int, too_large: str, hasher: Any = None):
        self._source = source
        self._limit = limit
        self._too_large = too_large
        self._hasher = hasher
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._source.read(min(len(buffer), _CHUNK))
        n = len(data)
        buffer[:n] = data
        self.count += n
        if self._hasher is not None:
            self._hasher.update(data)
        if self.count > self._limit:
            raise DatasetError(self._too_large.format(limit=self._limit))
        return n


def _label_text(value: str) -> str:
    """A label cell as compared with the allowed values: a whole number as spreadsheets write it under other formats
    (``1.0``, ``1.00``, ``1,0`` with a decimal comma, ``+1``, full-width digits) is that number, and -1 written with the
    minus sign of a word processor or a spreadsheet's format (U+2212, an en dash) is ``-1``."""
    if value in _PLAIN_LABELS:  # nearly every cell: nothing to rewrite
        return value
    label = value.strip().translate(_FULL_WIDTH).translate(_MINUS_SIGNS)
    number = _WHOLE_NUMBER.fullmatch(label)
    return str(int(number.group(1))) if number else label


def _split_value(cell: str) -> str | None:
    """The split a cell names (any case and padding, full-width letters), or None. Only a short cell is normalized: a
    long one names no split, and normalizing a cell of stacked marks would take minutes."""
    value = cell.strip()
    if len(value) > _LONGEST_SPLIT_NAME:
        return None
    return SPLIT_ALIASES.get(unicodedata.normalize("NFKC", value).strip().lower())


def _label_hint(label: str, kind: str) -> str:
    """Why a label that is not allowed may be there: the other kind of label under this column's name."""
    if kind == "sentiment" and label == "2":  # a rating, or the third class of a 0/1/2 labelling
        return " (ratings 1-5? name the column 'rating'; classes numbered 0, 1, 2? write them -1, 0, 1)"
    if kind == "sentiment" and label in RATING_VALUES:
        return " (ratings 1-5? name the column 'rating')"
    if kind == "rating" and label in SENTIMENT_VALUES:
        return " (sentiments -1/0/1? name the column 'sentiment')"
    return ""


def _utf16_without_bom(line: str) -> bool:
    """A first line whose every other character is NUL: ASCII text in UTF-16 (either byte order) with no BOM."""
    sample = line.rstrip("\r\n")[:512]
    if len(sample) < 4:
        return False
    for zeros, text in ((sample[1::2], sample[0::2]), (sample[0::2], sample[1::2])):
        if zeros.count("\x00") == len(zeros) and "\x00" not in text:
            return True
    return False


def _line_break_length(line: str) -> int:
    """How many characters the line break ending ``line`` has (0, 1 or 2: \r\n)."""
    return 2 if line.endswith("\r\n") else 1 if line.endswith(("\n", "\r")) else 0


class ReviewReader:
    """One pass over one file: ``rows()`` yields valid rows; ``info`` is complete afterwards."""

    def __init__(self, body: BinaryIO, fmt: FileFormat):
        self.fmt = fmt
        self.info = ReadInfo()
        self.problems = Problems()
        self._hasher = hashlib.sha256()
        self._raw = _Counted(
            body,
            MAX_FILE_BYTES,
            f"the file is larger than {display.size(MAX_FILE_BYTES)}; split it into smaller files",
            self._hasher,
        )
        stream: Any = self._raw
        self._content = self._raw
        if fmt.compressed:
            # buffered: gzip reads a header's file name and the padding after a stream a byte at a time, which
            # would be one read of the S3 body per byte
            self._content = _Counted(
                gzip.GzipFile(fileobj=io.BufferedReader(self._raw, buffer_size=_CHUNK), mode="rb"),
                MAX_DECOMPRESSED_BYTES,
                f"the compressed file expands to more than {display.size(MAX_DECOMPRESSED_BYTES)}; "
                "split it into smaller files",
            )
            stream = self._content
        buffered = io.BufferedReader(stream, buffer_size=64 * 1024)
        self._text = io.TextIOWrapper(buffered, encoding="utf-8-sig", errors="surrogateescape", newline="")
        self._lines_read = 0

    # --------------------------------------------------------------------------------------------------- lines

    def _lines(self) -> Iterator[str]:
        while True:
            try:
                line = self._text.readline(MAX_LINE_CHARS + 2)  # room for a line break of two characters
            except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
                where = f"after line {self._lines_read:,}: " if self._lines_read else ""
                raise DatasetError(
                    f"{where}the file is not valid gzip data ({excerpt(str(exc), 80)}); "
                    "compress it again with gzip, or drop it uncompressed"
                ) from exc
            if not line:
                return
            self._lines_read += 1
            number = self._lines_read
            if number > MAX_LINES:
                raise DatasetError(
                    f"the file has more than {MAX_LINES:,} lines (reviews, blank lines and lines of a value "
                    "spread over several); split it into smaller files and drop each"
                )
            if len(line) - _line_break_length(line) > MAX_LINE_CHARS:
                raise DatasetError(f"line {number} is longer than {MAX_LINE_CHARS:,} characters")
            if number == 1:
                self._check_start(line)
            if not line.isascii():
                marks = too_long_run(line)
                if marks:
                    self.problems.add(number, f"{len(marks.group()):,} combining marks in a row at character "
                                              f"{marks.start() + 1:,} (accents stacked on one letter; text has at most "
                                              f"{MAX_COMBINING_MARKS}, and comparing reviews would take minutes): "
                                              "remove them")
            if _SUSPECT.search(line) is None:
                yield line
                continue
            bad = _NOT_UTF8.search(line)
            if bad:
                byte = ord(bad.group()) - 0xDC00
                self.problems.add(
                    number,
                    f"not UTF-8: byte 0x{byte:02x} at character {bad.start() + 1}; save the file as UTF-8",
                )
            control = _CONTROL.search(line)
            if control:
                what = _SOFT_BREAKS.get(control.group(), _C1 if control.group() >= "\x80" else "binary content")
                self.problems.add(
                    number, f"control character {control.group()!r} ({what}) at character {control.start() + 1}"
                )
            yield line

    def _check_start(self, line: str) -> None:
        start = line[:4]
        if start.startswith(("\udcff\udcfe\x00\x00", "\x00\x00\udcfe\udcff")):
            raise DatasetError("the file is UTF-32, not UTF-8; save it as UTF-8 (CSV UTF-8) and drop it again")
        if start.startswith(("\udcff\udcfe", "\udcfe\udcff")):
            raise DatasetError("the file is UTF-16, not UTF-8; save it as UTF-8 (CSV UTF-8) and drop it again")
        if start.startswith("PK\x03\x04"):
            raise DatasetError(
                "the file is a ZIP archive or an Excel workbook, not text; export the sheet as CSV UTF-8"
            )
        if start.startswith("\x1f\udc8b"):
            if self.fmt.compressed:
                raise DatasetError("the file is gzip-compressed twice; decompress it once and drop it again")
            raise DatasetError("the file is gzip-compressed but its name does not end in .gz; rename it")
        for magic, what in _NOT_TEXT:
            if line.startswith(magic) and (magic != "BZh" or line[4:10] == "1AY&SY"):
                raise DatasetError(f"the file is {what}")
        if line[_TAR_MAGIC_AT:_TAR_MAGIC_AT + 5] == "ustar":
            raise DatasetError("the file is a tar archive; drop the review file itself, or compress it with gzip and "
                               "name it .gz")
        if _utf16_without_bom(line):
            raise DatasetError("the file is UTF-16 without a byte-order mark (every other byte is zero), not UTF-8; "
                               "save it as UTF-8 (CSV UTF-8) and drop it again")

    # ---------------------------------------------------------------------------------------------- header

    def _first_line(self, lines: Iterator[str], empty: str = "the file is empty") -> str:
        """The first line with content: blank lines, and lines of only separators (a spreadsheet's empty first row),
        come before it."""
        for line in lines:
            if line.strip(_BLANK_LINE):
                return line
        raise DatasetError(empty)

    def _header(self, lines: Iterator[str]) -> tuple[list[str], Iterator[list[str]]]:
        first = self._first_line(lines)
        delimiter = self.fmt.delimiter
        line = first.rstrip("\r\n").rstrip(" ")
        directive = _SEP_DIRECTIVE.fullmatch(line)
        if directive:  # Excel's "sep=," line: the header comes next
            said = directive.group(1)
            if said != delimiter and not (said == "\t" and delimiter == ","):
                named = dict(_SEPARATORS).get(said, repr(said))
                raise DatasetError(
                    f"line {self._lines_read}: {excerpt(line)} says the values are separated by {named}; "
                    "a .csv file is read as comma-separated, a .tsv file as tab-separated: save it as CSV UTF-8 "
                    "(comma-separated) or as tab-separated text, named .csv or .tsv accordingly"
                )
            first = self._first_line(lines, f"the file has no header after its {excerpt(line)} line")
            if said == "\t" and "\t" in first:
                delimiter = "\t"  # a tab-separated .csv that says so
        head = first.rstrip("\r\n")
        if delimiter == "," and "\t" in head and "," not in head:
            delimiter = "\t"  # a tab-separated file named .csv
        self._delimiter = delimiter
        csv.field_size_limit(MAX_FIELD_CHARS)  # process-wide: other code in the process may have raised it
        reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter, strict=True)
        start = self._lines_read
        try:
            header = next(reader)
        except csv.Error as exc:
            other = self._quoted_header_separator(head)
            if other:
                raise DatasetError(
                    f"line {start}: the header {excerpt(head)} is separated by {other}; a .csv file is read as "
                    "comma-separated, a .tsv file as tab-separated: save or name it accordingly"
                ) from exc
            raise DatasetError(self._csv_error(start, exc)) from exc
        if header:  # a byte-order mark that is not the file's first bytes: after a "sep=" line, or a second one
            header[0] = header[0].lstrip("\ufeff")
        return header, reader

    def _quoted_header_separator(self, head: str) -> str:
        """The other separator of a header whose quoted names are separated by it (``"a";"b"`` in a .csv), or ''."""
        unquoted = head.replace('"', "")
        if self._delimiter in unquoted:
            return ""
        for mark, name in _SEPARATORS:
            if mark != self._delimiter and f'"{mark}"' in head:
                return name
        return ""

    def _columns(self, header: list[str]) -> tuple[int, int, str, int | None]:
        normalised = [normalise_column(c) for c in header]

        def matches(candidates: tuple[str, ...]) -> list[int]:
            return [i for i, name in enumerate(normalised) if name in candidates]

        def listed(indexes: list[int]) -> str:
            named = ", ".join(f"{excerpt(header[i])} (column {i + 1})" for i in indexes[:_COLUMNS_LISTED])
            more = len(indexes) - _COLUMNS_LISTED
            return named + (f" and {more:,} more" if more > 0 else "")

        def shown_header() -> str:
            names = ", ".join(excerpt(c) for c in header[:_HEADER_NAMES_SHOWN])
            more = f" and {len(header) - _HEADER_NAMES_SHOWN:,} more" if len(header) > _HEADER_NAMES_SHOWN else ""
            return f"the header has {len(header):,} column{'' if len(header) == 1 else 's'}: {names}{more}"

        def separated_otherwise() -> str:
            """A header read as one column that holds another separator: the file's name says the wrong format."""
            if len(header) != 1:
                return ""
            other = [name for mark, name in _SEPARATORS if mark != self._delimiter and mark in header[0]]
            if not other:
                return ""
            return (f" (the header is one column holding {other[0]}: a .tsv file is read as tab-separated, a .csv "
                    "file as comma-separated; save or name it accordingly)")

        def ambiguous(role: str, indexes: list[int]) -> str:
            if len({normalised[i] for i in indexes}) == 1:
                return f"duplicate {role} column, {len(indexes)} times"
            return f"ambiguous {role} columns, {len(indexes)} of them"

        text = matches(TEXT_COLUMNS)
        if not text:
            raise DatasetError(
                f"no review text column: {shown_header()}; name the text column one of {', '.join(TEXT_COLUMNS)}"
                + separated_otherwise()
            )
        if len(text) > 1:
            raise DatasetError(f"{ambiguous('review text', text)}: {listed(text)}; keep exactly one")
        labels = matches(SENTIMENT_COLUMNS + RATING_COLUMNS)
        if not labels:
            raise DatasetError(
                f"no label column: {shown_header()}; add a 'sentiment' column (-1, 0, 1) or a 'rating' column (1-5)"
                + separated_otherwise()
            )
        if len(labels) > 1:
            raise DatasetError(
                f"{ambiguous('label', labels)}: {listed(labels)}; keep exactly one (sentiment -1/0/1 or rating 1-5)"
            )
        splits = matches((SPLIT_COLUMN,))
        if len(splits) > 1:
            raise DatasetError(f"{ambiguous('split', splits)}: {listed(splits)}; keep exactly one")
        kind = "sentiment" if normalised[labels[0]] in SENTIMENT_COLUMNS else "rating"
        return text[0], labels[0], kind, (splits[0] if splits else None)

    # ------------------------------------------------------------------------------------------------ rows

    def _csv_error(self, start: int, exc: csv.Error) -> str:
        message = str(exc)
        where = f"line {start}" if self._lines_read <= start else f"the record starting on line {start}"
        if "unexpected end of data" in message:
            rest = self._lines_read - start + 1
            return (
                f"{where}: a quoted value is never closed (its opening quote would swallow the rest of the file, "
                f"{rest:,} line{'' if rest == 1 else 's'}); close the quote or write it as two quotes \"\""
            )
        if "expected after" in message:
            return (
                f"{where}: text follows a closing quote (line {self._lines_read}); inside a quoted value write a "
                'quote as two quotes "", or do not start an unquoted value with a quote'
            )
        if "field larger than field limit" in message:
            if self._lines_read > start:  # a quoted value running over many lines: its quote is the likely cause
                return (
                    f"{where}: a quoted value is not closed within {MAX_FIELD_CHARS:,} characters (it runs past line "
                    f"{self._lines_read:,}); close the quote or write it as two quotes \"\""
                )
            return f"{where}: a value is longer than {MAX_FIELD_CHARS:,} characters"
        return f"{where}: cannot be read as {self.fmt.kind}: {excerpt(message, 120)}"

    def rows(self) -> Iterator[Row]:
        """Yield every valid row; raise DatasetError at the end if anything was wrong."""
        lines = self._lines()
        header, reader = self._header(lines)
        if self.problems:  # the header's own (not UTF-8, binary): named before its columns are judged
            raise self._refusal()
        text_idx, label_idx, kind, split_idx = self._columns(header)
        info = self.info
        # As named in the file, whitespace collapsed: a header cell matches with any padding around or inside its
        # words (up to a field's 1 MiB), and the run record keeps this name.
        info.text_column, info.label_column = clean_text(header[text_idx]), clean_text(header[label_idx])
        info.label_kind, info.has_split_column = kind, split_idx is not None
        allowed = SENTIMENT_VALUES if kind == "sentiment" else RATING_VALUES
        width = len(header)
        needed = max(text_idx, label_idx, -1 if split_idx is None else split_idx)  # the last column read
        separator = "tab" if self._delimiter == "\t" else "comma"
        problems = self.problems
        while True:
            start = self._lines_read + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                problems.add(start, self._csv_error(start, exc).split(": ", 1)[1])
                break  # the rest of the file cannot be trusted
            if not row or all(not cell.strip() for cell in row):
                continue
            info.rows_read += 1
            if info.rows_read > MAX_ROWS:
                raise DatasetError(
                    f"the file has more than {MAX_ROWS:,} reviews (line {start:,} is review {info.rows_read:,}); "
                    "split it into files of fewer reviews and drop each"
                )
            if len(row) != width:
                if len(row) > width and any(cell.startswith(' "') for cell in row):
                    # `1, "a, b"`: a quote opens a value only right after the separator
                    example = ('write 1,"a, b", not 1, "a, b"' if separator == "comma" else
                               "remove the space before the quote")
                    hint = (f'a space between a {separator} and the quote that opens a value? a value is quoted only '
                            f"when the quote comes right after the {separator}: {example}")
                elif (len(row) > width and not any(cell.strip() for cell in row[width:])
                      and _label_text(row[label_idx]) in allowed):  # the label in its place: the extra cells are empty
                    hint = (f"empty cells past the header's columns (a {separator} at the end of the row)? remove them, "
                            "or name their column in the header; or an unquoted "
                            f"{separator} inside a value? put that value in double quotes")
                elif len(row) > width:
                    hint = f"an unquoted {separator} inside a value? put that value in double quotes"
                elif len(row) > needed:  # every column read is there: the cells missing are those that end the row
                    hint = ("empty cells at the row's end left out, as Excel does for some rows? delete the empty "
                            "columns at the end of the sheet and save it again; or a line break inside an unquoted "
                            "value?")
                else:
                    hint = "a missing value, or a line break inside an unquoted value?"
                problems.add(start, f"{len(row)} fields, expected {width} ({hint})")
                continue
            if self._lines_read > start:  # a quoted value over several lines: rows an unclosed quote swallowed?
                swallowed = self._swallowed(row, width, label_idx, split_idx, allowed)
                if swallowed:
                    problems.add(start, f"a quoted value runs to line {self._lines_read:,} and holds what looks like "
                                        f"a row of its own ({excerpt(swallowed)}): an opening quote never closed? "
                                        'close it, or write a quote inside a value as two quotes ""; if the value is '
                                        "one review as written, put it on one line")
                    continue
            # a row without a review is dropped whatever else it holds (`"61",NA,NA` from R, an id alone): its label or
            # split, missing too more often than not, are nothing to refuse the file for
            text = clean_text(row[text_idx])
            if _INVISIBLE_ONLY.fullmatch(text) or (len(text) <= _MISSING_TEXT_LONGEST and text.casefold() in _MISSING_TEXTS):
                info.dropped_empty_text += 1
                continue
            raw_label = _label_text(row[label_idx])
            if raw_label not in allowed:
                problems.add(
                    start,
                    f"{excerpt(header[label_idx])} is {excerpt(row[label_idx])}, expected one of {', '.join(allowed)}"
                    + _label_hint(raw_label, kind),
                )
                continue
            given = None
            if split_idx is not None:
                given = _split_value(row[split_idx])
                if given is None:
                    problems.add(start, f"split is {excerpt(row[split_idx])}, expected train, validation or test")
                    continue
            if problems:
                continue  # the file will be refused: keep counting, keep nothing
            label = int(raw_label)
            yield Row(label if kind == "sentiment" else rating_to_sentiment(label), text, given, start)
        if problems:
            raise self._refusal()
        self._drain()
        info.lines = self._lines_read
        info.bytes_read = self._raw.count
        info.content_bytes = self._content.count
        info.content_sha256 = self._hasher.hexdigest()

    def _swallowed(self, row: list[str], width: int, label_idx: int, split_idx: int | None,
                   allowed: tuple[str, ...]) -> str | None:
        """A value of the record whose every line after its first (blank lines aside; its last may be the start of a
        row the closing quote cut) reads as a row itself (as many fields as the
        header, a valid label, a valid split when the file has that column): rows an unclosed quote swallowed. Its
        first such line, or None. A review written over several lines, some of which happen to read so (`1, the
        zipper broke` under `Three problems:`), is a value of its own, quoted as it should be. A value's own first
        line is not judged: with the values before it, a real review's first line can read as a row (`I tried sizes
        2,4,6` under `Great,`), so a stray quote that swallows a single row, the text before the label, is not found."""

        def a_row(line: str) -> bool:
            """A line as a program writes a row: no value starts with a space (`1, fits well` is a list a person wrote
            in a review). In a file written `1, text`, a quote after the space opens no value, so no such row is
            swallowed; one written `1,"text` there is not found."""
            fields = line.split(self._delimiter)
            if len(fields) != width or any(field[:1].isspace() for field in fields):
                return False
            if _label_text(fields[label_idx]) not in allowed:
                return False
            return split_idx is None or _split_value(fields[split_idx]) is not None

        for cell in row:
            lines = [line for line in _LINE_BREAK.split(cell)[1:] if line.strip()]
            # the last line ends at the closing quote: a row's start only, when the text column comes first
            judged = lines[:-1] if len(lines) > 1 and not a_row(lines[-1]) else lines
            if judged and all(a_row(line) for line in judged):
                return judged[0]
        return None

    def _refusal(self) -> DatasetError:
        """The file's problems as one reason, saying where reading stopped when it did not reach the end."""
        stopped = "" if self._finished() else f" (reading stopped at line {self._lines_read:,})"
        return DatasetError(bounded(self.problems.reason("problem") + stopped))

    def _finished(self) -> bool:
        try:
            return not self._text.read(1)
        except (DatasetError, OSError, EOFError, zlib.error):
            return False

    def _drain(self) -> None:
        """Read what is left of the object (e.g. past the end of a gzip stream) so the hash covers all of it."""
        while self._raw.read(_CHUNK):
            pass
