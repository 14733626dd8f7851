"""Text that comes from runs (S3 keys, dataset names, reasons) or from AWS, made safe to show in a terminal.

Anyone who may write under ``incoming/`` chooses a key, and a key may hold ``[bold]`` or ``[/quote]`` (rich
markup: text lost or a crash) or terminal control sequences (ESC, bidi overrides: a cleared screen, a reordered
line). ``plain`` gives rich a ``Text``, never parsed as markup, with every control character shown as an escape
(``\\x1b``, ``\\u202e``); line breaks stay."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from reviewtune.core import display
from reviewtune.core.page import escaped_controls

# A command whose reader closed the pipe (`| head`) ends as one killed by SIGPIPE would, quietly.
BROKEN_PIPE_STATUS = 128 + signal.SIGPIPE


def quiet_after_broken_pipe() -> None:
    """Nothing more to stdout (the interpreter's flush at exit would fail again); the caller then exits with
    BROKEN_PIPE_STATUS."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class PipedConsole(Console):
    """A console whose closed pipe ends the command with BROKEN_PIPE_STATUS and no message (rich's own ends it with
    status 1, as a failure)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        quiet_after_broken_pipe()
        raise SystemExit(BROKEN_PIPE_STATUS)


# Table columns. Ids, job names, statuses and numbers are copied or compared: WHOLE keeps them on one line and rich
# narrows the other columns first (only a terminal too narrow for them all cuts them, with a visible "…"). Free
# text (datasets, reasons, dates) wraps and folds a long word onto the next line instead of cutting it.
WHOLE = {"no_wrap": True}
FOLD = {"overflow": "fold"}
# Columns of a narrow table, of fixed width (rich narrows the others first, and never these below their width): a time
# "2026-12-05 06:20:11" as a date over a time; a status whole ("EVALUATING"), a longer one wrapped at its comma.
TIME = {"overflow": "fold", "width": 10}
STATUS = {"overflow": "fold", "width": 10}


def id_column(ids: Any) -> dict[str, Any]:
    """A narrow table's column of run ids, as wide as the longest (what is stacked under an id folds at its width)."""
    return {"overflow": "fold", "width": max((len(str(value)) for value in ids), default=3)}


# The narrow forms are laid out for 80 columns; their fixed columns (ids, times, numbers) need up to 78 of them with
# the longest run ids (a JobNamePrefix of 12 characters: 29).
NARROW_FORM_COLUMNS = 78
_UNBOUNDED = 100_000  # a width no table reaches: what a table measures there is its width with nothing folded


class ByWidth:
    """A table in three forms, chosen when printed: ``wide`` where it fits the width rich gives it whole (no column
    folded: every value on its line), else ``narrow`` (the same rows laid out for 80 columns: no borders between
    columns, some moved under others), else, in a terminal too narrow even for that (a split pane of 60 columns,
    where rich would cut numbers or drop a column), the wide form's rows as records: one line per column."""

    def __init__(self, wide: Table, narrow: Table | None = None) -> None:
        """``narrow`` None: the wide form is laid out to be narrowed (its headers wrap) down to what it needs."""
        self.wide, self.narrow = wide, narrow or wide

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        unbounded = options.update_width(_UNBOUNDED)
        if Measurement.get(console, unbounded, self.wide).maximum <= options.max_width:  # nothing folded
            yield self.wide
        elif self.narrow is self.wide:  # its columns' least widths are set: it fits when they do
            fits = Measurement.get(console, unbounded, self.wide).minimum <= options.max_width
            yield from [self.wide] if fits else records(self.wide)
        elif options.max_width >= NARROW_FORM_COLUMNS:  # what folds there folds a long word, never a number
            yield self.narrow
        else:
            yield from records(self.wide)


def records(table: Table) -> list[Any]:
    """A table's rows as records: under its title, for each row a line per column, its header then its value
    (folded, never cut); a blank line between rows; its caption last."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    columns = [(column.header, list(column.cells)) for column in table.columns]
    for row in range(table.row_count):
        if row:
            grid.add_row("", "")
        for header, cells in columns:
            grid.add_row(header, cells[row])
    return [part for part in (table.title, grid, table.caption) if part is not None]


def stacked(first: Any, second: Any) -> Text:
    """Two values in one cell of a narrow table, the second dim under the first."""
    under = plain(second)
    under.stylize("dim")
    return Text.assemble(plain(first), "\n", under)


def new_table(title: str | None = None, *, narrow: bool = False, **options: Any) -> Table:
    """A table of the console's views, its title plain text; the narrow form has no side or column borders, only
    the header's rule, and two spaces between columns (three characters each saved against the boxed form)."""
    if narrow:
        options = {"box": box.SIMPLE_HEAD, "show_edge": False, "pad_edge": False, "collapse_padding": True, **options}
    # a title names datasets, folders and stacks: text, never markup ('exports[/old]' would raise, '[bold]' style)
    return Table(title=plain(title) if title is not None else None, **options)


def safe(value: Any) -> str:
    """``value`` as a string whose control characters but the line break are written as escapes (``\\x1b``,
    ``\\u202e``), as the HTML pages write them (page.escaped_controls); joiners used by emoji stay."""
    return escaped_controls(str(value))  # even a printable string: a Hangul filler is a letter drawn as nothing


def plain(value: Any, style: str = "") -> Text:
    """``value`` for rich: not markup, control characters escaped."""
    return Text(safe(value), style=style)


def add_row(table: Table, *cells: Any) -> None:
    """A table row of values from runs or AWS (a ``Text`` cell is the caller's own, kept as it is)."""
    table.add_row(*(cell if isinstance(cell, Text) else plain(cell) for cell in cells))


def utc_time(value: Any) -> str:
    """A time as ``YYYY-MM-DD HH:MM:SS`` in UTC (the columns and labels say UTC): a datetime (boto3 gives them in the
    machine's zone) or the ISO 8601 text the run records hold; ``-`` for none."""
    return safe(display.utc_time(value, suffix=False, missing="-"))
