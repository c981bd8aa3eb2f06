"""Figure helpers shared by every family (matplotlib Agg + seaborn; no display needed).

Each helper draws into a new figure and saves it atomically into a run folder.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from islab.runs import atomic_savefig  # noqa: E402

sns.set_theme(style="whitegrid", context="paper")


def save(fig, path, dpi: int = 130) -> None:
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=dpi)
    plt.close(fig)


def lines_with_band(df, x: str, y: str, hue: str, path, title: str = "", ylabel: str | None = None,
                    logy: bool = False, col: str | None = None) -> None:
    """Mean over seeds with a +-1 std band, one line per `hue` (optionally one panel per `col`)."""
    cols = sorted(df[col].unique()) if col else [None]
    fig, axes = plt.subplots(1, len(cols), figsize=(4.2 * len(cols), 3.4), squeeze=False)
    for ax, c in zip(axes[0], cols):
        d = df if c is None else df[df[col] == c]
        sns.lineplot(data=d, x=x, y=y, hue=hue, errorbar="sd", ax=ax, marker="o" if d[x].nunique() < 12 else None)
        ax.set_title(f"{col} = {c}" if c is not None else title)
        ax.set_ylabel(ylabel or y)
        if logy:
            ax.set_yscale("log")
    if title and col:  # wrapped so a long title fits a one-panel figure
        import textwrap

        fig.suptitle(textwrap.fill(title, width=48 * len(cols)), fontsize="medium")
    save(fig, path)


def heatmap(matrix, labels, path, title: str = "", fmt: str = ".2f", vmin=-1, vmax=1) -> None:
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * n, 0.8 + 0.6 * n))
    sns.heatmap(matrix, annot=True, fmt=fmt, xticklabels=labels, yticklabels=labels, vmin=vmin, vmax=vmax,
                cmap="vlag", ax=ax, square=True, cbar=False)
    ax.set_title(title)
    save(fig, path)


def hist_by_group(values, groups, path, title: str = "", xlabel: str = "", bins: int = 40) -> None:
    """Overlaid density histograms of `values`, one per group label (e.g. clean vs corrupted)."""
    import pandas as pd

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    sns.histplot(pd.DataFrame({"value": values, "group": groups}), x="value", hue="group", bins=bins,
                 stat="density", common_norm=False, element="step", ax=ax)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    save(fig, path)
