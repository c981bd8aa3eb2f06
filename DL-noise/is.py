#!/usr/bin/env python
"""DL-noise: does importance sampling from proxy-model scores help or hurt a deep network
trained on noisily labelled data?  (DL-noise/README.md.)

For every label-noise rate one noise draw and one proxy ensemble run (islab.experiment.
configuration) are shared by every strategy and seed; the target is then trained with
  baseline        ordinary shuffled epochs (uniform, without replacement)
  consensus-high  p proportional to the smoothed mean loss rank across proxies
  ambiguous       p proportional to the smoothed loss-rank variance across proxies
the two non-uniform ones with the unbiased 1/(N p) reweighting (docs/METHODS.md section 1).  With
`--mode subset` they instead keep the top alpha fraction by the same score (baseline = a
random subset of the same size) and train on it with the full-data step budget.

    python DL-noise/is.py                     # digits, CPU, ~40 s of CPU time, see DL-noise/README.md
    python DL-noise/is.py --preset cifar10    # VGG-19-BN target, ResNet-20/MobileNetV2/ShuffleNetV2 proxies

Output: results/DL-noise/r-b{batch}[-preset][-mode][-kind]/ with res.txt (per-run lines and
mean +- std over seeds), results.csv (tidy: every epoch plus the final numbers of every run),
scores.csv (how well each proxy score detects the corrupted labels), labels-<tag>.npz (noisy,
clean, corrupt mask), scores-<tag>.npz (the strategies' scores, named as in DR-IS: consensus
for consensus-high, dris for ambiguous), scores-<tag>.csv (every per-example proxy score), with
--export-probs probs-<tag>-<strategy>.npz (the fixed p of each weighted strategy, one row at
epoch 0), with --export-dynamics dynamics-<tag>/ (results/README.md), the figures of
DL-noise/plot.py, and config/cmd/env provenance.
"""
from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # standalone: find islab

import numpy as np  # noqa: E402

from islab import cli, experiment, launch, online, runs, sampling, scores, sweep, tables, theory  # noqa: E402
from islab.data import example_ids  # noqa: E402
from islab.loader import load_script  # noqa: E402
from islab.seeding import numpy_rng  # noqa: E402
from islab.train import Sampling, train  # noqa: E402

FAMILY = "DL-noise"
# strategy -> the islab.scores ensemble score it samples by (None = uniform baseline)
STRATEGIES = {"baseline": None, "consensus-high": "consensus", "ambiguous": "dris"}
MODES = ("weighted", "subset")
NOISE_KINDS = ("uniform", "targeted", "pair")


# ---------------------------------------------------------------- arguments


def build_parser():
    p = cli.make_parser(__doc__.split("\n\n")[0])
    experiment.add_common_args(p, "; r-b{batch} plus -preset, -mode, -kind when not the default")
    experiment.add_probs_export_arg(p, "probs-<config>-<strategy>.npz", "(the fixed p of each weighted strategy; one row)")
    g = p.add_argument_group("DL-noise")
    g.add_argument("--rates", default="0,0.02,0.05,0.1,0.25",
                   help="comma list of label-noise rates, each in [0, 1) "
                        "(fraction of training labels flipped)")
    g.add_argument("--noise-kind", default="uniform", choices=NOISE_KINDS,
                   help="uniform: random examples to a random other class; targeted: the highest "
                        "gradient-norm examples of a clean-label attacker; pair: class c -> c+1")
    g.add_argument("--strategies", default=",".join(STRATEGIES),
                   help=f"comma list from {', '.join(STRATEGIES)}")
    g.add_argument("--mode", default="weighted", choices=MODES,
                   help="weighted: sample with replacement from p, loss weighted by 1/(N p); "
                        "subset: train on the top alpha fraction by score (baseline: a random one)")
    g.add_argument("--gamma", type=cli.nonnegative_float, default=0.1,
                   help="smoothing of p: p_i proportional to s_i + gamma * mean(s) (unitless)")
    g.add_argument("--alpha", type=cli.fraction, default=0.3,
                   help="--mode subset: kept fraction of the training set, in (0, 1]")
    launch.add_args(p)
    return p


def parse_args(argv=None):
    """Parse and validate everything (exit 2 with one line) before any folder is created."""
    args = build_parser().parse_args(argv)
    experiment.resolve(args)
    args.rate_list = list(dict.fromkeys(experiment.parse_rates(args.rates)))
    args.strategy_list = experiment.parse_choices(args.strategies, STRATEGIES, "strategy")
    if "ambiguous" in args.strategy_list and len(args.proxy_list) < 2:
        cli.fail("strategy ambiguous (rank disagreement) needs at least 2 proxies; "
                 f"got --proxies {args.proxies}")
    launch.check_args(args)
    return args


def default_name(args) -> str:
    """r-b{batch}, plus every setting that differs from the default sweep."""
    return runs.run_name(f"r-b{args.batch_size}",
                         args.preset if args.preset != "digits" else None,
                         args.mode if args.mode != "weighted" else None,
                         args.noise_kind if args.noise_kind != "uniform" else None)


# ---------------------------------------------------------------- one configuration


def strategy_scores(ens, strategies) -> dict:
    """strategy -> (N,) score from the shared proxy run (high = sample / keep more)."""
    return {s: scores.ensemble_score(ens, STRATEGIES[s]) for s in strategies if STRATEGIES[s]}


def make_sampling(args, strategy: str, score, n: int, seed: int) -> Sampling:
    """The index stream of one strategy (see the module docstring)."""
    if args.mode == "weighted":
        if score is None:
            return Sampling(mode="shuffle")
        return Sampling(mode="weighted", probs=sampling.smoothed_probs(score, args.gamma))
    if score is None:  # random subset of the same size; a different one per target seed
        ids = sampling.random_subset(n, args.alpha, numpy_rng(seed, "sampler"))
        return Sampling(mode="subset", subset=ids)
    return Sampling(mode="subset", subset=sampling.keep_top_fraction(score, args.alpha))


def detection_rows(args, strat_scores: dict, mask, ens) -> list[dict]:
    """How well each strategy's score finds the corrupted labels, how much of p sits on them, and how
    uneven p is: effective sample size (1/sum p^2, as a fraction of N) and the largest 1/(N p) weight."""
    rows = []
    for strategy, s in strat_scores.items():
        det = theory.detection_metrics(s, mask)
        rows += [{"strategy": strategy, "metric": "auroc", "value": det["auroc"]},
                 {"strategy": strategy, "metric": "ap", "value": det["ap"]}]
        if args.mode == "weighted":
            p = sampling.smoothed_probs(s, args.gamma)
            rows += [{"strategy": strategy, "metric": "mass_corrupt", "value": sampling.mass_on(p, mask)},
                     {"strategy": strategy, "metric": "ess", "value": sampling.effective_sample_size(p)},
                     {"strategy": strategy, "metric": "max_weight", "value": online.max_weight(p)}]
        else:
            share = float(mask[sampling.keep_top_fraction(s, args.alpha)].mean())
            rows += [{"strategy": strategy, "metric": "mass_corrupt", "value": share}]
    if ens is not None:
        rows += [{"strategy": f"proxy {name} s{seed}", "metric": "test_acc", "value": float(acc)}
                 for name, seed, acc in zip(ens.names, ens.seeds, ens.test_acc)]
    return rows


def epoch_mean(history, key: str) -> float:
    """Mean of a per-epoch value over the epochs that logged it (a diverged epoch does not)."""
    vals = [h[key] for h in history if key in h]
    return float(np.mean(vals)) if vals else float("nan")


def run_rows(res) -> list[dict]:
    """Tidy rows of one training run: every epoch, then the final numbers (epoch empty)."""
    rows = [{"epoch": h["epoch"], "metric": m, "value": h[m]} for h in res.history
            for m in ("train_loss", "test_acc", "test_loss", "mass_corrupt", "drawn_corrupt") if m in h]
    hist = res.history
    final = {"final_test_acc": res.test_acc, "best_test_acc": res.best_test_acc,
             "final_train_loss": hist[-1]["train_loss"] if hist else float("nan"),
             # every epoch is ceil(N/b) draws of b (subset mode: up to a short batch at the end of
             # each pass), so the mean of the per-epoch fractions is the whole run's fraction
             "drawn_corrupt": epoch_mean(hist, "drawn_corrupt"),
             "mass_corrupt": epoch_mean(hist, "mass_corrupt"),
             "diverged": float(res.diverged), "seconds": res.seconds}
    return rows + [{"metric": m, "value": v} for m, v in final.items()]


# ---------------------------------------------------------------- reporting


def write_report(run, args, ds, detection: list[dict], total_s: float | None = None) -> None:
    """res.txt: header, one line per run, mean +- std tables, proxy score diagnostics."""
    df = run.frame()
    lines = [f"DL-noise: target {args.target} on {args.dataset} "
             f"(N={len(ds.train)} train, {len(ds.test)} test), "
             f"{args.noise_kind} label noise, mode {args.mode}"
             + (f" (gamma {args.gamma:g})" if args.mode == "weighted" else f" (alpha {args.alpha:g})"),
             f"target: {args.epochs} epochs of ceil(N/{args.batch_size}) steps, lr {args.lr:g} (cosine), "
             f"wd {args.weight_decay:g}, momentum {args.momentum:g}; seeds {args.seeds}",
             f"proxies: {', '.join(args.proxy_list)} ({args.proxy_epochs} epochs, scores at epoch "
             f"{args.snapshot_epoch}), noise seed {args.noise_seed}; targeted-noise attacker {args.attacker} "
             f"({args.attacker_epochs} epochs)",
             "columns: test accuracy % (final, best over epochs), final-epoch training loss (the weighted "
             "loss for sampled runs), fraction of drawn examples whose label was corrupted, sampling mass "
             "on corrupted examples (subset mode: their share of the subset)", ""]
    if len(df) == 0 or "metric" not in df:
        run.write_text("res.txt", "\n".join(lines + ["(no finished runs yet)"]) + "\n")
        return
    fin = tables.final_rows(df)
    # dropna=False: a metric that is NaN in every run (all diverged) keeps its column
    wide = fin.pivot_table(index=["rate", "strategy", "seed"], columns="metric", values="value", sort=False,
                           dropna=False)
    lines.append(f"{'rate':>6} {'strategy':<15} {'seed':>4} {'final_acc':>9} {'best_acc':>8} "
                 f"{'train_loss':>10} {'drawn_corr':>10} {'mass_corr':>9} {'s':>6}")
    nan = float("nan")
    for (rate, strategy, seed), r in wide.iterrows():
        flag = "  DIVERGED" if r.get("diverged", 0) else ""
        flag += " (proxies/attacker diverged: not trained)" if r.get("proxy_diverged", 0) == 1 else ""
        lines.append(f"{rate:>6g} {strategy:<15} {int(seed):>4} {r.get('final_test_acc', nan):>9.2f} "
                     f"{r.get('best_test_acc', nan):>8.2f} {r.get('final_train_loss', nan):>10.4f} "
                     f"{r.get('drawn_corrupt', nan):>10.4f} {r.get('mass_corrupt', nan):>9.4f} "
                     f"{r.get('seconds', nan):>6.1f}{flag}")
    lines += ["", "mean +- std over seeds: test accuracy % and final training loss (diverged: fraction of "
              "seeds whose run diverged; their accuracy is nan and left out of the mean)",
              runs.mean_std_table(fin, ["rate", "strategy"], ["final_test_acc", "best_test_acc", "diverged"]),
              "", runs.mean_std_table(fin, ["rate", "strategy"],
                                      ["final_train_loss", "drawn_corrupt", "mass_corrupt"], fmt="{:.4f}")]
    if detection:
        import pandas as pd

        det = pd.DataFrame(detection)
        lines += ["", "proxy scores per noise rate: detection of the corrupted labels (AUROC, AP; "
                  "nan without noise), mass of the strategy's p on them (subset mode: their share of the "
                  "subset), effective sample size of p / N, largest importance weight 1/(N p), "
                  "proxy test accuracy %",
                  runs.mean_std_table(det, ["rate", "strategy"],
                                      ["auroc", "ap", "mass_corrupt", "ess", "max_weight", "test_acc"],
                                      fmt="{:.3f}")]
    if total_s is not None:
        lines += ["", f"wall time of this invocation: {total_s:.1f} s"]
    run.write_text("res.txt", "\n".join(lines) + "\n")


def load_plotter():
    """DL-noise/plot.py as a module (the folder name is not a package name)."""
    return load_script(Path(__file__).with_name("plot.py"), "dl_noise_plot", fresh=True)


# ---------------------------------------------------------------- main


def diverged_rows() -> list[dict]:
    """The record of a run that could not train because a proxy or the attacker diverged."""
    nan = float("nan")
    return [{"metric": m, "value": v} for m, v in
            {"final_test_acc": nan, "best_test_acc": nan, "final_train_loss": nan, "drawn_corrupt": nan,
             "mass_corrupt": nan, "diverged": 1.0, "proxy_diverged": 1.0, "seconds": 0.0}.items()]


def run_keys(args, rate) -> list[dict]:
    return [{"kind": args.noise_kind, "rate": rate, "strategy": st, "seed": s}
            for st in args.strategy_list for s in args.seed_list]


def main(argv=None):
    args = parse_args(argv)
    ds = experiment.open_dataset(args)
    path = launch.run_path(args, experiment.results_root(args, FAMILY), default_name)
    need_proxies = any(STRATEGIES[s] for s in args.strategy_list)
    plotter = load_plotter()
    detection: dict = {}   # rate -> detection rows of its scores (scores.csv, res.txt)
    t_start = time.perf_counter()

    def prepare(rate, run, _pending):
        tag = experiment.noise_tag(args.noise_kind, rate)
        prep = experiment.prepare(args, ds, args.noise_kind, rate, run, need_proxies=need_proxies)
        strat_scores = strategy_scores(prep.ens, args.strategy_list) if prep.ens is not None else {}
        if strat_scores:
            # named by the score, as in DR-IS's files: consensus (consensus-high), dris (ambiguous)
            run.save_arrays(f"scores-{tag}.npz", **{STRATEGIES[s]: v for s, v in strat_scores.items()})
        experiment.export_configuration(run, args, tag, prep.labels, prep.clean, prep.mask, prep.ens, ds=ds)
        if args.export_probs and args.mode == "weighted":
            from islab import export

            for strategy, s in strat_scores.items():
                export.save_probs(run.path / f"probs-{tag}-{strategy}.npz", [0],
                                  sampling.smoothed_probs(s, args.gamma)[None], dataset_id=example_ids(ds))
        if prep.mask is not None:
            detection[rate] = [{"rate": rate, **r} for r in detection_rows(args, strat_scores, prep.mask, prep.ens)]
        return rate, tag, prep, strat_scores

    def jobs(p):
        rate, tag = p[0], p[1]
        return [sweep.Job(key, f"  {tag} {key['strategy']} seed {key['seed']}", f"{tag}-{key['strategy']}-s{key['seed']}")
                for key in run_keys(args, rate)]

    def run_job(run, p, job, ckpt):
        _, tag, prep, strat_scores = p
        strategy, seed = job.key["strategy"], job.key["seed"]
        if prep.labels is None or (STRATEGIES[strategy] and prep.ens is None):
            return sweep.Outcome(diverged_rows(), f"{job.name}: DIVERGED (no scores: {prep.diverged})")
        smp = make_sampling(args, strategy, strat_scores.get(strategy), len(ds.train), seed)
        res = train(args.target, ds, prep.labels, experiment.target_config(args), seed, sampling=smp,
                    corrupt_mask=prep.mask, progress=args.progress, log=lambda msg: run.log(msg, quiet=True),
                    checkpoint=ckpt, desc=f"{tag} {strategy} s{seed}")   # per-epoch lines: log.txt only
        note = f" DIVERGED at epoch {res.diverged_epoch}" if res.diverged else ""
        return sweep.Outcome(run_rows(res), f"{job.name}: test acc {res.test_acc:.2f}% (best "
                                            f"{res.best_test_acc:.2f}%), drawn corrupted "
                                            f"{epoch_mean(res.history, 'drawn_corrupt'):.3f} ({res.seconds:.1f} s){note}")

    def rows():
        return [r for rate in args.rate_list for r in detection.get(rate, [])]

    def after(run, p, trained):
        runs.atomic_write_text(run.path / "scores.csv", _frame(rows()).to_csv(index=False))
        write_report(run, args, ds, rows())
        if trained and p[0] != args.rate_list[-1]:
            plotter.draw(run.path)  # after each noise rate, not each run: figures cost seconds

    def report(run, final):
        write_report(run, args, ds, rows(), time.perf_counter() - t_start if final else None)
        if final:
            plotter.draw(run.path)

    def header(run):
        return (f"DL-noise {args.target} on {args.dataset} (N={len(ds.train)}), {args.noise_kind} noise at "
                f"{args.rate_list}, strategies {args.strategy_list}, mode {args.mode}, seeds {args.seed_list} "
                f"-> {run.path}")

    configs = [sweep.Config(experiment.noise_tag(args.noise_kind, r), run_keys(args, r),
                            functools.partial(prepare, r), jobs, report_needs_prepare=True, after=after)
               for r in args.rate_list]
    return sweep.sweep(__file__, args, argv, path, configs, run_job, report, header=header)


def _frame(rows):
    import pandas as pd

    return pd.DataFrame(rows)


if __name__ == "__main__":
    cli.run_main(main)
