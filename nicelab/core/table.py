"""Plain-text tables: the one helper the commands, the grader and the benchmarks print with."""

from __future__ import annotations

from collections.abc import Sequence


def table_lines(rows: Sequence[Sequence[str]], align: str, header: Sequence[str] | None = None,
                min_widths: Sequence[int] | None = None, sep: str = "  ") -> list[str]:
    """The lines of a table of text cells: each column padded to its widest cell (at least
    ``min_widths``), aligned by ``align`` (one ``<`` or ``>`` per column), joined by ``sep``;
    ``header`` first when given. Trailing spaces are removed."""
    columns = len(align)
    if any(len(row) != columns for row in (*rows, *([header] if header else []))):
        raise ValueError(f"every row of the table needs {columns} cells.")
    minimum = list(min_widths or [0] * columns)
    widths = [max([minimum[i], *(len(row[i]) for row in (*rows, *([header] if header else [])))])
              for i in range(columns)]

    def line(cells: Sequence[str]) -> str:
        return sep.join(f"{cell:{a}{w}}" for cell, a, w in zip(cells, align, widths, strict=True)).rstrip()

    return ([line(header)] if header else []) + [line(row) for row in rows]
