"""Printing for the CLI: JSON for scripts, rich tables for people, errors on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

#: soft_wrap: a printed line is never broken into several (rich breaks at the terminal's width, or at 80 columns
#: when stdout is a pipe or a file), so an `export …` line, an address or a tx hash stays whole when pasted or parsed.
console = Console(soft_wrap=True)
err_console = Console(stderr=True)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=1, default=str) + "\n")


def emit_line(data: Any) -> None:
    """One compact JSON object on one line, flushed: for streams (a watch, a daemon's start and stop) read line by line."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=title)
    numeric = [bool(rows) and all(isinstance(r[i], (int, float)) for r in rows) for i in range(len(columns))]
    for column, is_number in zip(columns, numeric, strict=True):
        t.add_column(column, justify="right" if is_number else "left")
    for row in rows:
        t.add_row(*[f"{v:,}" if isinstance(v, int) else str(v) for v in row])
    if console.is_terminal:
        console.print(t)
        return
    # Not a terminal: as wide as the table needs, so no cell (an address, a hash) is folded over two lines.
    needed = console.measure(t, options=console.options.update_width(1 << 16)).maximum
    Console(width=max(console.width, needed), soft_wrap=True).print(t)  # print(width=) is capped at the console's width


def one_line(message: str) -> str:
    """A message as one line: an error is one line on stderr, whatever a library put in it (pydantic's are multi-line)."""
    return " | ".join(part.strip() for part in str(message).splitlines() if part.strip()) or "unknown error"


def error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(one_line(message))}", highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """A note on stderr that is not an error (the command goes on, or has done what was asked)."""
    err_console.print(f"[yellow]note:[/] {escape(one_line(message))}", highlight=False, soft_wrap=True)
