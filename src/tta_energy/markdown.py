"""The Markdown table, in one place: every table the project writes into Markdown is built here.

``levers_summary.md``, ``meter_summary.md``, ``figures/tables/README.md``, ``data/study/IMPORT.md`` and the
documentation's generated blocks all call :func:`table`, so they share one syntax and one escaping rule. The
callers format their own cells (decimals, units, a dash for NaN, backticks); this module only lays them out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table (GitHub's pipe syntax) of ``header`` over ``rows``: the header, a ``|---|---|``
    separator and one line per row, without a trailing newline. A cell is written as ``str(cell)`` with any
    ``|`` in it escaped (so it cannot split the cell); a row with another number of cells than ``header`` is
    a ``ValueError``, as it would shift the columns."""

    def line(cells: Sequence[object]) -> str:
        if len(cells) != len(header):
            raise ValueError(f"a Markdown table row has {len(cells)} cells for {len(header)} columns: "
                             f"{list(cells)!r}")
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(r) for r in rows)])
