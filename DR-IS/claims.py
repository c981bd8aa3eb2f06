"""The DR-IS paper's claims, the numbers that test them, and the verdict rules: REPRODUCTION.md.

Used by DR-IS/reproduce.py (`--report-only` rewrites the report from the result files).  Every
number in the report is read from the run folders the study wrote; the only numbers typed here
are the paper's own (PAPER, with the table each comes from; most of the paper's numbers were
lost when its text was extracted, and the claim is then quoted in words).

Verdict rules, fixed before looking at the results:
  comparison claims ("A beats B", paired by seed): reproduced when the mean paired difference
      has the paper's sign and the two-sided paired t-test gives p < 0.05; opposite when the
      sign is reversed with p < 0.05; not reproduced otherwise (no significant difference).
  threshold claims (a subset below chance, a collapse, a mass above eps): stated in the claim.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

ALPHA_LEVEL = 0.05
CHANCE_MARGIN = 5.0    # "collapsed" = final accuracy within this many points of chance (DR-IS/online.py)

# The paper's numbers that survived extraction (CIFAR-10, VGG-19-BN target), by table.
PAPER = {
    "table3": {  # online IS, 160 epochs: clean / targeted 10 % / targeted 25 %
        "uniform": (93.55, 86.29, 74.52), "standard_is": (90.81, 10.00, 10.00),
        "rho_approx": (20.21, 22.78, 10.00), "rho_faithful": (36.32, 59.99, 31.30),
        "dris": (92.40, 87.87, 84.04)},
    "table6": {  # static, targeted 25 %, alpha 0.1 / 0.3 / 0.5
        "random": (74.87, 75.73, 75.79), "el2n": (9.39, 53.70, 73.35), "consensus": (9.00, 55.06, 74.14),
        "aum": (79.00, 85.38, 87.32), "dris": (81.81, 83.67, 81.12)},
    "table7": {  # proxy diversity at targeted 25 %: DR-IS accuracy, DR-IS corruption in subset
        "K1": (80.90, 0.077), "K2": (83.13, 0.064), "K3": (81.73, 0.073)},
}


# ---------------------------------------------------------------- reading run folders


def rows_of(folder) -> pd.DataFrame:
    """The tidy rows of a run folder from its checksummed job files (islab.runs.read_frame), not
    from the derived results.csv; empty when the folder does not exist yet."""
    from islab import runs

    folder = Path(folder)
    return runs.read_frame(folder) if (folder / "config.json").exists() else pd.DataFrame()


def final_frame(folder: Path) -> pd.DataFrame:
    """One row per job with its final metrics as columns (static and online run folders).

    online.py calls the configuration 'noise' and the final accuracy 'final_acc'; both are
    renamed to static.py's 'config' and 'test_acc'."""
    df = rows_of(folder)
    if df.empty:
        return df
    if "config" not in df and "noise" in df:
        df = df.rename(columns={"noise": "config"})
    if "epoch" in df:
        df = df[df["epoch"].isna()]
    df = df.assign(metric=df["metric"].replace({"final_acc": "test_acc"}))
    keys = [c for c in ("config", "alpha", "method", "seed") if c in df]
    wide = df.groupby(keys + ["metric"], sort=False)["value"].first().unstack("metric").reset_index()
    return wide


@dataclass
class Study:
    """The run folders of one preset's study, read lazily."""
    preset: str
    folder_of: Callable

    def frame(self, stage: str, script: str, sub: str | None = None) -> pd.DataFrame:
        folder = self.folder_of(self.preset, stage, script)
        return final_frame(folder / sub if sub else folder)

    def folder(self, stage: str, script: str) -> str:
        return str(self.folder_of(self.preset, stage, script))

    def diagnostics(self) -> pd.DataFrame:
        return rows_of(self.folder_of(self.preset, "diagnostics", "diagnostics"))


# ---------------------------------------------------------------- numbers and verdicts


def pick(fin: pd.DataFrame, config: str, method: str, alpha: float | None = None) -> pd.Series:
    """Final test accuracy by seed of one (configuration, method[, alpha]) cell."""
    if fin.empty or "config" not in fin:
        return pd.Series(dtype=float)
    d = fin[(fin["config"] == config) & (fin["method"] == method)]
    if alpha is not None and "alpha" in d:
        d = d[np.isclose(d["alpha"].astype(float), alpha)]
    return d.set_index("seed")["test_acc"].astype(float)


def metric(fin: pd.DataFrame, config: str, method: str, name: str, alpha: float | None = None) -> float:
    if fin.empty or name not in fin:
        return float("nan")
    d = fin[(fin["config"] == config) & (fin["method"] == method)]
    if alpha is not None and "alpha" in d:
        d = d[np.isclose(d["alpha"].astype(float), alpha)]
    v = d[name].astype(float)
    return float(v.mean()) if len(v) else float("nan")


def mean_sd(v: pd.Series) -> str:
    v = v.dropna()
    if len(v) == 0:
        return "not run"
    return f"{v.mean():.2f}" + (f" +- {v.std(ddof=1):.2f}" if len(v) > 1 else "")


def paired(a: pd.Series, b: pd.Series) -> tuple[float, float, float, int]:
    """(mean paired difference a - b, its sample sd, two-sided paired-t p, number of pairs)."""
    from scipy import stats

    common = sorted(set(a.dropna().index) & set(b.dropna().index))
    if not common:
        return float("nan"), float("nan"), float("nan"), 0
    d = a[common].to_numpy() - b[common].to_numpy()
    if len(d) < 2:
        return float(d.mean()), float("nan"), float("nan"), len(d)
    sd = float(d.std(ddof=1))
    p = 0.0 if sd == 0 and d.mean() != 0 else (1.0 if sd == 0 else float(stats.ttest_rel(a[common], b[common]).pvalue))
    return float(d.mean()), sd, p, len(d)


def comparison_verdict(diff: float, p: float, sign: int) -> str:
    if not math.isfinite(diff) or not math.isfinite(p):
        return "not run"
    if p < ALPHA_LEVEL and np.sign(diff) == sign:
        return "reproduced"
    if p < ALPHA_LEVEL and np.sign(diff) == -sign:
        return "opposite"
    return "not reproduced"


def compare(a: pd.Series, b: pd.Series, sign: int, names=("A", "B")) -> tuple[str, str]:
    """(number text, verdict) of the claim 'a beats b' (sign +1) or 'a is below b' (sign -1)."""
    diff, sd, p, n = paired(a, b)
    if n == 0:
        return "not run", "not run"
    text = (f"{names[0]} {mean_sd(a)} vs {names[1]} {mean_sd(b)}: {diff:+.2f} pp"
            + (f" (sd {sd:.2f}, p = {p:.3g}, {n} seeds)" if n > 1 else " (1 seed)"))
    return text, comparison_verdict(diff, p, sign)


def all_of(verdicts: list[str]) -> str:
    """Several sub-claims: reproduced only if all are; opposite if any is opposite."""
    if not verdicts or "not run" in verdicts:
        return "not run"
    if all(v == "reproduced" for v in verdicts):
        return "reproduced"
    return "opposite" if "opposite" in verdicts else "not reproduced"


# ---------------------------------------------------------------- the claims


@dataclass
class Claim:
    cid: str
    text: str          # the paper's claim, in words
    paper: str         # the paper's number(s) or "lost in extraction"
    evaluate: Callable  # Study -> (number text, verdict, run folder)


def _static_vs_random(config, sign):
    def ev(st: Study):
        stage = "table1" if config in ("clean", "targeted0.25") else "table1b"
        fin = st.frame(stage, "static")
        text, verdict = compare(pick(fin, config, "dris", 0.3), pick(fin, config, "random", 0.3), sign,
                                ("DR-IS", "Random"))
        return text, verdict, st.folder(stage, "static")
    return ev


def _magnitude_collapse(st: Study):
    fin = st.frame("table1", "static")
    ref = pick(fin, "targeted0.25", "random", 0.3)
    eps = metric(fin, "targeted0.25", "random", "eps", 0.3)
    parts, verdicts = [], []
    for m in ("el2n", "consensus", "forgetting"):
        diff, _, p, n = paired(pick(fin, "targeted0.25", m, 0.3), ref)
        cis = metric(fin, "targeted0.25", m, "corruption_in_subset", 0.3)
        if n == 0:
            parts.append(f"{m} not run")
            verdicts.append("not run")
            continue
        parts.append(f"{m} {mean_sd(pick(fin, 'targeted0.25', m, 0.3))} ({diff:+.2f} pp vs Random, p = {p:.3g}; "
                     f"subset {cis:.3f} corrupted)")
        v = comparison_verdict(diff, p, -1)
        if v == "reproduced" and not cis > eps:
            v = "not reproduced"
        if m != "forgetting":   # the paper's claim names EL2N and Consensus-loss; forgetting is reported
            verdicts.append(v)
    return "; ".join(parts) + f"; Random {mean_sd(ref)}, eps {eps:.2f}", all_of(verdicts), st.folder("table1", "static")


def _subset_below_chance(method, factor):
    def ev(st: Study):
        fin = st.frame("table1", "static")
        fin_b = st.frame("table1b", "static")
        out, verdicts = [], []
        for f, config in ((fin_b, "targeted0.1"), (fin, "targeted0.25")):
            cis = metric(f, config, method, "corruption_in_subset", 0.3)
            eps = metric(f, config, method, "eps", 0.3)
            if not math.isfinite(cis):
                verdicts.append("not run")
                continue
            out.append(f"{config}: {cis:.3f} of the subset corrupted (eps {eps:.2f})")
            verdicts.append("reproduced" if cis < factor * eps else "not reproduced")
        return "; ".join(out) or "not run", all_of(verdicts), st.folder("table1", "static")
    return ev


def _table6(method_a, method_b, alpha, sign):
    def ev(st: Study):
        stage = "table1" if alpha == 0.3 else "alpha"
        fin = st.frame(stage, "static")
        text, verdict = compare(pick(fin, "targeted0.25", method_a, alpha), pick(fin, "targeted0.25", method_b, alpha),
                                sign, (method_a, method_b))
        return text, verdict, st.folder(stage, "static")
    return ev


def _magnitude_below_random_every_alpha(st: Study):
    parts, verdicts = [], []
    for alpha in (0.1, 0.3, 0.5):
        stage = "table1" if alpha == 0.3 else "alpha"
        fin = st.frame(stage, "static")
        ref = pick(fin, "targeted0.25", "random", alpha)
        for m in ("el2n", "consensus"):
            diff, _, p, n = paired(pick(fin, "targeted0.25", m, alpha), ref)
            if n == 0:
                verdicts.append("not run")
                continue
            parts.append(f"a{alpha:g} {m} {diff:+.2f} pp (p = {p:.3g})")
            verdicts.append(comparison_verdict(diff, p, -1))
    return "; ".join(parts) or "not run", all_of(verdicts), st.folder("alpha", "static")


def _rate_sweep(st: Study):
    rows = []
    for stage, config in (("table1b", "targeted0.1"), ("table1", "targeted0.25"),
                          ("rate", "targeted0.4"), ("rate", "targeted0.5")):
        fin = st.frame(stage, "static")
        dris, aum = pick(fin, config, "dris", 0.3), pick(fin, config, "aum", 0.3)
        if dris.empty or aum.empty:
            continue
        rows.append((config, dris, aum, metric(fin, config, "dris", "corruption_in_subset", 0.3),
                     metric(fin, config, "aum", "corruption_in_subset", 0.3)))
    if not rows:
        return "not run", "not run", st.folder("rate", "static")
    text = "; ".join(f"{c[8:]}: DR-IS {mean_sd(d)} (cis {cd:.3f}) vs AUM {mean_sd(a)} (cis {ca:.3f})"
                     for c, d, a, cd, ca in rows)
    last = rows[-1]
    diff, _, p, n = paired(last[2], last[1])
    verdict = comparison_verdict(diff, p, +1)   # AUM above DR-IS at the highest rate
    cis = [r[3] for r in rows]
    if verdict == "reproduced" and not all(b >= a for a, b in zip(cis, cis[1:])):
        verdict = "not reproduced"
    return text, verdict, st.folder("rate", "static")


def _online(config, method, sign, ref="uniform"):
    def ev(st: Study):
        fin = st.frame("online", "online")
        text, verdict = compare(pick(fin, config, method), pick(fin, config, ref), sign, (method, ref))
        return text, verdict, st.folder("online", "online")
    return ev


def _online_tracks_uniform(st: Study):
    fin = st.frame("online", "online")
    a, b = pick(fin, "clean", "dris"), pick(fin, "clean", "uniform")
    diff, sd, p, n = paired(a, b)
    if n == 0:
        return "not run", "not run", st.folder("online", "online")
    text = f"DR-IS {mean_sd(a)} vs uniform {mean_sd(b)}: {diff:+.2f} pp (p = {p:.3g}, {n} seeds)"
    verdict = "reproduced" if abs(diff) <= 2.0 else ("opposite" if p < ALPHA_LEVEL else "not reproduced")
    return text, verdict, st.folder("online", "online")


def _standard_is_collapse(st: Study):
    fin = st.frame("online", "online")
    parts, verdicts = [], []
    chance = 10.0
    for config in ("targeted0.1", "targeted0.25"):
        a, u = pick(fin, config, "standard_is"), pick(fin, config, "uniform")
        if a.empty:
            verdicts.append("not run")
            continue
        parts.append(f"{config}: standard IS {mean_sd(a)} vs uniform {mean_sd(u)}")
        collapsed = a.mean() <= chance + CHANCE_MARGIN
        diff, _, p, _ = paired(a, u)
        verdicts.append("reproduced" if collapsed else
                        ("opposite" if p < ALPHA_LEVEL and diff > 0 else "not reproduced"))
    return "; ".join(parts) or "not run", all_of(verdicts), st.folder("online", "online")


def _rho_below_uniform(st: Study):
    fin = st.frame("online", "online")
    parts, verdicts = [], []
    for config in ("clean", "targeted0.1", "targeted0.25"):
        for m in ("rho_approx", "rho_faithful"):
            diff, _, p, n = paired(pick(fin, config, m), pick(fin, config, "uniform"))
            if n == 0:
                verdicts.append("not run")
                continue
            parts.append(f"{config} {m} {diff:+.2f} pp (p = {p:.3g})")
            verdicts.append(comparison_verdict(diff, p, -1))
    return "; ".join(parts) or "not run", all_of(verdicts), st.folder("online", "online")


def _theorem2_mass(st: Study):
    fin = st.frame("online", "online")
    parts, verdicts = [], []
    for config, eps in (("targeted0.1", 0.1), ("targeted0.25", 0.25)):
        mass = metric(fin, config, "standard_is", "mass_corrupt_mean")
        dris = metric(fin, config, "dris", "mass_corrupt_mean")
        if not math.isfinite(mass):
            verdicts.append("not run")
            continue
        parts.append(f"{config}: standard IS {mass:.3f}, DR-IS {dris:.3f} (eps {eps:g})")
        verdicts.append("reproduced" if mass >= eps else "not reproduced")
    return "; ".join(parts) or "not run", all_of(verdicts), st.folder("online", "online")


def _ensemble_variants(stage: str, subs: tuple):
    """DR-IS with other proxy ensembles (sub-runs of an ablation sweep) against Random (table1):
    'works' = subset corruption below eps and accuracy significantly above Random."""
    def ev(st: Study):
        ref = pick(st.frame("table1", "static"), "targeted0.25", "random", 0.3)
        parts, verdicts = [], []
        for sub in subs:
            fin = st.frame(stage, "ablations", sub=sub)
            a = pick(fin, "targeted0.25", "dris", 0.3)
            if a.empty:
                verdicts.append("not run")
                continue
            cis = metric(fin, "targeted0.25", "dris", "corruption_in_subset", 0.3)
            diff, _, p, _ = paired(a, ref)
            label = f"K={sub[1:]}" if stage == "k" else sub
            parts.append(f"{label}: {mean_sd(a)} (cis {cis:.3f}; {diff:+.2f} pp vs Random, p = {p:.3g})")
            verdicts.append("reproduced" if cis < 0.25 and comparison_verdict(diff, p, +1) == "reproduced"
                            else "not reproduced")
        return "; ".join(parts) or "not run", all_of(verdicts), st.folder(stage, "ablations")
    return ev


def _separation(st: Study):
    df = st.diagnostics()
    if df.empty:
        return "not run", "not run", st.folder("diagnostics", "diagnostics")
    d = df[df["config"] == "targeted0.25"]
    wide = d.pivot_table(index="K", columns="metric", values="value", aggfunc="first")
    parts, verdicts = [], []
    for k, row in wide.iterrows():
        parts.append(f"K={int(k)}: gap {row.get('empirical_gap', float('nan')):+.4f} vs 2r "
                     f"{row.get('two_radius', float('nan')):.3f}, AUROC(low s -> corrupted) "
                     f"{row.get('auroc_low_s', float('nan')):.3f}")
        if k >= 3:
            verdicts.append("reproduced" if row.get("empirical_gap", -1) > 0 else "not reproduced")
    return "; ".join(parts), all_of(verdicts), st.folder("diagnostics", "diagnostics")


CLAIMS = [
    Claim("T1 targeted 25 %", "Static pruning (alpha 0.3): DR-IS beats Random under targeted noise",
          "CIFAR-10: significant gain (paired t, Table 5; value lost); Table 6 at alpha 0.3: 83.67 vs 75.73",
          _static_vs_random("targeted0.25", +1)),
    Claim("T1 targeted 10 %", "... and at targeted 10 %", "lost in extraction",
          _static_vs_random("targeted0.1", +1)),
    Claim("T1 uniform 10 %", "DR-IS 'consistently outperforms Random pruning under noise' (uniform too)",
          "lost in extraction", _static_vs_random("uniform0.1", +1)),
    Claim("T1 clean", "A slight clean-data deficit of DR-IS against Random (CIFAR-10; a gain on CIFAR-100)",
          "significant but small (value lost)", _static_vs_random("clean", -1)),
    Claim("T1/T2 collapse", "EL2N and Consensus-loss collapse under targeted noise, their subsets mostly "
          "corrupted (Theorem 2); rule: each significantly below Random with subset corruption above eps",
          "near chance (value lost); Table 6 alpha 0.3: EL2N 53.70, Consensus 55.06 vs Random 75.73",
          _magnitude_collapse),
    Claim("T2 DR-IS subset", "DR-IS's subset holds fewer corrupted examples than chance (rule: below eps)",
          "lost in extraction (Table 7: 0.064-0.077 at eps 0.25)", _subset_below_chance("dris", 1.0)),
    Claim("T2 AUM subset", "AUM achieves near-perfect noise rejection (rule: below eps / 10)",
          "lost in extraction", _subset_below_chance("aum", 0.1)),
    Claim("T6 alpha 0.1", "DR-IS beats Random at alpha 0.1 (targeted 25 %)", "81.81 vs 74.87",
          _table6("dris", "random", 0.1, +1)),
    Claim("T6 alpha 0.5", "DR-IS beats Random at alpha 0.5 (targeted 25 %)", "81.12 vs 75.79",
          _table6("dris", "random", 0.5, +1)),
    Claim("T6 magnitude", "EL2N and Consensus-loss stay below Random at every alpha", "e.g. alpha 0.5: 73.35, "
          "74.14 vs 75.79", _magnitude_below_random_every_alpha),
    Claim("T6 DR-IS vs AUM, alpha 0.1", "DR-IS beats AUM at alpha 0.1", "81.81 vs 79.00",
          _table6("dris", "aum", 0.1, +1)),
    Claim("T6 AUM vs DR-IS, alpha 0.3", "AUM beats DR-IS at alpha 0.3 (the main text says the opposite: "
          "'DR-IS outperforms AUM under noise')", "85.38 vs 83.67", _table6("aum", "dris", 0.3, +1)),
    Claim("T6 AUM vs DR-IS, alpha 0.5", "AUM beats DR-IS at alpha 0.5", "87.32 vs 81.12",
          _table6("aum", "dris", 0.5, +1)),
    Claim("F2 corruption rate", "DR-IS degrades as eps grows toward 0.5 (its subset corruption rising); AUM "
          "stays flat and is above DR-IS at high eps (rule: AUM significantly above DR-IS at eps 0.5 and DR-IS's "
          "subset corruption non-decreasing in eps)", "lost in extraction", _rate_sweep),
    Claim("T3 clean", "DR-IS-online closely tracks Uniform SGD on clean data (rule: within 2 pp)",
          "92.40 vs 93.55", _online_tracks_uniform),
    Claim("T3 targeted 10 %", "DR-IS-online beats Uniform SGD under targeted noise", "87.87 vs 86.29",
          _online("targeted0.1", "dris", +1)),
    Claim("T3 targeted 25 %", "... and at targeted 25 %", "84.04 vs 74.52", _online("targeted0.25", "dris", +1)),
    Claim("T3 Standard IS", "Standard IS collapses under targeted noise (rule: within 5 pp of chance)",
          "10.00 / 10.00 vs uniform 86.29 / 74.52", _standard_is_collapse),
    Claim("T3 RHO-LOSS", "Both RHO-LOSS variants fall below Uniform SGD in every setting",
          "approx 20.21 / 22.78 / 10.00, faithful 36.32 / 59.99 / 31.30", _rho_below_uniform),
    Claim("Thm 2", "A loss-magnitude sampler puts at least mass eps on the corrupted set (online Standard IS; "
          "rule: mean sampling mass on corrupted >= eps)", "theorem", _theorem2_mass),
    Claim("K ablation", "DR-IS works from small K (rule: at every K, subset corruption below eps and "
          "accuracy significantly above Random)", "bimodal by small K (value lost)", _ensemble_variants("k", ("K2", "K3", "K5"))),
    Claim("T7 proxy sets", "All three proxy sets (K1, K2 homogeneous; K3 mixed) work (same rule)",
          "K1 80.90 / 0.077, K2 83.13 / 0.064, K3 81.73 / 0.073 (acc / cis)",
          _ensemble_variants("proxysets", ("K1", "K2", "K3"))),
    Claim("App. H", "The empirical separation gap is positive (the corrupted bulk has lower rank variance "
          "than the clean boundary) while the McDiarmid bound 2r is conservative (rule: gap > 0 for K >= 3)",
          "'empirical separation outpaces the worst-case bound'", _separation),
]


# ---------------------------------------------------------------- the report


def _md_table(head, rows) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join(out)


def static_table(st: Study, stages=(("table1", "clean"), ("table1b", "uniform0.1"), ("table1b", "targeted0.1"),
                                    ("table1", "targeted0.25"))) -> str:
    """Tables 1 and 2: accuracy and corruption in the kept subset per method and configuration."""
    methods = ["random", "el2n", "forgetting", "consensus", "aum", "dris", "full"]
    head = ["method"] + [f"{c} acc %" for _, c in stages] + [f"{c} cis" for _, c in stages[1:]]
    rows = []
    for m in methods:
        accs, ciss = [], []
        for stage, c in stages:
            fin = st.frame(stage, "static")
            alpha = None if m == "full" else 0.3
            accs.append(mean_sd(pick(fin, c, m, alpha)))
            if c != "clean":
                v = metric(fin, c, m, "corruption_in_subset", alpha)
                ciss.append("-" if not math.isfinite(v) else f"{v:.3f}")
        rows.append([m] + accs + ciss)
    return _md_table(head, rows)


def balanced_table(st: Study) -> str:
    """--class-balanced against the global top-alpha, same proxies and seeds 0-2."""
    glob, bal = st.frame("table1", "static"), st.frame("balanced", "static")
    head = ["method (seeds of the balanced run)", "clean global", "clean balanced", "t25 global", "t25 balanced", "t25 cis global",
            "t25 cis balanced", "class kept global (t25)"]
    rows = []
    for m in ("el2n", "forgetting", "consensus", "aum", "dris"):
        cells = [m]
        for c in ("clean", "targeted0.25"):
            g = pick(glob, c, m, 0.3)
            b = pick(bal, c, m, 0.3)
            cells += [mean_sd(g[g.index.isin(b.index)] if len(b) else g), mean_sd(b)]
        cells += [f"{metric(glob, 'targeted0.25', m, 'corruption_in_subset', 0.3):.3f}",
                  f"{metric(bal, 'targeted0.25', m, 'corruption_in_subset', 0.3):.3f}",
                  f"{metric(glob, 'targeted0.25', m, 'class_kept_min', 0.3):.2f}-"
                  f"{metric(glob, 'targeted0.25', m, 'class_kept_max', 0.3):.2f}"]
        rows.append(cells)
    return _md_table(head, rows)


def online_table(st: Study) -> str:
    fin = st.frame("online", "online")
    head = ["method"] + [f"{c} acc %" for c in ("clean", "targeted0.1", "targeted0.25")] + \
        ["t25 mass on corrupted", "t25 ESS/N", "t25 largest weight drawn", "diverged"]
    rows = []
    for m in ("uniform", "standard_is", "rho_approx", "rho_faithful", "dris"):
        cells = [m] + [mean_sd(pick(fin, c, m)) for c in ("clean", "targeted0.1", "targeted0.25")]
        for name, fmt in (("mass_corrupt_mean", "{:.3f}"), ("ess_mean", "{:.3f}"), ("max_weight_drawn_max", "{:.1f}")):
            v = metric(fin, "targeted0.25", m, name)
            cells.append("-" if not math.isfinite(v) else fmt.format(v))
        d = fin[fin["method"] == m] if not fin.empty else fin
        cells.append(f"{int(d['diverged'].sum())}/{len(d)}" if "diverged" in d and len(d) else "-")
        rows.append(cells)
    return _md_table(head, rows)


def alpha_table(st: Study) -> str:
    """Table 6: targeted 25 %, accuracy at alpha 0.1 / 0.3 / 0.5."""
    head = ["method"] + [f"alpha {a:g} acc %" for a in (0.1, 0.3, 0.5)] + [f"alpha {a:g} cis" for a in (0.1, 0.3, 0.5)]
    rows = []
    for m in ("random", "el2n", "consensus", "aum", "dris"):
        accs, ciss = [], []
        for a in (0.1, 0.3, 0.5):
            fin = st.frame("table1" if a == 0.3 else "alpha", "static")
            accs.append(mean_sd(pick(fin, "targeted0.25", m, a)))
            v = metric(fin, "targeted0.25", m, "corruption_in_subset", a)
            ciss.append("-" if not math.isfinite(v) else f"{v:.3f}")
        rows.append([m] + accs + ciss)
    return _md_table(head, rows)


def rate_table(st: Study) -> str:
    """Figure 2 as a table: targeted noise at rate eps, alpha 0.3, accuracy (cis)."""
    cells = (("table1", "clean", 0.0), ("table1b", "targeted0.1", 0.1), ("table1", "targeted0.25", 0.25),
             ("rate", "targeted0.4", 0.4), ("rate", "targeted0.5", 0.5))
    head = ["method"] + [f"eps {e:g}" for _, _, e in cells]
    rows = []
    for m in ("random", "el2n", "consensus", "aum", "dris"):
        row = [m]
        for stage, c, _ in cells:
            fin = st.frame(stage, "static")
            v = metric(fin, c, m, "corruption_in_subset", 0.3)
            row.append(mean_sd(pick(fin, c, m, 0.3)) + ("" if not math.isfinite(v) else f" (cis {v:.3f})"))
        rows.append(row)
    return _md_table(head, rows)


def ablation_table(st: Study) -> str:
    """DR-IS at targeted 25 % with K proxies and with the K1 / K2 / K3 proxy sets."""
    rows = []
    for stage, subs in (("k", ("K2", "K3", "K5")), ("proxysets", ("K1", "K2", "K3"))):
        for sub in subs:
            fin = st.frame(stage, "ablations", sub=sub)
            v = metric(fin, "targeted0.25", "dris", "corruption_in_subset", 0.3)
            label = f"K = {sub[1:]}" if stage == "k" else f"set {sub}"
            rows.append([label, mean_sd(pick(fin, "targeted0.25", "dris", 0.3)),
                         "-" if not math.isfinite(v) else f"{v:.3f}"])
    return _md_table(["proxies", "DR-IS acc %", "cis"], rows)


def diagnostics_table(st: Study) -> str:
    """Appendix H at targeted 25 %: separation of the rank variance s by K."""
    df = st.diagnostics()
    if df.empty:
        return "not run"
    d = df[df["config"] == "targeted0.25"].pivot_table(index="K", columns="metric", values="value", aggfunc="first")
    names = [("empirical_gap", "empirical gap (strict: boundary min, bulk tail 0.1)", "{:+.4f}"),
             ("gap_min_tail0.2", "gap, bulk tail 0.2", "{:+.4f}"),
             ("gap_median_tail0.1", "gap, boundary median", "{:+.4f}"),
             ("gap_median_tail0.2", "gap, boundary median + tail 0.2", "{:+.4f}"),
             ("two_radius", "2r (McDiarmid)", "{:.3f}"),
             ("auroc_low_s", "AUROC low s -> corrupted", "{:.3f}"), ("cis_dris", "cis top-30 % by s", "{:.3f}"),
             ("mass_standard_is", "mass on corrupted: standard IS", "{:.3f}"),
             ("mass_dris", "mass on corrupted: DR-IS", "{:.3f}")]
    rows = [[str(int(k))] + [fmt.format(r[m]) if m in r and math.isfinite(r[m]) else "-" for m, _, fmt in names]
            for k, r in d.iterrows()]
    return _md_table(["K"] + [n for _, n, _ in names], rows)


def memorisation(st: Study) -> str:
    """The preset's premise: uniform SGD on the full data fits the targeted noise."""
    folder = Path(st.folder_of(st.preset, "table1", "static"))
    fin = st.frame("table1", "static")
    clean_acc, t25_acc = pick(fin, "clean", "full"), pick(fin, "targeted0.25", "full")
    if clean_acc.empty or t25_acc.empty:
        return "not run"
    fit = metric(fin, "targeted0.25", "full", "fit_noisy_corrupt")
    resisted = metric(fin, "targeted0.25", "full", "fit_true_corrupt")
    base = []
    # only files a job file recorded, checked against its SHA-256 (a damaged one stops the report)
    from islab import runs

    lab = runs.verified_file(folder, "labels-targeted0.25.npz") if (folder / "config.json").exists() else None
    for seed in clean_acc.index:
        pf = runs.verified_file(folder, f"predictions-clean-full-s{int(seed)}.npz") if lab else None
        if lab and pf:
            with np.load(lab) as z, np.load(pf) as p:
                m = z["corrupt"]
                base.append(float((p["train_pred"][m] == z["noisy"][m]).mean()))
    diff, sd, p, n = paired(clean_acc, t25_acc)
    return (f"full-data training, test accuracy clean {mean_sd(clean_acc)} vs targeted 25 % {mean_sd(t25_acc)} "
            f"(drop {diff:.2f} pp, p = {p:.3g}, {n} seeds). On the corrupted training examples the targeted-25 % "
            f"model predicts the flipped label for {100 * fit:.1f} % and the true label for {100 * resisted:.1f} %; "
            f"a model trained on the clean labels predicts those same flipped labels for "
            + (f"{100 * np.mean(base):.1f} %" if base else "(not available)")
            + " (the memorisation baseline).")


# ---------------------------------------------------------------- sensitivity of the online verdicts
# (the `sensitivity` stages of DR-IS/reproduce.py: one factor at a time around online.py's defaults)

# method -> [(variant label, stage, method as run there)]; "online" is the default itself
SENS_VARIANTS = {
    "standard_is": [("default: floor 0.1, refreshed target, weighted", "online", "standard_is"),
                    ("floor 0", "sensitivity-floor0", "standard_is"),
                    ("floor 0.01", "sensitivity-floor0.01", "standard_is"),
                    ("frozen proxy snapshot", "sensitivity-frozen", "standard_is"),
                    ("unweighted", "sensitivity-unweighted", "standard_is")],
    "rho_faithful": [("default: floor 0.1, refreshed target, weighted", "online", "rho_faithful"),
                     ("floor 0", "sensitivity-floor0", "rho_faithful"),
                     ("floor 0.01", "sensitivity-floor0.01", "rho_faithful"),
                     ("frozen proxy snapshot (= rho_approx)", "online", "rho_approx"),
                     ("unweighted", "sensitivity-unweighted", "rho_faithful")],
    "rho_approx": [("default: floor 0.1, frozen proxy snapshot, weighted", "online", "rho_approx"),
                   ("floor 0", "sensitivity-floor0", "rho_approx"),
                   ("floor 0.01", "sensitivity-floor0.01", "rho_approx"),
                   ("unweighted", "sensitivity-unweighted", "rho_approx")],
}
SENS_STAGES = ("online", "sensitivity-floor0", "sensitivity-floor0.01", "sensitivity-frozen", "sensitivity-unweighted")


def vs_uniform(a: pd.Series, u: pd.Series) -> tuple[str, str]:
    """(number text, verdict) of a sampler against uniform, paired by seed: 'above uniform' /
    'below uniform' at p < 0.05, else 'no significant difference' ('not run' without pairs)."""
    diff, _, p, n = paired(a, u)
    if n == 0:
        return "-", "not run"
    verdict = ("no significant difference" if not (math.isfinite(p) and p < ALPHA_LEVEL)
               else "above uniform" if diff > 0 else "below uniform")
    return f"{diff:+.2f} pp (p = {p:.3g})" if math.isfinite(p) else f"{diff:+.2f} pp (1 seed)", verdict


def sensitivity_rows(frames: dict) -> list[dict]:
    """One dict per (config, method, variant) from the final frames of the stages (stage ->
    final_frame(), online.py's columns renamed as final_frame does): accuracy by seed, its
    verdict against the `online` stage's uniform, diverged count, largest weights."""
    online = frames.get("online", pd.DataFrame())
    configs = [c for st in SENS_STAGES[1:] for c in frames.get(st, pd.DataFrame()).get("config", [])]
    out = []
    for config in dict.fromkeys(configs):
        u = pick(online, config, "uniform")
        for method, variants in SENS_VARIANTS.items():
            for label, stage, m in variants:
                fin = frames.get(stage, pd.DataFrame())
                acc = pick(fin, config, m)
                d = fin[(fin["config"] == config) & (fin["method"] == m)] if len(acc) else fin.iloc[:0]
                text, verdict = vs_uniform(acc, u)
                col = lambda name: d[name].astype(float) if name in d else pd.Series(dtype=float)  # noqa: E731
                out.append({"config": config, "method": method, "variant": label, "acc": acc, "vs": text,
                            "verdict": verdict, "diverged": int(col("diverged").sum()), "n": len(acc),
                            "max_w": col("max_weight_max").max(), "max_w_drawn": col("max_weight_drawn_max").max()})
    return out


def sensitivity_table(rows: list[dict]) -> str:
    """method x variant: final accuracy mean +- sd, against uniform, diverged runs, largest weights."""
    def w(v):
        # floor 0 allows weights of 1e20 and more: written in powers of ten past 10^5
        return "-" if not math.isfinite(v) else f"{v:.1f}" if v < 1e5 else f"{v:.2e}"
    head = ["config", "method", "variant", "final acc %", "vs uniform (paired)", "verdict", "diverged",
            "max w (p)", "max w drawn"]
    body = [[r["config"], r["method"], r["variant"], mean_sd(r["acc"]), r["vs"], r["verdict"],
             f"{r['diverged']}/{r['n']}" if r["n"] else "-", w(r["max_w"]), w(r["max_w_drawn"])] for r in rows]
    return _md_table(head, body)


def sensitivity_sentences(rows: list[dict]) -> list[str]:
    """Per (config, method): which single choice changes the default's verdict against uniform."""
    out = []
    for config, method in dict.fromkeys((r["config"], r["method"]) for r in rows):
        rs = [r for r in rows if r["config"] == config and r["method"] == method]
        base, others = rs[0], [r for r in rs[1:] if r["verdict"] != "not run"]
        if base["verdict"] == "not run" or not others:
            out.append(f"- {config}, {method}: not run.")
            continue
        changed = [f"{r['variant']} changes it to {r['verdict']} ({r['vs']}"
                   + (f", {r['diverged']}/{r['n']} diverged" if r["diverged"] else "") + ")"
                   for r in others if r["verdict"] != base["verdict"]]
        kept = [r["variant"] for r in others if r["verdict"] == base["verdict"]]
        verb = "keeps" if len(kept) == 1 else "keep"
        head = f"- {config}, {method}: default {base['verdict']} ({base['vs']} vs uniform); "
        out.append(head + ("; ".join(changed) + (f"; {', '.join(kept)} {verb} it." if kept else ".")
                           if changed else f"no single choice changes it ({', '.join(kept)} {verb} it)."))
    return out


def sensitivity_section(st: Study) -> str:
    rows = sensitivity_rows({stage: st.frame(stage, "online") for stage in SENS_STAGES})
    if not rows:
        return "not run (`python DR-IS/reproduce.py --stages sensitivity`)"
    return sensitivity_table(rows) + "\n\n" + "\n".join(sensitivity_sentences(rows))


def report(root, presets, folder_of, figures_dir=None) -> str:
    """REPRODUCTION.md's text; with `figures_dir`, also the paper-vs-reproduction figures of the
    main preset (write_figures), shown in a section of the report."""
    studies = {p: Study(p, folder_of) for p in presets}
    main, other = presets[0], presets[1:]
    repo = Path(__file__).resolve().parent.parent
    shown = Path(root).resolve()
    shown = shown.relative_to(repo) if shown.is_relative_to(repo) else shown   # results/, not this machine's path
    lines = ["# Reproduction report: the DR-IS paper's claims on real data", "",
             f"Generated by `python DR-IS/reproduce.py --report-only` from the run folders under `{shown}` "
             "(`make reproduce` runs the study first). Do not edit by hand: rerun the command.", "",
             "The paper (Horvath & Singh, DR-IS) reports CIFAR-10/100 with a VGG-19-BN / ResNet-18 target and "
             "CIFAR proxies. Here the same protocols run on **Fashion-MNIST** (60,000 training images; target "
             "mlp2x256, proxies pooled_cnn, mlp, linear; see DR-IS/README.md) and on scikit-learn's digits "
             "(1,437 images). Most of the paper's numbers were lost when its text was extracted: the claim is "
             "then quoted in words.", "",
             "Verdict rules (fixed before the runs): a comparison is *reproduced* when the mean paired "
             f"difference over seeds has the paper's sign and the two-sided paired t-test gives p < {ALPHA_LEVEL}; "
             "*opposite* when the sign is reversed with p < 0.05; *not reproduced* otherwise. Threshold rules are "
             "stated in the claim. mean +- sample sd over seeds; pp = percentage points; cis = fraction of the "
             "kept subset that is corrupted (chance = eps).", "",
             "## Claims", ""]
    head = ["claim", "paper says (CIFAR-10)", "paper's number", f"{main}", "verdict"] + \
        [f"{o}" for o in other] + [f"verdict ({o})" for o in other] + ["run folder"]
    rows = []
    for c in CLAIMS:
        text, verdict, folder = c.evaluate(studies[main])
        cells = [c.cid, c.text, c.paper, text, f"**{verdict}**"]
        o_text, o_verdicts = [], []
        for o in other:
            t, v, _ = c.evaluate(studies[o])
            o_text.append(t)
            o_verdicts.append(v)
        rows.append(cells + o_text + o_verdicts + [f"`{Path(folder).relative_to(Path(root).parent)}`"
                                                   if Path(folder).is_relative_to(Path(root).parent) else folder])
    lines += [_md_table(head, rows), ""]
    counts = pd.Series([r[4].strip("*") for r in rows]).value_counts()
    lines += [f"{main}: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" of {len(rows)} claims.", ""]
    if figures_dir is not None:
        made = write_figures(studies[main], figures_dir, synthetic=Path(root) / "DR-IS" / "synthetic" / "demo")
        lines += figures_markdown(made, repo)
    for p in presets:
        st = studies[p]
        lines += [f"## {p}", "", "### The setting: does uniform SGD memorise the targeted noise?", "",
                  memorisation(st), "",
                  "### Tables 1 and 2: static pruning, alpha 0.3 (accuracy %, corruption in the kept subset)", "",
                  static_table(st), "",
                  "### Class-balanced selection (our extension, not in the paper): top alpha of each class", "",
                  balanced_table(st), "",
                  "### Table 6: keep fraction at targeted 25 %", "", alpha_table(st), "",
                  "### Figure 2 as a table: corruption rate (targeted), alpha 0.3", "", rate_table(st), "",
                  "### Table 3: online importance sampling (final test accuracy %)", "",
                  online_table(st), "",
                  "### K ablation and Table 7 (proxy sets), targeted 25 %", "", ablation_table(st), "",
                  "### Appendix H diagnostics, targeted 25 %", "", diagnostics_table(st), "",
                  "### Sensitivity of the online verdicts", "",
                  "One choice changed at a time around the defaults of Table 3's Standard IS and RHO-LOSS "
                  "(relative floor 0.1, score from the refreshed target, weights 1/(N p)), same noise draw "
                  "and seeds: floor 0 / 0.01 (largest weight unbounded / 101), the score frozen at the "
                  "proxies' snapshot instead of refreshed from the target, and no importance weights "
                  "(drawn from p, weight 1). A diverged run counts as chance. Verdict: paired t-test "
                  f"against Table 3's uniform, p < {ALPHA_LEVEL}. max w (p) = largest weight 1/(N p_i) p "
                  "allows, max w drawn = largest weight a minibatch drew (1 when unweighted); both max "
                  "over seeds and epochs.", "",
                  sensitivity_section(st), ""]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- paper-vs-reproduction figures
#
# One figure per table of the paper (Tables 3, 6, 7, Figure 2, Appendix G) into docs/figures/,
# drawn from the same run folders as the claims: the paper's number a hollow marker, ours a
# filled one with +- sd over seeds, coloured by the verdict of the claim that tests that cell.
# The figures are small (dpi 100) and tracked, so REPRODUCTION.md shows them on GitHub.

FIGURES_DIR = Path(__file__).resolve().parent.parent / "docs" / "figures"
FIGURE_DPI = 100
CHANCE_PCT = 10.0   # every data set of the report (Fashion-MNIST, digits) and CIFAR-10: 10 classes
VERDICT_COLOURS = {"reproduced": "#1B7837", "not reproduced": "#E08214", "opposite": "#B2182B",
                   "reference": "#4D4D4D", "no claim": "#9E9E9E"}
VERDICT_HELP = {"reference": "reference (the claims compare against it)",
                "no claim": "no claim tests this cell"}


def verdicts_of(st: Study) -> dict:
    """{claim id: verdict} of one preset's study."""
    return {c.cid: c.evaluate(st)[1] for c in CLAIMS}


def _values(v) -> np.ndarray:
    v = np.asarray(list(v.dropna()) if isinstance(v, pd.Series) else list(v or []), dtype=float)
    return v[np.isfinite(v)]


def draw_paper_vs_ours(rows, path, title: str, xlabel: str, xlim=None, paper_label: str = "paper (CIFAR-10)",
                       chance: float | None = None) -> Path:
    """A dot plot: one panel per `panel`, one line per `label` in it; the paper's number hollow
    (black edge), ours filled in the verdict's colour with +- sample sd; 'not run' written where
    there is no result, 'paper: lost' where the paper's number did not survive.

    rows: dicts with panel, label, paper (float or None), ours (per-seed values, may be empty),
    verdict (a VERDICT_COLOURS key or 'not run'); chance: a dashed vertical line (accuracy)."""
    from islab import plots

    plt = plots.plt
    panels = list(dict.fromkeys(r["panel"] for r in rows))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.4 * len(panels) + 1.6, 0.34 * len(labels) + 1.5),
                             squeeze=False, sharey=True, sharex=xlim is not None)
    seeds = []
    for ax, panel in zip(axes[0], panels):
        for r in (r for r in rows if r["panel"] == panel):
            y = labels.index(r["label"])
            v = _values(r.get("ours"))
            if len(v):
                seeds.append(len(v))
                colour = VERDICT_COLOURS.get(r.get("verdict"), VERDICT_COLOURS["no claim"])
                ax.errorbar([v.mean()], [y], xerr=[v.std(ddof=1) if len(v) > 1 else 0.0], marker="o",
                            markersize=6, color=colour, capsize=2.5, linestyle="none", zorder=3)
            else:
                ax.text(0.02, y, "not run", transform=ax.get_yaxis_transform(), va="center", fontsize=7,
                        color="0.4")
            paper = r.get("paper")
            if paper is not None and np.isfinite(paper):
                ax.plot([paper], [y], marker="o", markersize=8, markerfacecolor="none", markeredgecolor="black",
                        markeredgewidth=1.2, linestyle="none", zorder=4)
            elif r.get("paper_note"):
                ax.text(0.98, y, r["paper_note"], transform=ax.get_yaxis_transform(), ha="right", va="center",
                        fontsize=6.5, color="0.4")
        if chance is not None:
            ax.axvline(chance, **plots.REFERENCE)
        ax.set_title(str(panel))
        ax.set_xlabel(xlabel)
        if xlim is not None:
            ax.set_xlim(*xlim)
        ax.grid(axis="y", visible=False)
    axes[0, 0].set_yticks(range(len(labels)), labels)
    axes[0, 0].set_ylim(len(labels) - 0.5, -0.5)
    used = list(dict.fromkeys(r.get("verdict") for r in rows if len(_values(r.get("ours")))))
    handles = [plots.Line2D([], [], marker="o", markersize=8, markerfacecolor="none", markeredgecolor="black",
                            linestyle="none", label=paper_label)]
    handles += [plots.Line2D([], [], marker="o", markersize=6, color=VERDICT_COLOURS[v], linestyle="none",
                             label=f"ours: {VERDICT_HELP.get(v, v)}") for v in VERDICT_COLOURS if v in used]
    if chance is not None:
        handles.append(plots.Line2D([], [], label=f"chance ({chance:g} %)",
                                    **{k: v for k, v in plots.REFERENCE.items() if k != "zorder"}))
    plots.legend_outside(fig, handles=handles, where="bottom", ncol=2)
    fig.suptitle(plots.wrap(f"{title} (ours: mean +- sd over {plots.seeds_text(seeds) or 'seeds'})",
                            45 * len(panels) + 20))
    fig.tight_layout()
    from islab.runs import atomic_savefig

    atomic_savefig(fig, path, dpi=FIGURE_DPI, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def draw_rate_figure(series: dict, path, title: str, paper_note: str = "", chance: float | None = None) -> Path:
    """Figure 2 on a true rate axis: accuracy vs the corruption rate eps (x = eps itself), a line
    per method in its figure-wide colour, mean +- sd over seeds.  series: {method: {eps: per-seed
    values}} (an empty cell is left out)."""
    from islab import plots

    plt = plots.plt
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    seeds, rates = [], set()
    for m, cells in series.items():
        vals = {e: _values(v) for e, v in sorted(cells.items()) if len(_values(v))}
        if not vals:
            continue
        seeds += [len(v) for v in vals.values()]
        rates |= set(vals)
        xs, mid, lo, hi = plots.seed_stats(vals)
        plots.band(ax, xs.astype(float), mid, lo, hi, m, clip=(0, 100))
    if rates:
        plots.integer_ticks(ax, "x", sorted(rates))
    if chance is not None:
        plots.reference_line(ax, chance, f"chance ({chance:g} %)")
    ax.set_xlabel("corruption rate eps (targeted)")
    ax.set_ylabel("final test accuracy (%)")
    plots.legend_outside(fig, [ax], title="method")
    fig.suptitle(plots.wrap(f"{title} (mean +- sd over {plots.seeds_text(seeds) or 'seeds'})", 70)
                 + (f"\n{paper_note}" if paper_note else ""))
    fig.tight_layout()
    from islab.runs import atomic_savefig

    atomic_savefig(fig, path, dpi=FIGURE_DPI, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def _cell_verdict(verdicts: dict, cid: str | None) -> str:
    if cid is None:
        return "no claim"
    if cid == "reference":
        return "reference"
    return verdicts.get(cid, "not run")


def table3_rows(st: Study, verdicts: dict) -> list[dict]:
    """Table 3 (online IS): panels clean / targeted 10 % / targeted 25 %."""
    from islab.style import display

    fin = st.frame("online", "online")
    claim = {("clean", "dris"): "T3 clean", ("targeted0.1", "dris"): "T3 targeted 10 %",
             ("targeted0.25", "dris"): "T3 targeted 25 %", ("targeted0.1", "standard_is"): "T3 Standard IS",
             ("targeted0.25", "standard_is"): "T3 Standard IS"}
    rows = []
    for j, config in enumerate(("clean", "targeted0.1", "targeted0.25")):
        for m in ("uniform", "standard_is", "rho_approx", "rho_faithful", "dris"):
            cid = "reference" if m == "uniform" else ("T3 RHO-LOSS" if m.startswith("rho") else claim.get((config, m)))
            rows.append({"panel": config, "label": display(m), "paper": PAPER["table3"][m][j],
                         "ours": pick(fin, config, m), "verdict": _cell_verdict(verdicts, cid)})
    return rows


def table6_rows(st: Study, verdicts: dict) -> list[dict]:
    """Table 6 (static, targeted 25 %): panels alpha 0.1 / 0.3 / 0.5."""
    from islab.style import display

    claim = {("dris", 0.1): "T6 alpha 0.1", ("dris", 0.3): "T1 targeted 25 %", ("dris", 0.5): "T6 alpha 0.5",
             ("aum", 0.1): "T6 DR-IS vs AUM, alpha 0.1", ("aum", 0.3): "T6 AUM vs DR-IS, alpha 0.3",
             ("aum", 0.5): "T6 AUM vs DR-IS, alpha 0.5"}
    rows = []
    for j, alpha in enumerate((0.1, 0.3, 0.5)):
        fin = st.frame("table1" if alpha == 0.3 else "alpha", "static")
        for m in ("random", "el2n", "consensus", "aum", "dris"):
            cid = "reference" if m == "random" else ("T6 magnitude" if m in ("el2n", "consensus")
                                                     else claim.get((m, alpha)))
            rows.append({"panel": f"alpha {alpha:g}", "label": display(m), "paper": PAPER["table6"][m][j],
                         "ours": pick(fin, "targeted0.25", m, alpha), "verdict": _cell_verdict(verdicts, cid)})
    return rows


def table7_rows(st: Study, verdicts: dict) -> list[dict]:
    """Table 7 (proxy sets K1 / K2 / K3 at targeted 25 %): DR-IS accuracy and subset corruption."""
    rows = []
    verdict = _cell_verdict(verdicts, "T7 proxy sets")
    for sub in ("K1", "K2", "K3"):
        fin = st.frame("proxysets", "ablations", sub=sub)
        acc, cis = PAPER["table7"][sub]
        d = fin[(fin["config"] == "targeted0.25") & (fin["method"] == "dris")] if len(fin) and "config" in fin else fin
        ours_cis = d.set_index("seed")["corruption_in_subset"].astype(float) if "corruption_in_subset" in d else None
        rows.append({"panel": "DR-IS test accuracy (%)", "label": f"set {sub}", "paper": acc,
                     "ours": pick(fin, "targeted0.25", "dris", 0.3), "verdict": verdict})
        rows.append({"panel": "corrupted fraction of the subset", "label": f"set {sub}", "paper": cis,
                     "ours": ours_cis, "verdict": verdict})
    return rows


def figure2_series(st: Study) -> dict:
    """Figure 2's cells: {method: {eps: per-seed accuracy}} at alpha 0.3."""
    cells = (("table1", "clean", 0.0), ("table1b", "targeted0.1", 0.1), ("table1", "targeted0.25", 0.25),
             ("rate", "targeted0.4", 0.4), ("rate", "targeted0.5", 0.5))
    out = {}
    for m in ("random", "el2n", "consensus", "aum", "dris"):
        out[m] = {eps: pick(st.frame(stage, "static"), c, m, 0.3) for stage, c, eps in cells}
    return out


def appendix_g_rows(folder: Path) -> list[dict]:
    """Appendix G (the synthetic study of DR-IS/synthetic.py): final-epoch test accuracy per
    method and configuration against the paper's.  No claim tests these cells (the paper's
    generator is not recoverable): every point is 'no claim'."""
    import importlib.util

    from islab.style import display

    spec = importlib.util.spec_from_file_location("dris_synthetic", Path(__file__).resolve().parent / "synthetic.py")
    syn = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(syn)
    df = rows_of(folder)
    rows = []
    for j, (kind, rate) in enumerate(syn.PAPER_CONFIGS):
        panel = "clean" if kind == "clean" else f"{kind} {rate:.0%}"
        for m, paper in syn.PAPER.items():
            ours = pd.Series(dtype=float)
            if len(df) and "kind" in df:
                d = df[(df["kind"] == kind) & np.isclose(df["rate"].astype(float), rate) & (df["method"] == m)
                       & (df["metric"] == "test_acc_pct")]
                if len(d):
                    d = d[d["epoch"] == d["epoch"].max()]
                    ours = d.set_index("seed")["value"].astype(float)
            rows.append({"panel": panel, "label": display(m), "paper": paper[j], "ours": ours, "verdict": "no claim"})
    return rows


def write_figures(st: Study, out: Path = FIGURES_DIR, synthetic: Path | None = None) -> list[Path]:
    """The paper-vs-reproduction figures of one study that has results (a table without any
    result is not drawn); returns the written paths."""
    out = Path(out)
    verdicts = verdicts_of(st)
    made = []
    title = f"{st.preset}: paper (CIFAR-10) vs reproduction"
    for name, rows, what, xlabel, xlim in (
            ("paper-table3.png", table3_rows(st, verdicts), "Table 3, online IS", "final test accuracy (%)", (0, 100)),
            ("paper-table6.png", table6_rows(st, verdicts), "Table 6, static pruning at targeted 25 %",
             "final test accuracy (%)", (0, 100)),
            ("paper-table7.png", table7_rows(st, verdicts), "Table 7, proxy sets at targeted 25 %", "", None)):
        if any(len(_values(r["ours"])) for r in rows):
            out.mkdir(parents=True, exist_ok=True)
            made.append(draw_paper_vs_ours(rows, out / name, f"{title}: {what}", xlabel, xlim,
                                           chance=CHANCE_PCT if xlim else None))
    series = figure2_series(st)
    if any(len(_values(v)) for cells in series.values() for v in cells.values()):
        out.mkdir(parents=True, exist_ok=True)
        made.append(draw_rate_figure(series, out / "paper-figure2.png",
                                     f"{st.preset}: Figure 2, targeted corruption rate at alpha 0.3, verdict (F2): "
                                     f"{verdicts.get('F2 corruption rate', 'not run')}",
                                     paper_note="the paper's values were lost in extraction", chance=CHANCE_PCT))
    if synthetic is not None:
        rows = appendix_g_rows(Path(synthetic))
        if any(len(_values(r["ours"])) for r in rows):
            out.mkdir(parents=True, exist_ok=True)
            made.append(draw_paper_vs_ours(rows, out / "paper-appendix-g.png",
                                           "Appendix G, synthetic study: paper (its own generator, not "
                                           "recoverable) vs DR-IS/synthetic.py", "final test accuracy (%)", (0, 100),
                                           paper_label="paper (Appendix G)", chance=50.0))
    return made


def figures_markdown(paths, base: Path) -> list[str]:
    """The REPRODUCTION.md section that shows the figures (paths relative to `base`)."""
    if not paths:
        return []
    lines = ["## Paper vs reproduction, figure by figure", "",
             "Hollow: the paper's number (CIFAR-10); filled: ours, mean +- sd over seeds, coloured by the verdict "
             "of the claim that tests the cell (grey: the reference it is compared with, or no claim).", ""]
    for p in paths:
        rel = Path(p).resolve().relative_to(base.resolve()) if Path(p).resolve().is_relative_to(base.resolve()) else p
        lines += [f"![{Path(p).stem}]({Path(rel).as_posix()})", ""]
    return lines
