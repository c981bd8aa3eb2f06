#!/usr/bin/env python
"""DR-IS ablation sweeps (docs/dris-studies.md): thin wrappers that compose DR-IS/static.py (and
DR-IS/online.py for the gamma sweep); every sub-run is an ordinary static run folder inside
the sweep folder, and the sweep folder adds a summary across the swept values.

    python DR-IS/ablations.py --sweep K --values 2,3,5          # first K of a longer proxy list
    python DR-IS/ablations.py --sweep alpha --values 0.1,0.3,0.5
    python DR-IS/ablations.py --sweep rate --values 0.1,0.25,0.4,0.5 --rate-kind targeted
    python DR-IS/ablations.py --sweep proxies --values K1,K2,K3  # experiment.PROXY_SETS diversity presets
    python DR-IS/ablations.py --sweep lambda --values 0,0.25,0.5,0.75,1
    python DR-IS/ablations.py --sweep gamma --values 0,0.1,1     # online IS (needs DR-IS/online.py)

Every other flag is passed to static.py (see `python DR-IS/static.py --help`), e.g. --seeds,
--noise, --methods, --preset.  Output: results/DR-IS/ablations/<sweep>-<values>-<dataset>-<hash>/
with summary.txt (accuracy and corruption in subset per method x swept value, per noise
configuration), results.csv (tidy, one row per job and metric), summary_acc.png,
summary_corruption.png, and one static run folder per sub-run.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # standalone: find islab

import numpy as np  # noqa: E402

from islab import cli, experiment, launch, loader, runs, slurm, tables  # noqa: E402

SWEEPS = ("K", "alpha", "rate", "proxies", "lambda", "gamma")
# Per sweep: default swept values, and the static flags it sets itself unless the user did.
DEFAULTS = {
    "K": dict(values="2,3,5", noise="clean,targeted:0.25", methods="random,consensus,aum,dris"),
    "alpha": dict(values="0.1,0.3,0.5", noise="clean,targeted:0.25", methods=None),
    "rate": dict(values="0.1,0.25,0.4,0.5", noise=None, methods="random,el2n,consensus,aum,dris"),
    "proxies": dict(values="K1,K2,K3", noise="clean,targeted:0.25", methods="random,consensus,aum,dris"),
    "lambda": dict(values="0,0.25,0.5,0.75,1", noise="clean,targeted:0.25", methods="random,dris,hybrid"),
    "gamma": dict(values="0,0.1,1", noise="clean,targeted:0.25", methods="uniform,dris"),
}
# The static flag each sweep controls (the user may not set it as well).
CONTROLS = {"K": "--proxies", "alpha": "--alpha", "rate": "--noise", "proxies": "--proxies",
            "lambda": "--hybrid-lambda", "gamma": "--gamma"}


@functools.lru_cache(maxsize=None)
def load_script(name: str):
    """Import DR-IS/<name>.py (the folder name is not a package name)."""
    path = HERE / f"{name}.py"
    if not path.exists():
        return None
    return loader.load_script(path, f"dris_{name}")


def has_flag(argv, flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in argv)


def build_parser():
    p = cli.make_parser(__doc__.split("\n\n")[0])
    g = p.add_argument_group("sweep")
    g.add_argument("--sweep", required=True, choices=SWEEPS,
                   help="K: ensemble size (first K of a longer proxy list); alpha: keep fraction; rate: "
                        "corruption rate of --rate-kind; proxies: diversity presets K1/K2/K3; lambda: hybrid "
                        "weight; gamma: online-IS smoothing (DR-IS/online.py)")
    g.add_argument("--values", help="comma list of swept values (default per sweep: "
                                    + "; ".join(f"{k} {v['values']}" for k, v in DEFAULTS.items()) + ")")
    g.add_argument("--rate-kind", default="targeted", choices=("uniform", "targeted", "pair"),
                   help="noise kind of the rate sweep (rates are fractions of N relabelled)")
    g.add_argument("--proxy-pool",
                   help="K sweep: the longer proxy list whose first K are used (default: the preset's "
                        "proxies repeated up to the largest K; repeats get their own seeds)")
    g = p.add_argument_group("run (the sweep folder)")
    g.add_argument("--results-root", type=cli.folder, default=None,
                   help="results folder; the sweep lands in <root>/DR-IS/ablations/<name> (default: the "
                        "repository's results/)")
    g.add_argument("--name", type=runs.check_name, default=None,
                   help="sweep folder name, one folder (default: <sweep>-<values>-<dataset>-<hash>)")
    g.add_argument("--resume", action="store_true",
                   help="continue a sweep folder, skipping finished sub-runs")
    return p


def sweep_values(args) -> list[str]:
    values = experiment.parse_list(DEFAULTS[args.sweep]["values"] if args.values is None else args.values,
                                   "--values")
    kind = {"K": cli.positive_int, "alpha": cli.fraction, "rate": cli.rate, "lambda": cli.unit_interval,
            "gamma": cli.nonnegative_float}.get(args.sweep)
    for v in values:
        if kind is not None:
            try:
                kind(v)
            except argparse.ArgumentTypeError as e:
                cli.fail(f"--values {v!r}: {e}")
    return list(dict.fromkeys(values))


def plan(args, forward: list[str]) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """(sub-run name, static/online argv) per sub-run, and the argv every sub-run shares."""
    sweep, values, d = args.sweep, args.values_list, DEFAULTS[args.sweep]
    if has_flag(forward, CONTROLS[sweep]):
        cli.fail(f"{CONTROLS[sweep]} is set by --sweep {sweep}; give the values with --values")
    base = list(forward)
    if d["noise"] and not has_flag(base, "--noise"):
        base += ["--noise", d["noise"]]
    if d["methods"] and not has_flag(base, "--methods"):
        base += ["--methods", d["methods"]]
    if sweep == "K":
        probe = experiment_args(base)
        pool = experiment.parse_list(args.proxy_pool, "--proxy-pool") if args.proxy_pool else probe.proxy_list
        k_max = max(int(v) for v in values)
        pool = [pool[i % len(pool)] for i in range(max(k_max, len(pool)))] if not args.proxy_pool else pool
        if k_max > len(pool):
            cli.fail(f"--proxy-pool has {len(pool)} proxies but the sweep asks for K = {k_max}")
        return [(f"K{v}", base + ["--proxies", ",".join(pool[:int(v)])]) for v in values], base
    if sweep == "proxies":
        dataset = experiment_args(base).dataset
        family = dataset if dataset in experiment.PROXY_SETS else "cifar"
        sets = experiment.PROXY_SETS[family]
        for v in values:
            if v not in sets:
                cli.fail(f"unknown proxy set {v!r}; choose from {', '.join(sets)}")
        return [(v, base + ["--proxies", sets[v]]) for v in values], base
    if sweep == "gamma":
        return [(f"gamma{v}", base + ["--gamma", v]) for v in values], base
    # alpha, rate, lambda: static.py takes the whole list in one run (full/random run once)
    flag, joined = {"alpha": ("--alpha", ",".join(values)),
                    "rate": ("--noise", ",".join(f"{args.rate_kind}:{v}" for v in values)),
                    "lambda": ("--hybrid-lambda", ",".join(values))}[sweep]
    return [(sweep, base + [flag, joined])], base


def experiment_args(argv):
    """The resolved static arguments of an argv (for the preset's dataset and proxies)."""
    return load_script("static").parse_args(argv)


def default_name(args, base_argv, dataset) -> str:
    # the launcher's flags say how the jobs run, not what they compute: not part of the name
    text = " ".join(launch.strip_launcher_flags(base_argv) + [args.rate_kind, args.proxy_pool or ""])
    digest = hashlib.sha1(text.encode()).hexdigest()[:6]
    return runs.run_name(args.sweep, "_".join(args.values_list), dataset, digest)


def setting_of(sweep: str, sub: str, fin):
    """The swept value of each row of a sub-run's final frame (None = same for every value)."""
    if sweep in ("K", "proxies", "gamma"):
        return [sub[1:] if sweep == "K" else sub[5:] if sweep == "gamma" else sub] * len(fin)
    if sweep == "alpha":
        return [None if m == "full" else f"{a:g}" for m, a in zip(fin["method"], fin["alpha"])]
    if sweep == "rate":
        return [f"{r:g}" for r in fin["rate"]]
    # lambda: hybrid<l> rows carry l; the reference methods are the same runs for every l
    return [m[len("hybrid"):] if str(m).startswith("hybrid") else None for m in fin["method"]]


def final_rows(path: Path):
    """Final per-job metrics of a sub-run folder as a wide frame (config, alpha, method, seed, ...)."""
    import pandas as pd

    if not (path / "config.json").exists():
        return pd.DataFrame()
    df = runs.read_frame(path)   # the sub-run's job files (checksummed), not its derived results.csv
    if df.empty:
        return df
    # online.py names the final accuracy 'final_acc' (and its folders before this version named
    # the configuration column 'noise')
    df = df.rename(columns={"noise": "config"}) if "config" not in df else df
    df["metric"] = df["metric"].replace({"final_acc": "test_acc"})
    keys = [c for c in ("config", "alpha", "method", "seed", "kind", "rate") if c in df]
    wide = tables.final_frame(df, keys, dropna=False)
    if "config" not in wide:
        wide["config"] = "all"
    return wide


def sub_frame(run, args, sub: str):
    """The final rows of one sub-run (from its job files), labelled with the swept value."""
    fin = final_rows(run.path / sub)
    if len(fin):
        fin["setting"] = setting_of(args.sweep, sub, fin)
        if args.sweep == "rate":   # one block whose columns are the rates, not one block per rate
            fin["config"] = f"{args.rate_kind} noise"
        if args.sweep == "lambda":  # hybrid<l> rows become one 'hybrid' row over the lambda columns
            fin["method"] = ["hybrid" if str(m).startswith("hybrid") else m for m in fin["method"]]
    return fin


def summary(fin, values, methods_order) -> str:
    """Per configuration: method x value matrices of accuracy and corruption in subset."""
    out = []
    for tag in dict.fromkeys(fin["config"]):
        d = fin[fin["config"] == tag]
        for metric, fmt, what in (("test_acc", "{:.2f}", "final test accuracy %"),
                                  ("corruption_in_subset", "{:.3f}", "corruption in kept subset"),
                                  ("auroc", "{:.3f}", "AUROC of the discard order"),
                                  ("mass_corrupt_mean", "{:.3f}", "sampling mass on corrupted (online)")):
            if metric not in d or not np.isfinite(d[metric].to_numpy(dtype=float)).any():
                continue   # e.g. AUROC on clean data: no corrupted examples to detect
            out.append(f"== {tag}: {what} (mean +- std over seeds)")
            head = ["method"] + [str(v) for v in values]
            rows = []
            for m in [m for m in methods_order if m in set(d["method"])]:
                cells = [m]
                for v in values:
                    x = d[(d["method"] == m) & (d["setting"] == v)][metric].to_numpy(dtype=float)
                    x = x[np.isfinite(x)]
                    cells.append("-" if len(x) == 0 else fmt.format(x.mean()) + (
                        " +- " + fmt.format(x.std(ddof=1)) if len(x) > 1 and np.ptp(x) > 0 else ""))
                rows.append(cells)
            out += tables.table_lines(head, rows, strip=True)
            out.append("")
    return "\n".join(out)


def main(argv=None):
    args, forward = build_parser().parse_known_args(argv)
    args.values_list = sweep_values(args)
    jobs, base = plan(args, forward)
    mod_name = "online" if args.sweep == "gamma" else "static"
    script = load_script(mod_name)
    if script is None:
        cli.fail(f"--sweep {args.sweep} needs DR-IS/{mod_name}.py, which does not exist yet")
    # validate every sub-run before any folder exists (static exits 2 with one line), the
    # data set included: a preset whose data is missing leaves no sweep folder
    parsed = {name: script.parse_args(sub) for name, sub in jobs}
    for a in parsed.values():   # the sub-runs share the sweep's cache: <results-root>/cache
        if not has_flag(forward, "--cache-dir"):
            a.cache_dir = str(Path(args.results_root or runs.RESULTS_ROOT) / "cache")
    first = next(iter(parsed.values()))
    dataset = first.dataset
    ds = experiment.open_dataset(first)
    if mod_name == "online":
        for a in parsed.values():
            script.holdout_count(a, len(ds.train))
    root = experiment.results_root(args, "DR-IS/ablations")
    name = args.name or default_name(args, base, dataset)
    run_sub = script.run_static if mod_name == "static" else script.run_online
    # what the launcher's processes of a sub-run rerun: its static/online argv and the sweep's cache
    sub_argvs = {sub: sub_argv + ([] if has_flag(forward, "--cache-dir") else ["--cache-dir", parsed[sub].cache_dir])
                 for sub, sub_argv in jobs}
    if first.dry_run:   # each sub-run's plan; nothing is created
        print(f"sweep folder: {root / name} ({len(jobs)} sub-run(s))")
        for sub, _ in jobs:
            print(f"== sub-run {sub}")
            run_sub(parsed[sub], ds=ds, path=root / name / sub, argv=sub_argvs[sub])
        return 0
    run = runs.open_run(root / name, args, seed=None)
    run.log(f"sweep {args.sweep} over {args.values_list}: {len(jobs)} sub-run(s) in {run.path}")
    run.plan([{"subrun": sub} for sub, _ in jobs])
    import pandas as pd

    submitted = []   # --launcher slurm: each sub-run's report job (the summary waits for them)
    for sub, sub_argv in jobs:
        with run.claim({"subrun": sub}) as job:
            if job is None:
                run.log(f"sub-run {sub}: " + ("done, skipped (--resume)" if run.is_done({"subrun": sub})
                                              else "running in another worker, skipped"))
                continue
            run.log(f"sub-run {sub}: {' '.join(launch.strip_launcher_flags(sub_argv))}")
            a = parsed[sub]
            a.resume = args.resume
            run_sub(a, ds=ds, path=run.path / sub, argv=sub_argvs[sub])
            if getattr(a, "submitted", None) is not None:
                submitted.append(a.submitted)
                continue
            missing = [k for k in script.planned_keys(a) if runs.job_id(k) not in runs.finished_ids(run.path / sub)]
            if missing:   # e.g. another process still runs some of its jobs: summarised on --resume
                run.log(f"sub-run {sub}: {len(missing)} job(s) not finished yet; rerun with --resume to summarise it")
                continue
            fin = sub_frame(run, args, sub)
            tidy = fin.melt(id_vars=[c for c in ("config", "alpha", "method", "seed", "setting") if c in fin],
                            value_vars=[c for c in ("test_acc", "corruption_in_subset", "auroc", "ap",
                                                    "kept_fraction", "mass_corrupt_mean", "diverged") if c in fin],
                            var_name="metric", value_name="value") if len(fin) else pd.DataFrame()
            job.finish(tidy.to_dict("records"))
    if submitted:   # the summary: this script again, inline, once every sub-run's report is written
        cmd = [sys.executable, str(Path(__file__).resolve()), *launch.user_argv(argv), "--resume", "--launcher",
               "inline", "--stage", "report"]
        slurm.submit_after(run, first, cmd, submitted)
        return run.path
    with run.locked():   # the summary from every sub-run as it is now (other workers' included)
        frames = [f for f in (sub_frame(run, args, sub) for sub, _ in jobs) if len(f)]
        fin = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if len(fin):
            # rows that do not depend on the swept value (full in an alpha sweep, random/dris in a
            # lambda sweep) are the same runs in every column
            fixed = fin[fin["setting"].isna()]
            fin = pd.concat([fin[fin["setting"].notna()]] + [fixed.assign(setting=v) for v in args.values_list],
                            ignore_index=True)
            methods = list(dict.fromkeys(fin["method"]))
            head = (f"DR-IS ablation: sweep {args.sweep} over {', '.join(args.values_list)}; sub-runs: "
                    f"{', '.join(s for s, _ in jobs)} (each a run folder here with its full res.txt)\n"
                    f"shared flags: {' '.join(launch.strip_launcher_flags(base))}\n\n")
            run.write_text("summary.txt", head + summary(fin, args.values_list, methods))
            write_plots(run, fin, args, ds.num_classes)
    run.log(f"done -> {run.path}")
    return run.path


def write_plots(run, fin, args, num_classes: int | None = None) -> None:
    """summary_*.png: each metric over the swept values, a line per method, a panel per noise
    configuration, mean +- sd over seeds; corruption in the subset with its chance level (eps)
    per panel (the rate itself in a rate sweep), chance accuracy (1 / classes) dashed.  Numbers
    (K, alpha, a rate, lambda, gamma) sit on a true numeric axis; named settings (proxy sets)
    evenly spaced."""
    from islab import plots

    d = fin.copy()
    numeric = numbers(args.values_list)
    if numeric is not None:
        d["setting"] = d["setting"].astype(str).map(dict(zip(args.values_list, numeric)))
        d = d[d["setting"].notna()].assign(setting=lambda x: x["setting"].astype(float))
        if args.sweep == "rate":   # a rate in %
            d = d.assign(setting=100.0 * d["setting"])
            numeric = [100.0 * v for v in numeric]
    else:
        d["setting"] = pd_categorical(d["setting"], args.values_list)
    methods = list(dict.fromkeys(fin["method"]))
    # chance level of the corruption in a subset: eps, one per panel (not in a rate sweep, where
    # eps is the swept value itself)
    eps = d.groupby("config")["eps"].first().to_dict() if "eps" in d and args.sweep != "rate" else {}
    if args.sweep == "rate":   # there the chance level is the swept rate itself (x in %)
        eps = {c: (lambda x: np.asarray(x, dtype=float) / 100.0) for c in d["config"].unique()}
    for metric, fname, label, clip, ref in (
            ("test_acc", "summary_acc.png", "final test accuracy (%)", (0, 100),
             100.0 / num_classes if num_classes else None),
            ("corruption_in_subset", "summary_corruption.png", "corrupted fraction of the kept subset", (0, 1), eps),
            ("mass_corrupt_mean", "summary_mass_corrupt.png", "sampling mass on corrupted", (0, 1), None)):
        if metric in d and np.isfinite(d[metric].to_numpy(dtype=float)).any():
            dd = d[np.isfinite(d[metric].to_numpy(dtype=float))]
            if metric != "test_acc" and "eps" in dd:   # clean data has no corrupted example to show
                dd = dd[dd.groupby("config")["eps"].transform("max") > 0]
            if dd.empty:
                continue
            plots.lines_with_band(dd.sort_values("setting"), "setting", metric, "method", run.path / fname,
                                  title=f"DR-IS ablation: {label}, sweep {args.sweep}", ylabel=label,
                                  col="config", clip=clip, xlabel=SWEEP_LABEL.get(args.sweep, args.sweep),
                                  hue_order=[m for m in methods if (dd["method"] == m).any()],
                                  reference=ref or None, panel="{value}",
                                  reference_label=("chance (= eps)" if metric != "test_acc"
                                                   else f"chance (1/{num_classes})"),
                                  ylim=(0, None), xticks=numeric)


def numbers(values):
    """The swept values as floats, or None when one of them is a name (a proxy set)."""
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


SWEEP_LABEL = {"K": "K (proxies)", "alpha": "alpha (kept fraction)", "rate": "corruption rate (%)",
               "proxies": "proxy set", "lambda": "hybrid lambda", "gamma": "gamma (online smoothing)"}


def pd_categorical(series, order):
    import pandas as pd

    return pd.Categorical(series.astype(str), categories=[str(v) for v in order], ordered=True)


if __name__ == "__main__":
    cli.run_main(main)
