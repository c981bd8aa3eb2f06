#!/usr/bin/env python
"""cleanlab's confident learning beside DR-IS, AUM, EL2N and consensus on the same corrupted data:
detection of the corrupted labels (AUROC, AP) and static pruning (accuracy when the target trains
on each method's kept subset).

Per noise configuration (one noise draw, shared by everything):
  detection   the shared proxy ensemble (islab.proxies, cached) gives dris, aum, el2n, consensus;
              cleanlab gets OUT-OF-SAMPLE probabilities, as it prescribes: every proxy is trained on
              --folds - 1 folds and predicts the held-out fold (islab.proxies.out_of_sample_probs,
              stratified folds, each (fold, proxy) run cached), averaged over the proxies; then
              cleanlab.filter.find_label_issues (the flagged set) and cleanlab.rank.
              get_label_quality_scores (self-confidence, for AUROC/AP).  Each score is read in its
              own noise direction: LOW dris, aum and label quality, HIGH el2n and consensus flag an
              example as corrupted.
  pruning     DR-IS/static.py's jobs in the sub-run folder pruning/ (its res.txt is the full
              static table): random, el2n, consensus, aum, dris at --alpha, cleanlab keeping every
              example it does not flag (its own keep fraction), and full data; same seeds.

    python DR-IS/cleanlab_compare.py                                   # digits, uniform and targeted 25 %
    python DR-IS/cleanlab_compare.py --preset fashion-mnist            # 60,000 examples, 2 CPU cores
    python DR-IS/cleanlab_compare.py --folds 5 --filter-by both        # cleanlab's own settings

Every flag of DR-IS/static.py applies (data, proxies, target, seeds, --alpha, --methods).
Output: results/DR-IS/cleanlab/<run>/ with res.txt and table.md (detection and pruning tables),
results.csv (tidy), detection-<config>.npz (out-of-sample probabilities, cleanlab's flags and
quality), scores-<config>.csv (every per-example score, cleanlab's included), labels-<config>.npz,
pruning/ (a DR-IS/static.py run folder), config.json/cmd.txt/env.json/log.txt.
"""
from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # standalone: find islab

import numpy as np  # noqa: E402

from islab import cli, confident, experiment, runs, scores, theory  # noqa: E402
from islab.loader import load_script  # noqa: E402
from islab.tables import final_frame, markdown_table  # noqa: E402

FAMILY = "DR-IS/cleanlab"
DEFAULT_NOISE = "uniform:0.25,targeted:0.25"
DEFAULT_METHODS = "random,el2n,consensus,aum,dris,cleanlab,full"
# detection score -> (islab.scores ensemble score or 'cleanlab', sign making HIGH = suspected corrupted)
DETECTORS = {"cleanlab": ("cleanlab", -1.0), "dris": ("dris", -1.0), "aum": ("aum", -1.0),
             "el2n": ("el2n", 1.0), "consensus": ("consensus", 1.0)}


def load_static():
    return load_script(HERE / "static.py", "dris_static_for_cleanlab", fresh=True)


static = load_static()


def build_parser():
    p = static.build_parser()
    p.description = __doc__.split("\n\n")[0]
    p.set_defaults(noise=DEFAULT_NOISE, methods=DEFAULT_METHODS.split(","))
    g = p.add_argument_group("cleanlab comparison")
    g.add_argument("--folds", dest="cv_folds", type=cli.positive_int, default=static.CLEANLAB_FOLDS,
                   help="cross-validation folds for cleanlab's out-of-sample probabilities (integer >= 2; each "
                        "proxy trains on (folds-1)/folds of N per fold)")
    g.add_argument("--filter-by", dest="cleanlab_filter", default=static.CLEANLAB_FILTER,
                   choices=confident.FILTERS, help="cleanlab.filter.find_label_issues filter")
    return p


def parse_args(argv=None):
    args = static.check_args(build_parser().parse_args(argv))
    if args.cv_folds < 2:
        cli.fail(f"--folds must be >= 2 (out-of-sample probabilities need a held-out fold), got {args.cv_folds}")
    if len(args.proxy_list) < 2:
        cli.fail("the comparison includes dris: give at least 2 proxies (--proxies a,b,...)")
    if importlib.util.find_spec("cleanlab") is None:
        cli.fail("the cleanlab comparison needs the cleanlab package (pip install -r requirements.txt)")
    # one process: its parts are a detection per configuration and one static run (for many
    # workers, run DR-IS/static.py --methods ...,cleanlab with the launcher instead)
    if args.launcher != "inline" or args.dry_run or args.stage != "all":
        cli.fail("cleanlab_compare.py runs in one process (--launcher inline, no --dry-run); for workers or "
                 "Slurm run DR-IS/static.py --methods random,dris,aum,cleanlab,full with --launcher")
    return args


def default_name(args) -> str:
    return runs.run_name("cleanlab", args.dataset, f"n{args.train_size}" if args.train_size else None,
                         f"f{args.cv_folds}", runs.config_digest(args))


# ---------------------------------------------------------------- detection (one configuration)


def detection_scores(ens, quality, ddof: int = 0) -> dict:
    """name -> (N,) score oriented so that HIGH = suspected corrupted (DETECTORS)."""
    out = {}
    for name, (src, sign) in DETECTORS.items():
        v = quality if src == "cleanlab" else scores.ensemble_score(ens, src, ddof=ddof)
        out[name] = sign * np.asarray(v, dtype=np.float64)
    return out


def detection_rows(det: dict, issues, mask) -> list[dict]:
    """AUROC/AP of every detector, and the precision / recall / size of cleanlab's flagged set."""
    rows = []
    for name, s in det.items():
        m = theory.detection_metrics(s, mask)
        rows += [{"score": name, "metric": "auroc", "value": m["auroc"]},
                 {"score": name, "metric": "ap", "value": m["ap"]}]
    flagged = np.asarray(issues, dtype=bool)
    tp = float((flagged & mask).sum())
    rows += [{"score": "cleanlab", "metric": "flagged_fraction", "value": float(flagged.mean())},
             {"score": "cleanlab", "metric": "precision", "value": tp / flagged.sum() if flagged.any() else np.nan},
             {"score": "cleanlab", "metric": "recall", "value": tp / mask.sum() if mask.any() else np.nan}]
    return rows


def run_detection(args, ds, run, kind, rate) -> list[dict]:
    tag = experiment.noise_tag(kind, rate)
    t0 = time.time()
    prep = experiment.prepare(args, ds, kind, rate, run, need_proxies=True)
    if prep.ens is None:
        run.log(f"[{tag}] detection: DIVERGED ({prep.diverged})")
        return [{"config": tag, "score": "all", "metric": "diverged", "value": 1.0}], []
    quality, issues, probs = static.cleanlab_scores(args, ds, prep.labels, log=run.log)
    det = detection_scores(prep.ens, quality, ddof=args.ddof)
    rows = [{"config": tag, **r} for r in detection_rows(det, issues, prep.mask)]
    rows += [{"config": tag, "score": "all", "metric": "eps", "value": float(prep.mask.mean())},
             {"config": tag, "score": "all", "metric": "seconds", "value": time.time() - t0}]
    files = [run.path / f"detection-{tag}.npz"]
    run.save_arrays(files[0].name, probs=probs, issues=issues, quality=quality, corrupt=prep.mask)
    files += experiment.export_configuration(run, args, tag, prep.labels, prep.clean, prep.mask, prep.ens,
                                             extra={"cleanlab_quality": quality,
                                                    "cleanlab_issue": issues.astype(np.int8)}, ddof=args.ddof,
                                             ds=ds)
    return rows, files


# ---------------------------------------------------------------- report


def _cell(v, fmt):
    v = np.asarray(v, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return "nan"
    return fmt.format(v.mean()) + (" ± " + fmt.format(v.std(ddof=1)) if len(v) > 1 else "")


def tables(run, args) -> str:
    """Markdown: detection AUROC/AP per configuration and score; pruning accuracy per method."""
    df = run.frame()
    out = []
    det = df[df["part"] == "detection"] if "part" in df else df.iloc[:0]
    if len(det):
        tags = list(dict.fromkeys(det["config"]))
        out += ["Detection of the corrupted labels (AUROC / AP; chance 0.5 / eps).  cleanlab: out-of-sample "
                f"probabilities from {args.cv_folds}-fold cross-validated proxies ({','.join(args.proxy_list)}), "
                "flagged by find_label_issues (" + args.cleanlab_filter + "), ranked by self-confidence.", ""]
        rows = []
        for name in DETECTORS:
            cells = [name]
            for t in tags:
                d = det[(det["config"] == t) & (det["score"] == name)]
                for m in ("auroc", "ap"):
                    cells.append(_cell(d[d["metric"] == m]["value"], "{:.3f}"))
            rows.append(cells)
        out += markdown_table(["score"] + [f"{t} {m}" for t in tags for m in ("AUROC", "AP")], rows).split("\n")
        out.append("")
        for t in tags:
            d = det[(det["config"] == t) & (det["score"] == "cleanlab")]
            val = {m: d[d["metric"] == m]["value"] for m in ("flagged_fraction", "precision", "recall")}
            secs = det[(det["config"] == t) & (det["metric"] == "seconds")]["value"]
            out.append(f"- {t}: cleanlab flags {_cell(val['flagged_fraction'], '{:.3f}')} of N, precision "
                       f"{_cell(val['precision'], '{:.3f}')}, recall {_cell(val['recall'], '{:.3f}')}; "
                       f"detection stage {_cell(secs, '{:.0f}')} s (proxies + {args.cv_folds} folds x "
                       f"{len(args.proxy_list)} proxies, from the cache where already trained)")
        out.append("")
    prune_path = run.path / "pruning"
    if (prune_path / "config.json").exists():
        fin = final_frame(runs.read_frame(prune_path), static.JOB_KEYS)
        if len(fin):
            tags = list(dict.fromkeys(fin["config"]))
            out += [f"Static pruning (DR-IS/static.py, target {args.target}, {args.epochs} epochs budget, seeds "
                    f"{args.seeds}): final test accuracy % (mean ± std over seeds), kept fraction and corruption "
                    "in the kept subset.  cleanlab keeps every example it does not flag.", ""]
            rows = []
            for m in args.method_list:
                if m not in set(fin["method"]):
                    continue
                cells = [m]
                for t in tags:
                    d = fin[(fin["config"] == t) & (fin["method"] == m)]
                    cells += [_cell(d["test_acc"], "{:.2f}"), _cell(d["kept_fraction"], "{:.3f}"),
                              _cell(d["corruption_in_subset"], "{:.3f}")]
                rows.append(cells)
            out += markdown_table(["method"] + [f"{t} {c}" for t in tags for c in ("acc %", "kept", "corrupt")],
                                  rows).split("\n")
            secs = fin["seconds"].to_numpy(dtype=float) if "seconds" in fin else np.array([])
            out += ["", f"- pruning stage: {np.nansum(secs):.0f} s of target training ({len(fin)} runs)"]
    return "\n".join(out) + "\n"


def write_report(run, args, wall: float) -> None:
    text = tables(run, args)
    run.write_text("table.md", text)
    head = (f"cleanlab vs DR-IS on {args.dataset} (N = {args.n_train}), noise {args.noise}, proxies "
            f"{','.join(args.proxy_list)} (E_p {args.proxy_epochs}, scores at epoch {args.snapshot_epoch}), "
            f"{args.cv_folds} folds, alpha {','.join(f'{a:g}' for a in args.alpha_list)}; targeted-noise "
            f"attacker {args.attacker} ({args.attacker_epochs} epochs)\n"
            f"wall time of this invocation: {wall:.0f} s\n\n")
    run.write_text("res.txt", head + text)


# ---------------------------------------------------------------- main


def main(argv=None):
    args = parse_args(argv)
    ds = experiment.open_dataset(args)   # missing data: exit 2, no folder
    args.n_train = len(ds.train)
    smallest = int(np.bincount(ds.train.y.cpu().numpy(), minlength=ds.num_classes).min())
    if args.cv_folds > smallest:   # stratified folds: each must hold examples of every class
        cli.fail(f"--folds {args.cv_folds} exceeds the {smallest} training examples of the smallest class; "
                 "use fewer folds or a larger --train-size")
    run = runs.open_run(experiment.results_root(args, FAMILY) / (args.name or default_name(args)), args,
                        seed=args.seed_list[0], quiet=args.quiet)
    t0 = time.time()
    run.log(f"cleanlab comparison on {args.dataset} ({len(ds.train)} examples), noise {args.noise} -> {run.path}")
    keys = [{"part": "detection", "config": experiment.noise_tag(k, r)} for k, r in args.noise_list]
    run.plan(keys + [{"part": "pruning"}])
    for (kind, rate), key in zip(args.noise_list, keys):
        with run.claim(key) as job:
            if job is None:
                run.log(f"[{key['config']}] detection: done, skipped (--resume)" if run.is_done(key)
                        else f"[{key['config']}] detection: running in another worker, skipped")
                continue
            rows, files = run_detection(args, ds, run, kind, rate)
            job.finish([{k: v for k, v in r.items() if k != "config"} for r in rows], files=files)
        with run.locked():
            write_report(run, args, time.time() - t0)
    with run.claim({"part": "pruning"}) as job:
        if job is not None:
            t1 = time.time()
            static.run_static(args, ds=ds, path=run.path / "pruning")
            job.finish([{"metric": "seconds", "value": time.time() - t1}])
        else:
            run.log("pruning: done, skipped (--resume)")
    with run.locked():
        write_report(run, args, time.time() - t0)
    run.log(f"done in {time.time() - t0:.0f} s -> {run.path}\n" + (run.path / "table.md").read_text())
    return run.path


if __name__ == "__main__":
    cli.run_main(main)
