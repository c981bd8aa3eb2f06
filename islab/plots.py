"""The figure style and helpers every family draws with (matplotlib Agg; no display needed).

One style for every figure of the repository:
  * 150 dpi, saved with a tight bounding box (legends outside the axes are kept);
  * one display name, colour, marker and line style per method (islab/style.py: every id a
    script writes, `dris`, `dr-is`, `ambiguous`, ..., maps to its method), from the Okabe-Ito
    and Tol colour-blind-safe palettes; a colour never means two methods, and names outside
    the vocabulary (models) take fallback colours no method uses;
  * every figure says over how many seeds its bands or bars are (`count_seeds`, "n = 3 seeds");
  * numbers (rates, K) sit on a true numeric axis, and accuracy has its chance level dashed;
  * one legend per figure, outside the data (`legend_outside`), never one per panel;
  * panels that are compared share their y axis; epochs and K get integer ticks;
  * reference levels (chance, the noise rate) are dashed grey lines with a legend entry, never
    drawn as if they were a method (`reference_line`);
  * seed bands: mean +- 1 sd, clipped to the metric's range (accuracy to [0, 100] %); on a log
    axis the band is drawn in log space (geometric mean x/÷ geometric sd), so it never plunges
    to the axis.
Every helper saves atomically into a run folder (islab.runs.atomic_savefig).
"""
from __future__ import annotations

import re
import textwrap
import zlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator  # noqa: E402

from islab.runs import atomic_savefig  # noqa: E402

DPI = 150

# the colours by name (islab.style holds them with the method vocabulary)
from islab.style import (BLACK, BLUE, GREEN, GREY, OLIVE, ORANGE, PURPLE, SKY, VERMILLION,  # noqa: E402,F401
                         YELLOW, display, look, method_of)

# Names outside the vocabulary (DL-correlation's models, quantities) take these in order: colours
# no method uses, so a colour never means a method in one figure and a model in another.
FALLBACK = ("#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB", "#222255",
            "#225555", "#663333")


def _s(color, marker="o", linestyle="-", width=1.5, size=4.5):
    return {"color": color, "marker": marker, "linestyle": linestyle, "linewidth": width, "markersize": size}


REFERENCE = {"color": "0.35", "linestyle": (0, (4, 3)), "linewidth": 1.1, "zorder": 1.5}

plt.rcParams.update({
    "figure.dpi": DPI, "savefig.dpi": DPI, "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "legend.fontsize": 8, "legend.title_fontsize": 8,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.6, "axes.spines.top": False,
    "axes.spines.right": False, "lines.linewidth": 1.5, "lines.markersize": 4.5,
    "legend.frameon": False, "figure.titlesize": 10.5,
})


def style(name) -> dict:
    """color / marker / linestyle of a method id (islab.style), or a fixed fallback for a name
    outside the vocabulary (a model, a quantity)."""
    st = look(name)
    if st is not None:
        return st
    color = FALLBACK[zlib.crc32(str(name).encode()) % len(FALLBACK)]
    return _s(color, "o", "-")


def styles(names) -> dict:
    """Styles of the names drawn together in one figure: the vocabulary's where it has them, and
    distinct fallback colours (in order) for the others, so no two names of a figure look alike."""
    out, used = {}, set()
    for n in names:
        if method_of(n) is not None:
            out[n] = style(n)
            used.add(out[n]["color"])
    free = [c for c in FALLBACK if c not in used]
    for i, n in enumerate(n for n in names if n not in out):
        out[n] = _s(free[i % len(free)] if free else FALLBACK[i % len(FALLBACK)], "o", "-")
    return out


def legend_handle(name, st=None) -> Line2D:
    """The legend entry of a method drawn as a line, under its display name."""
    st = st or style(name)
    return Line2D([], [], label=display(name), color=st["color"], linestyle=st["linestyle"], marker=st["marker"],
                  linewidth=st.get("linewidth", 1.5), markersize=st.get("markersize", 4.5))


def wrap(text: str, width: int = 70) -> str:
    """A title broken into lines of at most `width` characters (titles must fit their figure)."""
    if not text:
        return ""
    # "n = 3 seeds", "alpha = 0.3": never broken at their spaces
    glued = re.sub(r"n = (\S+) (seeds?|draws?|chains?)\b", lambda m: m.group(0).replace(" ", "\u00a0"), str(text))
    glued = glued.replace(" = ", "\u00a0=\u00a0")
    return "\n".join(textwrap.wrap(glued, width)).replace("\u00a0", " ")


def seeds_text(counts, unit: str = "seed") -> str:
    """'n = 3 seeds' from the seed counts of a figure's points ('n = 2-3 seeds' when they differ,
    e.g. a diverged seed left out)."""
    counts = sorted({int(c) for c in counts if c == c})
    if not counts:
        return ""
    n = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"n = {n} {unit}" + ("" if n == "1" else "s")


def count_seeds(df, by=(), seed: str = "seed", unit: str = "seed") -> str:
    """seeds_text of a tidy frame: the distinct seeds of every group of `by` (all rows if none)."""
    if seed not in df or len(df) == 0:
        return ""
    by = [b for b in by if b in df]
    counts = df.groupby(by, observed=True)[seed].nunique() if by else [df[seed].nunique()]
    return seeds_text(counts, unit)


def integer_ticks(ax, axis: str = "x", values=None) -> None:
    """Integer ticks (epochs, K); with `values`, exactly those ticks (e.g. the ratios 1, 5, 20, 50
    on a log axis, written as plain numbers)."""
    a = ax.xaxis if axis == "x" else ax.yaxis
    if values is not None:
        vals = sorted(set(float(v) for v in values))
        a.set_major_locator(FixedLocator(vals))
        a.set_minor_locator(NullLocator())
        a.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    else:
        a.set_major_locator(MaxNLocator(integer=True, nbins=6))


def reference_line(ax, y, label: str | None = None, x=None, zorder: float | None = None) -> Line2D:
    """A dashed grey reference level (chance, the noise rate): across the axis, or over the
    span `x` = (x0, x1) only; under the data unless `zorder` says otherwise (over bars, which
    would hide it).  Returns its legend handle (label it once per figure)."""
    style = {**REFERENCE, **({"zorder": zorder} if zorder is not None else {})}
    if x is None:
        line = ax.axhline(y, **style)
    else:
        line = ax.plot(list(x), [y, y], **style)[0]
    line.set_label(label or "_nolegend_")
    return Line2D([], [], label=label, **{k: v for k, v in REFERENCE.items() if k != "zorder"})


def chance_level(ax, level: float, label: str = "chance", unit: str = " %") -> Line2D:
    """The chance level of an accuracy axis (call after the data are drawn): a dashed line when
    it leaves the data at least half the axis, else a note on the axis that it lies below (a
    line at 10 % would squeeze accuracies of 95-99 % into a sliver).  Returns the legend handle."""
    lo, hi = ax.dataLim.y0, ax.dataLim.y1
    if not np.isfinite(lo) or hi <= level or (lo - level) <= (hi - lo):
        return reference_line(ax, level, label)
    ax.text(0.01, 0.02, f"{label} = {level:g}{unit}, below the axis", transform=ax.transAxes, fontsize=7,
            color="0.35")
    return Line2D([], [], label=f"{label} = {level:g}{unit} (below the axis)",
                  **{k: v for k, v in REFERENCE.items() if k != "zorder"})


def legend_outside(fig, axes=None, where: str = "right", handles=None, title: str | None = None, ncol=None,
                   into=None, fixed: bool = False):
    """One legend for the whole figure, outside every axis: to the right of the panels, below
    them (`where="bottom"`), or in an empty panel `into` (turned off).  Handles of equal label
    are shown once."""
    if handles is None:
        handles = []
        for ax in (np.ravel(axes) if axes is not None else fig.axes):
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab and not lab.startswith("_") and lab not in [x.get_label() for x in handles]:
                    handles.append(h)
    handles = [h for h in handles if h is not None and h.get_label() and not h.get_label().startswith("_")]
    if not handles:
        return None
    labels = [h.get_label() for h in handles]
    if into is not None:
        into.axis("off")
        return into.legend(handles, labels, loc="center", title=title, ncol=ncol or 1)
    if fixed:   # the right margin kept by fixed_margins(legend_width=...)
        return fig.legend(handles, labels, loc="center right", bbox_to_anchor=(0.995, 0.5), ncol=ncol or 1,
                          title=title)
    if where == "bottom":
        n = ncol or min(len(handles), 4)
        return fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=n,
                          title=title)
    return fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), ncol=ncol or 1,
                      title=title)


def save(fig, path, dpi: int = DPI, tight: bool = True, bbox: bool = True) -> None:
    """Save atomically at the shared dpi.  tight: tight_layout first; bbox: a tight bounding box
    (keeps legends outside the axes).  Each costs about a second for a figure of many panels:
    figures drawn many times per run (Convex-Noise's curves) set their margins themselves
    (`fixed_margins`) and pass both False."""
    if tight:
        fig.tight_layout()
    atomic_savefig(fig, path, dpi=dpi, **({"bbox_inches": "tight"} if bbox else {}))
    plt.close(fig)


def fixed_margins(fig, left=0.75, right=0.2, top=0.7, bottom=0.5, hspace=0.35, wspace=0.12, legend_width=0.0):
    """Margins in inches (no tight_layout, which costs seconds for many panels); `legend_width`
    inches are kept free on the right for a legend placed with `legend_outside(..., fixed=True)`."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - (right + legend_width) / w, top=1 - top / h, bottom=bottom / h,
                        hspace=hspace, wspace=wspace)


# ---------------------------------------------------------------- seed statistics and bands


def seed_stats(values_by_x, logy: bool = False):
    """(x, centre, low, high) over seeds from {x: array of per-seed values}.  Linear: mean +- sd;
    logy: geometric mean x/÷ geometric sd over the positive values (a log-axis band that never
    reaches 0).  Non-finite values (diverged seeds) are left out.  The x values keep the order
    of the dict."""
    xs, mid, lo, hi = [], [], [], []
    for x in values_by_x:   # in the caller's order (groupby sorts numbers and categories properly)
        v = np.asarray(values_by_x[x], dtype=np.float64)
        v = v[np.isfinite(v)]
        if logy:
            v = v[v > 0]
        if len(v) == 0:
            continue
        if logy:
            lv = np.log10(v)
            m, s = lv.mean(), (lv.std(ddof=1) if len(lv) > 1 else 0.0)
            c, a, b = 10 ** m, 10 ** (m - s), 10 ** (m + s)
        else:
            m, s = v.mean(), (v.std(ddof=1) if len(v) > 1 else 0.0)
            c, a, b = m, m - s, m + s
        xs.append(x)
        mid.append(c)
        lo.append(a)
        hi.append(b)
    return np.array(xs), np.array(mid), np.array(lo), np.array(hi)


def band(ax, x, mid, lo, hi, name, clip=None, markers: bool | None = None, label=None, st=None) -> None:
    """A method's centre line with its seed band (clipped to `clip` = (low, high) if given)."""
    st = st or style(name)
    if clip is not None:
        lo, hi = np.clip(lo, *clip), np.clip(hi, *clip)
    markers = len(x) <= 12 if markers is None else markers
    ax.plot(x, mid, color=st["color"], linestyle=st["linestyle"], marker=st["marker"] if markers else None,
            linewidth=st.get("linewidth", 1.5), markersize=st.get("markersize", 4.5),
            label=display(name) if label is None else label, zorder=3)
    ax.fill_between(x, lo, hi, color=st["color"], alpha=0.15, linewidth=0, zorder=2)


def lines_with_band(df, x: str, y: str, hue: str, path, title: str = "", ylabel: str | None = None,
                    logy: bool = False, col: str | None = None, clip=None, integer_x: bool = False,
                    xlabel: str | None = None, hue_order=None, col_order=None, reference=None,
                    reference_label: str = "chance", sharey: bool = True, xticks=None, ylim=None,
                    band_note: bool = True, panel: str = "{col} = {value}", highlight=None,
                    seeds: str | None = None) -> None:
    """Mean over seeds with a +-1 sd band, one line per `hue`, one panel per `col`; the panels
    share their y axis and one legend sits outside them.

    reference: a dashed reference level per panel, a number, a function of x, or {col value: either};
    clip: the
    metric's range, e.g. (0, 100) for accuracy %; logy: log y axis with log-space bands;
    integer_x: integer x ticks (epochs, K); xticks: exactly these x ticks; panel: the panel
    title, a format of {col} and {value}; highlight: a hue drawn black and thick (the target);
    seeds: the seed-count text of the title (default: counted from the frame's `seed` column,
    per point).  A categorical x is evenly spaced: numbers (rates, K) must stay numeric."""
    cols = list(col_order) if col_order is not None else (list(dict.fromkeys(df[col])) if col else [None])
    hues = list(hue_order) if hue_order is not None else list(dict.fromkeys(df[hue]))
    sts = styles([h for h in hues if h != highlight])
    if highlight in hues:
        sts[highlight] = _s(BLACK, "D", "--", 2.2, 5.0)
    categories = None
    if hasattr(df[x], "cat"):   # a categorical x (swept values): evenly spaced, labelled by value
        categories = list(df[x].cat.categories)
        df = df.assign(**{x: df[x].cat.codes.astype(int)})
    n = len(cols)
    ncol = n if n <= 4 else 3          # more panels wrap into rows of three
    nrow = -(-n // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol + 0.4, 2.9 * nrow + 0.3), squeeze=False,
                             sharey=sharey, sharex=True)
    ref_handle = None
    for k, c in enumerate(cols):
        ax = axes.flat[k]
        d = df if c is None else df[df[col] == c]
        for h in hues:
            dh = d[d[hue] == h]
            if dh.empty:
                continue
            groups = {xv: g[y].to_numpy(dtype=float) for xv, g in dh.groupby(x, sort=True, observed=True)}
            xs, mid, lo, hi = seed_stats(groups, logy=logy)
            if len(xs):
                band(ax, xs, mid, lo, hi, h, clip=clip, st=sts[h])
        ref = reference.get(c) if isinstance(reference, dict) else reference
        if callable(ref):   # a level that moves with x (the chance level of a swept rate)
            xs = np.sort(np.unique(d[x].to_numpy(dtype=float)))
            ax.plot(xs, ref(xs), **REFERENCE)
            ref_handle = Line2D([], [], label=reference_label, **{k: v for k, v in REFERENCE.items() if k != "zorder"})
        elif ref is not None and np.isfinite(ref):
            ref_handle = reference_line(ax, ref, reference_label)
        if logy:
            log_axis(ax, "y")
        if integer_x:
            integer_ticks(ax, "x")
        if xticks is not None:
            integer_ticks(ax, "x", xticks)
        if categories is not None:
            ax.set_xticks(range(len(categories)), [str(c) for c in categories])
        ax.set_title(wrap(panel.format(col=col, value=c) if c is not None else "", 40))
        if k >= n - ncol:
            ax.set_xlabel(xlabel or x)
            ax.tick_params(labelbottom=True)
    if ylim is not None:   # after every panel is drawn: shared axes autoscale to all panels' data first
        for ax in axes.flat[:n]:
            ax.set_ylim(*ylim)
    for r in range(nrow):
        axes[r, 0].set_ylabel(ylabel or y)
    if seeds is None:
        seeds = count_seeds(df, [c for c in (col, hue, x) if c])
    if band_note:
        note = (" (geometric mean x/÷ geometric sd over " if logy else " (mean +- sd over ") \
            + (seeds or "seeds") + ")"
    else:
        note = f" ({seeds})" if seeds else ""
    if title or note:
        fig.suptitle(wrap((title or "") + note, 48 * ncol))
    handles = [legend_handle(h, sts[h]) for h in hues if (df[hue] == h).any()]
    spare = list(axes.flat[n:])
    for ax in spare[1:]:
        ax.axis("off")
    legend_outside(fig, handles=handles + ([ref_handle] if ref_handle is not None else []), title=hue,
                   into=spare[0] if spare else None)
    save(fig, path)


def log_axis(ax, axis: str = "y") -> None:
    """A log axis whose ticks read as plain numbers (0.2, 0.5, 1, 2) instead of 2 x 10^-1."""
    a = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    a.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    a.set_minor_locator(NullLocator())
    a.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))


# ---------------------------------------------------------------- bars


def grouped_bars(ax, stats, groups, hues, chance=None, chance_label: str = "chance", sts=None) -> list:
    """Mean bars with sd error bars, one group per `groups` value and one bar per `hues` value.

    stats: {(group, hue): per-seed values}; missing pairs leave no gap (each group is only as
    wide as its bars); chance: {group: level} drawn as a dashed line over that group's bars.
    Returns the legend handles.  The y axis starts at 0."""
    sts = sts or styles(hues)
    width, pos, centres = 0.8, 0.0, []
    handles = {}
    for g in groups:
        present = [h for h in hues if (g, h) in stats and np.isfinite(np.asarray(stats[g, h], float)).any()]
        if not present:
            continue
        w = width / max(len(hues), 1)
        left = pos - w * (len(present) - 1) / 2
        for i, h in enumerate(present):
            v = np.asarray(stats[g, h], dtype=np.float64)
            v = v[np.isfinite(v)]
            sd = v.std(ddof=1) if len(v) > 1 else 0.0
            st = sts[h]
            bar = ax.bar(left + i * w, v.mean(), w * 0.92, yerr=sd, color=st["color"], edgecolor="0.2",
                         linewidth=0.5, capsize=2, error_kw={"elinewidth": 0.8}, label=display(h), zorder=3)
            handles.setdefault(h, bar)
            if len(v) and abs(v.mean()) < 1e-12:   # a bar of height 0 is invisible: say so
                ax.text(left + i * w, 0, "0", ha="center", va="bottom", fontsize=7, color="0.2")
        if chance is not None and g in chance and np.isfinite(chance[g]):
            ch = reference_line(ax, chance[g], chance_label,
                                x=(left - w / 2 - 0.02, left + (len(present) - 0.5) * w + 0.02), zorder=4)
            handles.setdefault("__chance__", ch)
        centres.append((pos, g))
        pos += 1.0
    ax.set_xticks([c for c, _ in centres], [str(g) for _, g in centres])
    ax.set_xlim(-0.6, pos - 0.4)
    ax.set_ylim(bottom=0)
    ax.grid(axis="x", visible=False)
    return [handles[h] for h in hues if h in handles] + ([handles["__chance__"]] if "__chance__" in handles else [])


# ---------------------------------------------------------------- heatmaps and histograms


def heatmap_grid(mats: dict, labels, rows, cols, path, title: str = "", vmin=-1.0, vmax=1.0,
                 highlight: str | None = None, notes: dict | None = None, cbar_label: str = "") -> None:
    """One figure of model x model matrices: a panel per (row, col) (e.g. score x measure), one
    shared colour scale [vmin, vmax] and one colour bar.  `highlight` (the target) is marked by
    a box around its row and column; notes: {col: text} under each column's titles (e.g. the
    chance level of the Jaccard)."""
    n = len(labels)
    size = 0.42 * n + 1.0
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(size * len(cols) + 1.2, 0.9 * size * len(rows) + 0.9),
                             squeeze=False, gridspec_kw={"wspace": 0.08, "hspace": 0.12})
    cmap = plt.get_cmap("RdBu_r")
    im = None
    short = [str(lab) for lab in labels]
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i, j]
            m = mats.get((r, c))
            ax.grid(False)
            if m is None:
                ax.axis("off")
                continue
            im = ax.imshow(m, vmin=vmin, vmax=vmax, cmap=cmap)
            for a in range(n):
                for b in range(n):
                    v = m[a, b]
                    if np.isfinite(v):
                        ax.text(b, a, f"{v:.2f}", ha="center", va="center", fontsize=6.5,
                                color="white" if abs(v) > 0.6 * max(abs(vmin), abs(vmax)) else "black")
            ax.set_xticks(range(n), short if i == len(rows) - 1 else [""] * n, rotation=60, ha="right")
            ax.set_yticks(range(n), short if j == 0 else [""] * n)
            ax.tick_params(length=0)
            if highlight in list(labels):
                t = list(labels).index(highlight)
                for spec in ((t - 0.5, -0.5, 1, n), (-0.5, t - 0.5, n, 1)):
                    ax.add_patch(matplotlib.patches.Rectangle(spec[:2], spec[2], spec[3], fill=False,
                                                              edgecolor="black", linewidth=1.3))
            head = (f"{c}" + (f"\n{notes[c]}" if notes and c in notes else "")) if i == 0 else ""
            ax.set_title(head, fontsize=9)
            if j == 0:
                ax.set_ylabel(str(r), fontsize=9, fontweight="bold")
    if im is not None:
        cb = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, pad=0.02)
        cb.set_label(cbar_label)
    if title:
        fig.suptitle(wrap(title, 30 * len(cols)))
    atomic_savefig(fig, path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def hist_by_group(values, groups, path, title: str = "", xlabel: str = "", bins: int = 40, marks=(),
                  span=None) -> None:
    """Overlaid density histograms of `values`, one per group label (e.g. clean vs corrupted).

    marks: (x, label) vertical dashed lines (e.g. the quantiles a verdict compares); span:
    (x0, x1, label) a shaded interval (e.g. the 2r separation the theory asks for); one that
    runs off the data's range is not shaded (it would cover the whole axis) but drawn as an
    arrow from x0 to the axis edge, its true end written at the tip."""
    values = np.asarray(values, dtype=np.float64)
    groups = np.asarray(groups)
    fig, ax = plt.subplots(figsize=(6.0, 3.1))
    edges = np.histogram_bin_edges(values[np.isfinite(values)], bins=bins)
    colours = {"clean": BLUE, "corrupted": VERMILLION}
    for gname in dict.fromkeys(groups.tolist()):
        v = values[groups == gname]
        ax.hist(v, bins=edges, density=True, histtype="step", linewidth=1.4,
                color=colours.get(gname, style(gname)["color"]), label=f"{gname} (n = {len(v)})")
    lo, hi = ax.get_xlim()
    handles = []
    mark_styles = [(BLACK, (0, (4, 2))), (GREEN, (0, (1, 1.5))), (PURPLE, "-.")]
    for (x, label), (color, ls) in zip(marks, mark_styles):
        if np.isfinite(x):
            ax.axvline(x, color=color, linestyle=ls, linewidth=1.2, label=label)
    if span is not None:
        x0, x1, label = span
        if x1 <= hi:
            ax.axvspan(max(x0, lo), x1, color=GREY, alpha=0.12, linewidth=0, label=label)
        else:
            y = 0.88 * ax.get_ylim()[1]
            ax.annotate("", xy=(hi, y), xytext=(max(x0, lo), y),
                        arrowprops={"arrowstyle": "-|>", "color": "0.3", "linewidth": 1.2})
            ax.text(hi, y, f"  to {x1:.3g}\n  (off the axis)", ha="right", va="bottom", fontsize=7, color="0.3")
            handles = [h for h in ax.get_legend_handles_labels()[0]]
            handles.append(Line2D([], [], color="0.3", marker=">", linewidth=1.2, markersize=4, label=label))
        ax.set_xlim(lo, hi)
    ax.set_title(wrap(title, 60))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    legend_outside(fig, [ax], handles=handles or None, where="bottom" if (marks or span) else "right",
                   ncol=1 if (marks or span) else None)
    save(fig, path)
