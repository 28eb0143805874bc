"""How listings look: tables for people, one JSON shape for scripts.

People get a table with headers that stays aligned when a subject holds CJK or emoji
(rich measures terminal cells, not code points), cuts long cells with an ellipsis
instead of wrapping rows, and uses colour only when standard output is a terminal.
Timestamps are shown in the configured time zone, to the minute.

Scripts get ``--json``: every listing prints one object, ``{"items": [...], "count": N}``
(plus listing-specific totals such as ``quarantined``), with timestamps in ISO 8601
UTC, so one parser reads them all.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import click

# Without a terminal rich would assume 80 columns and cut most subjects; a pipe or a
# file gets this many unless COLUMNS says otherwise.
PIPE_WIDTH = 160


@dataclass(frozen=True)
class Col:
    header: str
    key: str
    max_width: int | None = None  # cut with an ellipsis beyond this many cells
    style: str | None = None
    justify: str = "left"


def local_time(value: datetime | None, tz: ZoneInfo, seconds: bool = False) -> str:
    """``2026-11-25 09:03`` in the configured zone; naive values are UTC (as stored)."""
    if value is None:
        return "-"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def emit_json(items: Sequence[dict[str, Any]], **extra: Any) -> None:
    """The one shape of every ``--json`` listing."""
    click.echo(json.dumps({"items": list(items), "count": len(items), **extra}, indent=2,
                          ensure_ascii=False))


def _console() -> Any:
    from rich.console import Console

    out = sys.stdout  # click.get_text_stream is deprecated (Click 9 removes it)
    tty = out.isatty()
    width = None if tty else int(os.environ.get("COLUMNS") or PIPE_WIDTH)
    # highlight=False: no guessing colours for numbers and addresses; a table's own
    # styles still apply on a terminal, and NO_COLOR is honoured by rich.
    return Console(file=out, width=width, highlight=False, soft_wrap=False,
                   no_color=not tty or None, force_terminal=tty or None,
                   color_system="auto" if tty else None)


def print_table(columns: Sequence[Col], rows: Sequence[dict[str, Any]],
                empty: str, styles: dict[str, str] | None = None) -> None:
    """One row per item; ``styles`` maps a cell's text to a colour (e.g. ``failed``)."""
    if not rows:
        click.echo(empty)
        return
    from rich import box
    from rich.table import Table
    from rich.text import Text

    console = _console()
    texts = [[_cell(row.get(c.key)) for c in columns] for row in rows]
    widths = fit_widths(columns, texts, console.width)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for c, w in zip(columns, widths, strict=True):
        table.add_column(ellipsize(c.header, w), width=w, no_wrap=True, style=c.style,
                         justify=c.justify)  # type: ignore[arg-type]
    for cells in texts:
        table.add_row(*(Text(ellipsize(t, w), style=(styles or {}).get(t, ""))
                        for t, w in zip(cells, widths, strict=True)))
    console.print(table)


def fit_widths(columns: Sequence[Col], texts: Sequence[Sequence[str]], total: int
               ) -> list[int]:
    """Column widths in terminal cells that fit ``total``.

    Columns without a ``max_width`` (ids, statuses, times) keep their full width; the
    others (subject, address, reason) take at most ``max_width`` and give up space,
    widest first, down to their header's width when the terminal is narrow. Done here
    rather than by rich, whose shrinking can crop a cut wide character's ellipsis.
    """
    from rich.cells import cell_len

    natural = [max(cell_len(c.header), *(cell_len(t[i]) for t in texts))
               for i, c in enumerate(columns)]
    widths = [min(n, c.max_width) if c.max_width else n for n, c in zip(natural, columns,
                                                                          strict=True)]
    # SIMPLE_HEAD: a blank separator plus one cell of padding either side: 3 per gap.
    excess = sum(widths) + 3 * (len(columns) - 1) - total
    while excess > 0:
        flexible = [i for i, c in enumerate(columns)
                    if c.max_width and widths[i] > max(cell_len(c.header), 4)]
        if not flexible:
            break
        widest = max(flexible, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1
    return widths


def ellipsize(text: str, width: int) -> str:
    """``text`` cut to ``width`` terminal cells, ending in an ellipsis when cut; a wide
    character that would straddle the edge goes whole."""
    from rich.cells import cell_len

    if cell_len(text) <= width:
        return text
    out, used = [], 0
    for ch in text:
        w = cell_len(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out).rstrip() + "…"


def _cell(value: Any) -> str:
    """One line per row: a subject with a newline would break the alignment."""
    text = "-" if value in (None, "") else str(value)
    return " ".join(text.split()) if "\n" in text or "\r" in text else text
