"""islab.plots: the shared figure style (known answers and properties, no image comparison)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from islab import convex, online, plots

ROOT = Path(__file__).resolve().parents[1]


def load(rel):
    spec = importlib.util.spec_from_file_location("plots_" + Path(rel).stem.replace("-", "_"), ROOT / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def figure_method_sets():
    """Every set of method names drawn together in one figure of the repository."""
    static = load("DR-IS/static.py")
    diag = load("DR-IS/diagnostics.py")
    dln = load("DL-noise/is.py")
    syn = load("DR-IS/synthetic.py")
    return {"convex": list(convex.METHODS), "synthetic": list(syn.NAMES.values()),
            "static": list(static.BASE_METHODS) + ["hybrid0.5", "aum_tsr"], "online": list(online.METHODS),
            "diagnostics mass": list(diag.SAMPLERS), "diagnostics subset": list(diag.SUBSET_SCORES),
            "dl-noise": list(dln.STRATEGIES), "nonconvex welsch": ["sgd", "rr"], "nonconvex mb": ["sgd", "rr-local"]}


def test_methods_drawn_together_never_share_a_colour():
    for fig, names in figure_method_sets().items():
        colours = [plots.styles(names)[n]["color"] for n in names]
        assert len(set(colours)) == len(colours), (fig, dict(zip(names, colours)))


def test_one_idea_one_colour_across_families():
    same = [("uniform", "random", "baseline", "sgd", "Uniform SGD"), ("dris", "dr-is", "ambiguous", "DR-IS"),
            ("standard_is", "grad-is", "Standard IS"), ("loss_is", "loss-is", "Loss IS"),
            ("consensus", "consensus-high")]
    for group in same:
        assert len({plots.style(n)["color"] for n in group}) == 1, group
    # a name without an entry always gets the same fallback colour
    assert plots.style("some-new-method") == plots.style("some-new-method")
    assert plots.style("hybrid0.25")["color"] == plots.style("hybrid0.75")["color"] == plots.style("hybrid")["color"]


def test_seed_bands():
    # linear: mean +- sample sd, clipping left to the caller
    x, mid, lo, hi = plots.seed_stats({1: [1.0, 3.0], 2: [2.0, 2.0]})
    assert list(x) == [1, 2] and mid.tolist() == [2.0, 2.0]
    assert lo[0] == pytest.approx(2 - np.sqrt(2)) and hi[1] == 2.0
    # log: geometric mean x/÷ geometric sd, always positive even when mean - sd < 0
    x, mid, lo, hi = plots.seed_stats({0: [1e-3, 1.0, 1e-3]}, logy=True)
    assert mid[0] == pytest.approx(10 ** np.mean([-3, 0, -3])) and lo[0] > 0
    assert np.isclose(np.log10(hi[0]) - np.log10(mid[0]), np.std([-3, 0, -3], ddof=1))
    # non-finite seeds (diverged) are left out; a point without values is dropped
    x, mid, _, _ = plots.seed_stats({0: [np.nan, 2.0], 1: [np.inf]})
    assert list(x) == [0] and mid.tolist() == [2.0]


def test_figures_are_written(tmp_path):
    df = pd.DataFrame([{"epoch": e, "method": m, "config": c, "seed": s, "value": 50 + 10 * s + e}
                       for e in (1, 2, 3) for m in ("uniform", "dris") for c in ("clean", "targeted0.25")
                       for s in (0, 1)])
    plots.lines_with_band(df, "epoch", "value", "method", tmp_path / "a.png", col="config", clip=(0, 100),
                          integer_x=True, reference={"targeted0.25": 60.0}, title="t")
    fig, ax = plots.plt.subplots()
    handles = plots.grouped_bars(ax, {("clean", "el2n"): [0.0, 0.0], ("t", "el2n"): [0.8, 0.9],
                                      ("t", "consensus"): [0.8, 0.9]}, ["clean", "t"], ["el2n", "consensus"],
                                 chance={"t": 0.25})
    assert ax.get_ylim()[0] == 0 and [h.get_label() for h in handles] == ["el2n", "consensus", "chance"]
    plots.save(fig, tmp_path / "b.png")
    mats = {(r, c): np.eye(3) for r in ("loss", "el2n") for c in ("spearman", "jaccard")}
    plots.heatmap_grid(mats, ["a", "b", "t"], ["loss", "el2n"], ["spearman", "jaccard"], tmp_path / "c.png",
                       highlight="t", notes={"jaccard": "chance 0.053"})
    plots.hist_by_group(np.r_[np.zeros(10), np.ones(10)], ["clean"] * 10 + ["corrupted"] * 10, tmp_path / "d.png",
                        marks=[(0.5, "q")], span=(0.5, 9.0, "2r"))
    from PIL import Image

    for f in "abcd":
        img = Image.open(tmp_path / f"{f}.png")
        assert img.info.get("dpi", (plots.DPI,))[0] == pytest.approx(plots.DPI, abs=1), f
