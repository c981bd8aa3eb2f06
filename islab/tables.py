"""Tables of results: the one fixed-width text table and the one markdown table every script and
report prints, and the one reader of a run's final rows (a tidy frame with columns ..., epoch,
metric, value, where epoch is NaN on a job's final metrics).

Pure formatting on lists of cells (numpy/pandas only where a frame is read); no I/O.
"""
from __future__ import annotations


def table_lines(head, rows, rule: bool = True, strip: bool = False) -> list[str]:
    """The lines of a fixed-width text table: each column as wide as its widest cell (head
    included), cells left-justified and separated by two spaces; with rule=True a line of dashes
    under the head.  strip=True drops the trailing spaces of every line.  Cells are str()'d."""
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = [line for line in ([head, ["-" * w for w in widths]] if rule else [head]) + list(rows)]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(cells, widths)) for cells in lines]
    return [x.rstrip() for x in out] if strip else out


def text_table(head, rows, rule: bool = True, strip: bool = False) -> str:
    """A fixed-width text table (table_lines joined by newlines): rows under `head`, e.g.

        method  acc %
        ------  -----
        dris    81.2
    """
    return "\n".join(table_lines(head, rows, rule=rule, strip=strip))


def markdown_table(head, rows, escape_pipes: bool = False) -> str:
    """A markdown table: `| a | b |`, `|---|---|`, one line per row (cells str()'d).  escape_pipes:
    a '|' inside a row's cell is written '/' (it would split the cell)."""
    cell = (lambda c: str(c).replace("|", "/")) if escape_pipes else str
    out = ["| " + " | ".join(str(h) for h in head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


# ---------------------------------------------------------------- a run's final metrics


def final_rows(df):
    """The rows of a tidy run frame that hold a job's final metrics (epoch NaN); all of them when
    the frame has no epoch column."""
    return df[df["epoch"].isna()] if "epoch" in df else df


def final_frame(df, keys, dropna: bool = True):
    """One row per job with its final metrics as columns, the job keyed by the columns `keys`
    (e.g. config, alpha, method, seed).  groupby + unstack (not pivot_table): keeps all-NaN metrics
    (auroc of random) as columns without creating rows for key combinations that never ran;
    dropna=False keeps jobs whose key holds a NaN.  An empty DataFrame when no job has final rows."""
    import pandas as pd

    d = final_rows(df)
    if len(d) == 0:
        return pd.DataFrame()
    wide = d.groupby(list(keys) + ["metric"], sort=False, dropna=dropna)["value"].first()
    return wide.unstack("metric").reset_index()
