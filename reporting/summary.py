"""What `make demo` found, in a few lines: one line per family with its headline numbers, read
from the run folders' checksummed results (islab.runs.read_frame, through the frames of
reporting/tables.py, the same numbers `make report` puts in the README), then where the
figures are.  Writes nothing.

    python -m reporting.summary --results-root results
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

# (family label, run folder under the results root): the folders `make demo` writes
DEMO_RUNS = [
    ("Convex-Noise", "Convex-Noise/demo"),
    ("An & Ying (non-convex)", "Convex-Noise/nonconvex/demo"),
    ("DR-IS synthetic", "DR-IS/synthetic/demo"),
    ("DR-IS static", "DR-IS/static/demo"),
    ("DR-IS online", "DR-IS/online/demo"),
    ("DR-IS diagnostics", "DR-IS/diagnostics/demo"),
    ("DL-noise", "DL-noise/r-b64"),
    ("DL-correlation", "DL-correlation/demo"),
]


def _pm(values) -> str:
    """mean ± sd (ddof 1) of test accuracies in %, 'n/a' without any."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return "n/a"
    return f"{v.mean():.2f}" + (f" ± {v.std(ddof=1):.2f}" if len(v) > 1 else "")


def _tag(tag: str) -> str:
    from reporting.tables import tag_label

    return tag_label(tag)


def dris_static(folder: Path) -> str:
    """DR-IS vs random (and the full data) at the first keep fraction, per noise configuration."""
    from reporting.tables import config_of, static_final

    alpha = config_of(folder)["alpha_list"][0]
    fin = static_final(folder)
    d = fin[np.isclose(fin["panel"], alpha)]
    parts = []
    for tag in dict.fromkeys(d["config"]):
        acc = {m: _pm(d[(d["config"] == tag) & (d["method"] == m)]["test_acc"]) for m in ("dris", "random", "full")}
        parts.append(f"{_tag(tag)}: dris {acc['dris']}, random {acc['random']}, full {acc['full']}")
    return f"keep {alpha:g}, test acc %: " + "; ".join(parts)


def dris_online(folder: Path) -> str:
    """DR-IS vs uniform sampling, final test accuracy, per noise configuration."""
    from reporting.tables import online_final

    fin = online_final(folder)
    parts = []
    for tag in dict.fromkeys(fin["config"]):
        acc = {m: _pm(fin[(fin["config"] == tag) & (fin["method"] == m)]["final_acc"]) for m in ("dris", "uniform")}
        parts.append(f"{_tag(tag)}: dris {acc['dris']}, uniform {acc['uniform']}")
    return "final test acc %: " + "; ".join(parts)


def convex(folder: Path) -> str:
    """Objective gap on clean data at the largest norm ratio: the lowest sampler, and DR-IS."""
    from reporting.tables import convex_final

    fin = convex_final(folder)
    d = fin[(fin["metric"] == "gap") & (fin["flip"] == "clean")]
    ratio = d["ratio"].max()
    gaps = d[d["ratio"] == ratio].groupby("method", sort=False)["value"].mean()
    best = gaps.idxmin()
    return (f"objective gap F(w) - F(w*), clean, ratio {ratio:g}: lowest {best} {gaps[best]:.2g}, "
            f"dr-is {gaps.get('dr-is', math.nan):.2g}, uniform {gaps.get('uniform', math.nan):.2g}")


def nonconvex(folder: Path) -> str:
    """Two wells: the share of chains in the global minimum's well at the end, SGD vs RR."""
    from islab import runs
    from reporting.tables import nc_value

    df = runs.read_frame(folder)
    sgd, rr = (nc_value(df, "twowell", m, "sampled", "left_final") for m in ("sgd", "rr"))
    return f"two wells, chains in the global minimum at the end: SGD {sgd:.3f}, RR {rr:.3f}"


def synthetic(folder: Path) -> str:
    """Final clean test accuracy of DR-IS and uniform SGD, per noise configuration."""
    from reporting.tables import synthetic_configs, synthetic_final

    df = synthetic_final(folder)
    last = df[(df["epoch"] == df["epoch"].max()) & (df["metric"] == "test_acc_pct")]
    parts = []
    for kind, rate in synthetic_configs(df[df["method"] != "labels"]):
        d = last[(last["kind"] == kind) & np.isclose(last["rate"], rate)]
        label = "clean" if kind == "clean" else f"{kind} {rate:g}"
        parts.append(f"{label}: dr-is {_pm(d[d['method'] == 'dr-is']['value'])}, "
                     f"uniform {_pm(d[d['method'] == 'uniform']['value'])}")
    return "test acc %: " + "; ".join(parts)


def diagnostics(folder: Path) -> str:
    """The Appendix H assumptions A1 / A2 per noisy configuration (HOLDS / FAILS, from verdict-*.json)."""
    import json
    import re

    parts = []
    for v in sorted(folder.glob("verdict-*.json")):
        text = json.loads(v.read_text())["verdict"]
        checks = re.findall(r"^\s*(A[12]) [^:]*: (HOLDS|FAILS)", text, re.M)
        if checks:
            parts.append(f"{_tag(v.stem[len('verdict-'):])}: " + ", ".join(f"{a} {w}" for a, w in checks))
    return "Appendix H, " + "; ".join(parts) if parts else "histograms and gaps in res.txt"


def dl_noise(folder: Path) -> str:
    """Final test accuracy per strategy at the largest noise rate."""
    from reporting.tables import dlnoise_final

    acc = dlnoise_final(folder)
    acc = acc[acc["metric"] == "final_test_acc"]
    rate = acc["rate"].max()
    d = acc[acc["rate"] == rate]
    parts = [f"{s} {_pm(d[d['strategy'] == s]['value'])}" for s in dict.fromkeys(d["strategy"])]
    return f"test acc % at {100 * rate:g} % noise: " + ", ".join(parts)


def dl_correlation(folder: Path) -> str:
    """Spearman correlation of each proxy's loss ranking with the target's."""
    from reporting.tables import dlcorr_frame, dlcorr_target

    df = dlcorr_frame(folder)
    target = dlcorr_target(folder)
    pairs = df[(df["job"] == "pairs") & (df["model_b"] == target) & (df["score"] == "loss")
               & (df["measure"] == "spearman")]
    parts = [f"{m} {pairs[pairs['model_a'] == m]['value'].mean():.3f}" for m in dict.fromkeys(pairs["model_a"])
             if m != target]
    return f"Spearman of the loss ranking vs {target}: " + ", ".join(parts)


LINES = {"Convex-Noise": convex, "An & Ying (non-convex)": nonconvex, "DR-IS synthetic": synthetic,
         "DR-IS static": dris_static, "DR-IS online": dris_online, "DR-IS diagnostics": diagnostics,
         "DL-noise": dl_noise, "DL-correlation": dl_correlation}


def family_line(label: str, folder: Path) -> str:
    if not (folder / "config.json").is_file():
        return f"{label}: no run folder {folder} (make demo makes it)"
    try:
        return f"{label}: {LINES[label](folder)}"
    except Exception as e:   # a half-finished or older folder: say where to look instead of failing the demo
        return f"{label}: see {folder / 'res.txt'} (no summary: {type(e).__name__}: {e})"


def summary(root: Path) -> list[str]:
    lines = [f"make demo summary (results under {root}):"]
    figures = []
    for label, rel in DEMO_RUNS:
        folder = root / rel
        lines.append("  " + family_line(label, folder))
        if folder.is_dir():
            n = len(list(folder.glob("*.png")))
            if n:
                figures.append(f"{folder}/*.png ({n})")
    lines.append("figures:" + ("".join(f"\n  {f}" for f in figures) if figures else " none yet"))
    lines.append("each folder: res.txt (tables), results.csv, config.json, cmd.txt; the README tables and "
                 "docs/figures from them: make report")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m reporting.summary", description=__doc__.split("\n\n")[0])
    p.add_argument("--results-root", type=Path, default=Path("results"),
                   help="folder holding <family>/<run> folders (default: results)")
    args = p.parse_args(argv)
    print("\n".join(summary(args.results_root)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
