"""islab.plots: the shared figure style (known answers and properties, no image comparison)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from islab import convex, online, plots, style
from islab.loader import load_script

ROOT = Path(__file__).resolve().parents[2]


def load(rel):
    return load_script(ROOT / rel, "plots_" + Path(rel).stem.replace("-", "_"))


def figure_method_sets():
    """Every set of method names drawn together in one figure of the repository."""
    static = load("DR-IS/static.py")
    diag = load("DR-IS/diagnostics.py")
    dln = load("DL-noise/is.py")
    syn = load("DR-IS/synthetic.py")
    return {"convex": list(convex.METHODS), "synthetic": list(syn.NAMES.values()),
            "static": list(static.BASE_METHODS) + ["hybrid0.5", "aum_tsr", "cleanlab"], "online": list(online.METHODS),
            "diagnostics mass": list(diag.SAMPLERS), "diagnostics subset": list(diag.SUBSET_SCORES),
            "dl-noise": list(dln.STRATEGIES), "nonconvex welsch": ["sgd", "rr"], "nonconvex mb": ["sgd", "rr-local"]}


def test_methods_drawn_together_never_share_a_colour():
    for fig, names in figure_method_sets().items():
        colours = [plots.styles(names)[n]["color"] for n in names]
        assert len(set(colours)) == len(colours), (fig, dict(zip(names, colours)))


def script_method_ids():
    """Every method id a script writes into a figure."""
    static = load("DR-IS/static.py")
    food = load("DR-IS/food101.py")
    ids = {n for names in figure_method_sets().values() for n in names}
    ids |= set(static.BASE_METHODS) | set(static.EXTRA_METHODS) | set(food.METHODS)
    ids |= {"sgd", "rr", "rr-local"} | set(load("DR-IS/synthetic.py").NAMES)
    return sorted(ids)


def test_every_method_id_has_a_name_and_its_own_colour():
    ids = script_method_ids()
    for i in ids:
        assert style.method_of(i) is not None, f"{i} is not in islab/style.py"
    methods = {style.method_of(i) for i in ids}
    # one display name and one colour per method, never shared by two methods
    names = [style.METHODS[m]["name"] for m in style.METHODS]
    colours = [style.METHODS[m]["color"] for m in style.METHODS]
    assert len(set(names)) == len(names) and len(set(colours)) == len(colours)
    assert methods <= set(style.METHODS)
    # the fallback colours (models, quantities) never look like a method
    assert not set(plots.FALLBACK) & set(colours)


def test_one_method_one_name_and_colour_across_families():
    same = [("uniform", "baseline", "sgd", "Uniform SGD"), ("dris", "dr-is", "ambiguous", "DR-IS"),
            ("standard_is", "grad-is", "Standard IS"), ("loss_is", "loss-is", "Loss IS"),
            ("consensus", "consensus-high")]
    for group in same:
        assert len({plots.style(n)["color"] for n in group}) == 1, group
        assert len({plots.display(n) for n in group}) == 1, group
    assert plots.display("ambiguous") == "DR-IS" and plots.display("grad-is") == "Standard IS"
    # a name without an entry always gets the same fallback colour and keeps its name
    assert plots.style("some-new-method") == plots.style("some-new-method")
    assert plots.display("some-new-method") == "some-new-method"
    assert plots.style("hybrid0.25")["color"] == plots.style("hybrid0.75")["color"] == plots.style("hybrid")["color"]


@pytest.fixture
def kept(monkeypatch):
    """The figures the helpers save, kept open (plots.save is replaced) for inspection."""
    figs = []

    def keep(fig, path, **kw):
        fig.canvas.draw()
        figs.append(fig)
        Path(path).write_bytes(b"")

    monkeypatch.setattr(plots, "save", keep)
    return figs


def colour_of(fig, label):
    """The colour of the legend entry `label` in a figure (line or bar)."""
    from matplotlib.colors import to_hex

    for leg in [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]:
        for h, t in zip(leg.legend_handles, leg.get_texts()):
            if t.get_text() == label:
                c = h.get_color() if hasattr(h, "get_color") else h.get_facecolor()
                return to_hex(c)
    raise AssertionError(f"no legend entry {label}")


def test_same_method_same_colour_in_two_figures(tmp_path, kept):
    df = pd.DataFrame([{"epoch": e, "method": m, "seed": s, "value": 50.0 + s + e}
                       for e in (1, 2) for m in ("uniform", "dris", "standard_is") for s in (0, 1)])
    plots.lines_with_band(df, "epoch", "value", "method", tmp_path / "a.png", title="online")
    fig, ax = plots.plt.subplots()
    handles = plots.grouped_bars(ax, {("t", "random"): [1.0, 2.0], ("t", "dr-is"): [3.0, 4.0]}, ["t"],
                                 ["random", "dr-is"])
    plots.legend_outside(fig, handles=handles)
    kept.append(fig)
    online, static = kept
    assert colour_of(online, "DR-IS") == colour_of(static, "DR-IS") == style.METHODS["dris"]["color"].lower()
    assert colour_of(online, "Uniform SGD") != colour_of(static, "Random subset")
    assert "n = 2 seeds" in online._suptitle.get_text()


def test_seed_count_text():
    assert plots.seeds_text([3, 3]) == "n = 3 seeds" and plots.seeds_text([1]) == "n = 1 seed"
    assert plots.seeds_text([2, 3]) == "n = 2-3 seeds" and plots.seeds_text([]) == ""
    df = pd.DataFrame({"m": ["a", "a", "a", "b", "b"], "seed": [0, 1, 2, 0, 1]})
    assert plots.count_seeds(df, ["m"]) == "n = 2-3 seeds"
    assert plots.count_seeds(df.drop(columns="seed")) == ""


def test_dl_noise_rates_on_a_true_axis(tmp_path, kept):
    rates = [0.0, 0.02, 0.05, 0.1, 0.25]
    rows = []
    for r in rates:
        for st in ("baseline", "ambiguous"):
            for s in (0, 1):
                for m, v in (("final_test_acc", 90 - 100 * r + s), ("best_test_acc", 91.0),
                             ("drawn_corrupt", r / 2)):
                    rows.append({"rate": r, "strategy": st, "seed": s, "metric": m, "value": v, "epoch": np.nan})
                for e in (1, 2):
                    rows += [{"rate": r, "strategy": st, "seed": s, "metric": m, "value": 1.0 / e, "epoch": e}
                             for m in ("train_loss", "test_acc")]
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    (tmp_path / "config.json").write_text('{"dataset": "digits", "mode": "weighted"}')
    load("DL-noise/plot.py").draw(tmp_path)
    acc, corrupted, _, loss = kept
    for fig in (acc, corrupted):
        ax = fig.axes[0]
        xs = [list(c.lines[0].get_xdata()) for c in ax.containers if c.get_label() in ("Uniform SGD", "DR-IS")]
        assert xs and all(x == [100 * r for r in rates] for x in xs)   # x = the rate itself, not its index
        assert "n = 2 seeds" in (fig._suptitle.get_text() if fig._suptitle else ax.get_title())
    assert any(t.get_text().startswith("chance (1/10)") for t in acc.legends[0].get_texts())
    # the plain and the weighted loss never share an axis: one row each, labelled
    assert [ax.get_ylabel() for ax in loss.axes if ax.get_ylabel()] == ["plain mean\ncross-entropy (log)",
                                                                         "1/(N p)-weighted\nloss (log)"]


def test_histogram_span_off_the_axis_is_not_a_band(tmp_path, kept):
    plots.hist_by_group(np.r_[np.zeros(10), np.ones(10) * 0.05], ["clean"] * 10 + ["corrupted"] * 10,
                        tmp_path / "h.png", marks=[(0.01, "q")], span=(0.01, 2.0, "2r"))
    ax = kept[0].axes[0]
    assert not [p for p in ax.patches if type(p).__name__ == "Rectangle" and p.get_alpha() == 0.12]
    assert ax.get_xlim()[1] < 1.0


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
    assert ax.get_ylim()[0] == 0 and [h.get_label() for h in handles] == ["EL2N", "Consensus loss", "chance"]
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


def claims_module():
    return load_script(ROOT / "DR-IS/claims.py", "plots_claims")


def test_paper_vs_reproduction_figures(tmp_path):
    from PIL import Image

    claims = claims_module()
    rows = [{"panel": "clean", "label": "DR-IS", "paper": 92.4, "ours": pd.Series([90.0, 91.0, 92.0]),
             "verdict": "reproduced"},
            {"panel": "clean", "label": "Uniform SGD", "paper": 93.55, "ours": [93.0, 94.0], "verdict": "reference"},
            {"panel": "targeted0.25", "label": "DR-IS", "paper": None, "paper_note": "paper: lost",
             "ours": [80.0], "verdict": "opposite"},
            {"panel": "targeted0.25", "label": "Uniform SGD", "paper": 74.52, "ours": [], "verdict": "not run"}]
    path = claims.draw_paper_vs_ours(rows, tmp_path / "t3.png", "Table 3", "accuracy (%)", (0, 100))
    img = Image.open(path)
    assert img.info["dpi"][0] == pytest.approx(claims.FIGURE_DPI, abs=1) and path.stat().st_size < 100_000
    # Figure 2 on a true rate axis; a method without any result is left out
    fig2 = claims.draw_rate_figure({"dris": {0.0: [90.0, 91.0], 0.25: pd.Series([80.0, 82.0]), 0.5: []},
                                    "aum": {0.0: [], 0.5: []}}, tmp_path / "f2.png", "Figure 2")
    assert fig2.exists()
    # a study without any result draws nothing and says nothing
    st = claims.Study("fashion-mnist", lambda preset, stage, script: tmp_path / "none" / stage)
    assert claims.write_figures(st, tmp_path / "figs", synthetic=tmp_path / "none") == []
    assert claims.figures_markdown([], tmp_path) == []
    md = claims.figures_markdown([tmp_path / "figs" / "paper-table3.png"], tmp_path)
    assert "![paper-table3](docs/figures/paper-table3.png)" in md   # where the repository keeps it, wherever written
    # every paper cell of the tables is a row, missing results included
    t3 = claims.table3_rows(st, {})
    assert len(t3) == 15 and all(len(claims._values(r["ours"])) == 0 for r in t3)
    # each cell's own verdict: every Table 3 cell has a paper difference to uniform, so without
    # results it is "not run" (uniform itself the reference)
    assert {r["verdict"] for r in t3} == {"reference", "not run"}
    # no version stamp in the PNG (byte-stable figures)
    assert "Software" not in img.info


def test_appendix_g_numbers_come_from_one_place():
    syn = load("DR-IS/synthetic.py")
    assert set(syn.PAPER) == set(syn.NAMES) and all(len(v) == len(syn.PAPER_CONFIGS) for v in syn.PAPER.values())
    rows = claims_module().appendix_g_rows(ROOT / "no-such-folder")
    assert [r["paper"] for r in rows if r["label"] == "DR-IS"] == list(syn.PAPER["dr-is"])


def test_gallery_copies_the_listed_demo_figures(tmp_path, capsys):
    from PIL import Image

    from reporting import gallery

    rel, name = gallery.FIGURES[0]
    fig, ax = plots.plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1])
    (tmp_path / "r" / rel).parent.mkdir(parents=True)
    plots.save(fig, tmp_path / "r" / rel)
    made = gallery.copy(tmp_path / "r", tmp_path / "out")
    assert made == [tmp_path / "out" / name]           # the others are missing: skipped, with a warning
    assert "missing" in capsys.readouterr().err
    with Image.open(made[0]) as img, Image.open(tmp_path / "r" / rel) as src:
        assert img.mode == "P" and abs(img.width - src.width * 2 / 3) <= 1
