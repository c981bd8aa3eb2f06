#!/usr/bin/env python
"""DL-correlation: do cheap proxies rank the training examples like the target does?

Every model in --models (the target is the last one, or --target) scores each example of one
split (--split) with its eval-mode loss, EL2N, gradient-norm bound and margin (one pass of
islab.train.per_example_stats per model).  Per score kind the models are then compared by
Spearman, Kendall and Pearson correlation matrices and by the Jaccard overlap of their top-q
("hardest") sets (DL-correlation/README.md).

Where the models come from
  trained     (digits, mnist, or --train-proxies): every model is trained from scratch for
              --epochs epochs with islab.train.train on the training labels (noisy ones when
              --noise-kind is set).  Eval-mode snapshots at --early-epochs are correlated with
              the target's final scores: how early can a proxy tell? (--split train only.)
  pretrained  (cifar10 / cifar100, or --pretrained on fake_cifar): the released
              chenyaofo/pytorch-cifar-models weights (islab.models.build_pretrained), no training.

Hardness orientation: high loss / EL2N / gradient norm = hard; LOW margin = hard, so the margin
is negated before every comparison (correlations do not change under the common sign flip; the
margin top-q set is the q*N examples with the lowest margin).

Seeds: every --seeds value is one replicate.  Each trained model of a replicate gets its own
training seed derived from (replicate seed, architecture, copy); matrices are computed within a
replicate and reported as mean +- std over replicates.  Pretrained models are deterministic, so
they get one replicate (the first seed).

    python DL-correlation/IS_01_corelations.py                     # digits, ~35 s on 2 CPU cores
    python DL-correlation/IS_01_corelations.py --noise-kind uniform --noise-rate 0.2
    python DL-correlation/IS_01_corelations.py --preset cifar10 --split test --weights-dir weights/

Output: results/DL-correlation/<run>/ with res.txt (tables), results.csv (tidy: job, seed,
score, model_a, model_b, measure, value, epoch), scores-<model>-s<seed>.npz (per-example arrays),
scores-s<seed>.csv (per-example scores of every model of a replicate, keyed by example_id; with
--export-dynamics, dynamics-<model>-s<seed>/ per trained model: results/README.md),
labels-<noise>.npz, heat.png, scatter-loss.png, early.png and provenance.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # standalone: find islab

import numpy as np  # noqa: E402

from islab import cli, experiment, launch  # noqa: E402
from islab.runs import mean_std_table, open_run, run_name  # noqa: E402
from islab.tables import text_table  # noqa: E402

FAMILY = "DL-correlation"
SCORES = ("loss", "el2n", "gradnorm", "margin")          # per_example_stats keys
MEASURES = ("spearman", "kendall", "pearson", "jaccard")
ZOO_OF_DATASET = {"cifar10": "cifar10", "cifar100": "cifar100", "fake_cifar": "cifar10"}
DEFAULT_MODELS = {  # the target (last) is the most expensive model; proxies are cheaper
    "small": "linear,mlp,cnn,resnet20,cnn_wide",
    "cifar": "resnet20,resnet56,mobilenetv2_x0_5,shufflenetv2_x0_5,vgg19_bn",
}
DEFAULT_NOISE_RATE = 0.2
NOISE_KINDS = ("clean", "uniform", "targeted", "pair")


def noise_kind_name(text: str) -> str:
    """--noise-kind: `none`, the former spelling of `clean`, still reads as clean."""
    return "clean" if text == "none" else text


# ---------------------------------------------------------------- arguments


def build_parser():
    p = cli.make_parser(__doc__.split("\n\n")[0])
    # models come from --models and snapshots from --early-epochs: no proxy flags here
    experiment.add_common_args(p, exclude=("proxies", "proxy_epochs", "snapshot_epoch"))
    # this study trains every model for a few epochs (not the preset's target budget) and
    # averages two replicates by default, so the digits run stays well under a minute
    p.set_defaults(epochs=6, seeds="0,1")
    for a in p._actions:  # retitle shared flags whose meaning is specific here
        if a.dest == "epochs":
            a.help = "training epochs (each ceil(N/b) steps) of every trained model"
        elif a.dest == "target":
            a.help = "target model (default: the last of --models; appended to --models if missing)"
        elif a.dest == "seeds":
            a.help = "comma list of replicate seeds (trained models only; pretrained use the first)"
    g = p.add_argument_group("correlation study")
    g.add_argument("--models", help="comma list of models; the last is the target (default: "
                   f"{DEFAULT_MODELS['small']} on digits/mnist, "
                   f"{DEFAULT_MODELS['cifar']} on CIFAR-shaped data)")
    g.add_argument("--model-seeds", type=cli.positive_int, default=1,
                   help="independently seeded copies of every trained model within a replicate "
                        "(named model#k; the target is copy #0, the others show seed-to-seed agreement)")
    g.add_argument("--split", choices=("train", "test"), default="train",
                   help="split whose examples are scored")
    g.add_argument("--top-q", type=cli.fraction, default=0.1,
                   help="fraction of examples in each model's hardest set for the Jaccard overlap")
    g.add_argument("--early-epochs", default="auto",
                   help="comma list of snapshot epochs (1-based) correlated with the target's final scores; "
                        "'auto' = 1, 2, 4, ... below --epochs; 'none' = skip (trained models, --split train)")
    g.add_argument("--noise-kind", type=noise_kind_name, choices=NOISE_KINDS, default="clean",
                   help="label noise on the training set (docs/METHODS.md section 2); scores then use the "
                        "noisy labels")
    g.add_argument("--noise-rate", type=cli.rate, default=None,
                   help=f"corruption rate in [0, 1), fraction of N relabelled (default: {DEFAULT_NOISE_RATE} "
                        "when --noise-kind is not clean)")
    g.add_argument("--train-proxies", action="store_true",
                   help="on cifar10/cifar100, train every model from scratch instead of loading "
                        "pretrained weights")
    g.add_argument("--pretrained", action="store_true",
                   help="use the pretrained zoo on any CIFAR-shaped data set (fake_cifar -> cifar10 weights)")
    g.add_argument("--weights-dir", type=cli.path, default=None,
                   help="folder holding the released .pt files (default: the torch hub cache "
                        "$TORCH_HOME/hub/checkpoints); --download fetches missing ones")
    g.add_argument("--no-plots", action="store_true", help="write tables and arrays only, no figures")
    g.add_argument("--scatter-points", type=cli.positive_int, default=4000,
                   help="at most this many (randomly chosen) examples per scatter plot")
    launch.add_args(p)
    return p


def resolve_args(args) -> None:
    """Fill defaults and validate everything; errors exit 2 with one line, before any folder exists."""
    target_given = args.target
    experiment.resolve(args)
    from islab.models import MODELS, ZOO_HASHES

    if args.pretrained and args.train_proxies:
        cli.fail("--pretrained and --train-proxies exclude each other")
    zoo = ZOO_OF_DATASET.get(args.dataset)
    args.source = "trained"
    if args.pretrained or (args.dataset in ("cifar10", "cifar100") and not args.train_proxies):
        if zoo is None:
            cli.fail(f"pretrained weights need a CIFAR-shaped data set ({', '.join(ZOO_OF_DATASET)}), "
                     f"got {args.dataset}; drop --pretrained")
        args.source = "pretrained"
    args.zoo = zoo if args.source == "pretrained" else None

    models = experiment.parse_list(DEFAULT_MODELS["cifar" if zoo else "small"] if args.models is None else args.models,
                                   "--models")
    if target_given:
        models = models if target_given in models else [*models, target_given]
    if len(set(models)) != len(models):
        cli.fail(f"--models lists a model twice ({args.models}); use --model-seeds for copies")
    for m in models:
        if m not in MODELS:
            cli.fail(f"unknown model {m!r}; choose from {', '.join(MODELS)}")
        if args.source == "pretrained" and m not in ZOO_HASHES:
            cli.fail(f"no pretrained weights for {m!r}; choose from {', '.join(ZOO_HASHES)} "
                     "or pass --train-proxies")
    args.model_list = models
    args.target = target_given or models[-1]
    if args.source == "pretrained":
        if args.model_seeds > 1:
            cli.fail("--model-seeds > 1 needs trained models (pretrained copies would be identical)")
        args.seed_list = args.seed_list[:1]
    if len(models) * args.model_seeds < 2:
        cli.fail("need at least two models to compare (see --models, --model-seeds)")

    if args.noise_kind == "clean":
        if args.noise_rate:
            cli.fail("--noise-rate needs --noise-kind uniform, targeted or pair")
        args.noise_rate = 0.0
    else:
        args.noise_rate = DEFAULT_NOISE_RATE if args.noise_rate is None else args.noise_rate
        if args.split == "test":
            cli.fail("label noise is on the training set: use --split train with --noise-kind")

    if args.split == "train" and args.train_size is not None and args.train_size < 2:   # NaN correlations, Jaccard 1
        cli.fail(f"--train-size {args.train_size}: rank correlations need at least 2 training examples "
                 "(one example has no ranking)")

    text = str(args.early_epochs).strip().lower()
    early_ok = args.source == "trained" and args.split == "train"
    if text in ("none", ""):
        early = []
    elif text == "auto":
        early = [e for e in (1, 2, 4, 8, 16, 32, 64, 128) if e < args.epochs] if early_ok else []
    else:
        early = sorted(set(experiment.parse_ints(text, "early-epochs")))
        if not early_ok:
            cli.fail("--early-epochs needs trained models and --split train "
                     "(snapshots are taken on the training set)")
        bad = [e for e in early if not 1 <= e < args.epochs]
        if bad:  # the final epoch is always compared, so snapshots lie strictly before it
            cli.fail(f"--early-epochs {bad[0]} lies outside 1..{args.epochs - 1} "
                     f"(before --epochs {args.epochs})")
    args.early_list = early
    if args.weights_dir is not None and not os.path.isdir(args.weights_dir):
        cli.fail(f"--weights-dir {args.weights_dir} is not a folder")
    launch.check_args(args)


def default_name(args) -> str:
    """Readable parts plus a short digest of everything else that changes the numbers."""
    rest = {k: getattr(args, k) for k in ("model_list", "target", "model_seeds", "seed_list", "top_q",
                                          "early_list", "batch_size", "lr", "weight_decay", "momentum",
                                          "noise_seed")}
    digest = hashlib.sha1(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:6]
    src = "pretrained" if args.source == "pretrained" else f"e{args.epochs}"
    size = f"n{args.train_size}" if args.train_size else ""
    return run_name(args.dataset, size, src, args.split,
                    experiment.noise_tag(args.noise_kind, args.noise_rate), digest)


def load_zoo(args, ds) -> dict:
    """name -> pretrained model on the data's device (channels_last on CUDA, like the batches
    per_example_stats feeds it); missing weights exit 2 naming the file."""
    from islab.models import (PretrainedMissing, ZOO_INPUT_SHAPE, ZOO_NUM_CLASSES, build_pretrained,
                              pretrained_url)
    from islab.train import device_format

    if ds.num_classes != ZOO_NUM_CLASSES[args.zoo] or tuple(ds.input_shape) != ZOO_INPUT_SHAPE:
        cli.fail(f"{args.dataset} ({ds.num_classes} classes, {tuple(ds.input_shape)}) does not fit the "
                 f"{args.zoo} zoo ({ZOO_NUM_CLASSES[args.zoo]} classes, {ZOO_INPUT_SHAPE})")
    out = {}
    for name in args.model_list:
        url = pretrained_url(args.zoo, name)
        weights = None
        if args.weights_dir is not None:
            path = os.path.join(args.weights_dir, url.rsplit("/", 1)[1])
            if os.path.isfile(path):
                weights = path
            elif not args.download:
                cli.fail(f"pretrained weights {url.rsplit('/', 1)[1]} not found in {args.weights_dir}; "
                         f"place the file there (from {url}) or pass --download")
        try:
            model = build_pretrained(args.zoo, name, weights=weights, download=args.download)
        except PretrainedMissing as e:
            cli.fail(str(e))
        except (RuntimeError, ValueError) as e:  # a file of the wrong model / data set, or damaged
            cli.fail(f"cannot load the weights of {name}: {str(e).splitlines()[0]}")
        device = ds.train.x.device
        out[name] = device_format(model.to(device), device, experiment.target_config(args)).eval()
    return out


# ---------------------------------------------------------------- comparisons (numpy in, floats out)


def hardness(kind: str, values) -> np.ndarray:
    """Orient a score so that high = hard: the margin is negated, the others kept."""
    v = np.asarray(values, dtype=np.float64)
    return -v if kind == "margin" else v


def top_set(hard: np.ndarray, q: float) -> np.ndarray:
    """Ids of the round(q*N) hardest examples (at least one); ties broken by the lower id."""
    k = max(1, int(round(q * len(hard))))
    return np.argsort(-hard, kind="stable")[:k]


def jaccard(a, b) -> float:
    a, b = set(np.asarray(a).tolist()), set(np.asarray(b).tolist())
    return len(a & b) / len(a | b) if (a or b) else float("nan")


def chance_jaccard(q: float) -> float:
    """Expected Jaccard of two independent random sets of q*N out of N (large N): q / (2 - q)."""
    return q / (2.0 - q)


def compare(a: np.ndarray, b: np.ndarray, q: float) -> dict:
    """Spearman, Kendall (tau-b, O(N log N)), Pearson and top-q Jaccard of two hardness arrays."""
    import warnings

    from scipy import stats

    with warnings.catch_warnings():  # a constant array gives NaN, which the tables show as nan
        warnings.simplefilter("ignore")
        varied = np.ptp(a) > 0 and np.ptp(b) > 0
        return {"spearman": float(stats.spearmanr(a, b)[0]), "kendall": float(stats.kendalltau(a, b)[0]),
                "pearson": float(stats.pearsonr(a, b)[0]) if varied else float("nan"),
                "jaccard": jaccard(top_set(a, q), top_set(b, q))}


def spearman(a, b) -> float:
    import warnings

    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.spearmanr(a, b)[0])


# ---------------------------------------------------------------- one model = one job


def train_seed(seed: int, arch: str, copy: int) -> int:
    """Training seed of one model in one replicate: own init/order/augmentation streams per (arch, copy)."""
    from islab.seeding import derive_seed

    return derive_seed(seed, "proxy", zlib.crc32(arch.encode()), copy)


def score_model(args, ds, arch, copy, seed, label, labels, mask, y_split, x_split, zoo, run):
    """Per-example arrays of one model (final and early snapshots) and its tidy rows."""
    from islab.theory import detection_metrics
    from islab.train import evaluate, per_example_stats, train

    dyn = bool(args.export_dynamics) and args.source == "trained"
    cfg = experiment.target_config(args, snapshot_epochs=tuple(args.early_list), track_presentations=dyn,
                                   record_logits=dyn)
    t0 = time.time()
    files = []
    if args.source == "pretrained":
        model, snapshots, final_epoch = zoo[arch], {}, float("nan")
        test_acc = evaluate(model, ds, cfg)[0]
    else:
        ckpt = launch.checkpoint_file(run, args, f"{label.replace('#', '_c')}-s{seed}")
        launch.resuming(run, ckpt, f"[seed {seed}] {label}")
        res = train(arch, ds, labels, cfg, train_seed(seed, arch, copy),
                    corrupt_mask=mask if mask.any() else None, progress=args.progress,
                    desc=f"{label} s{seed}", checkpoint=ckpt)
        launch.drop_checkpoint(ckpt)   # the job's arrays and rows are written right after
        if res.diverged:
            run.log(f"[seed {seed}] {label}: diverged at epoch {res.diverged_epoch}; "
                    "left out of the comparisons")
            return {"diverged": np.array(True)}, [{"measure": "diverged", "value": 1.0}], files
        model, snapshots, final_epoch, test_acc = res.model, res.snapshots, args.epochs, res.test_acc
        if res.dynamics is not None:   # cartography's per-epoch files of this trained model
            from islab import export

            files = export.write_cartography(run.path / f"dynamics-{label.replace('#', '_c')}-s{seed}",
                                             res.dynamics, labels)
    st = per_example_stats(model, ds, x_split, y_split, cfg)
    seconds = time.time() - t0
    arrays = {k: st[k] for k in (*SCORES, "correct")}
    for e in args.early_list:
        arrays.update({f"{k}_ep{e}": snapshots[e][k] for k in SCORES})
    split_acc = 100.0 * float(st["correct"].mean())
    rows = [{"measure": "test_acc", "value": test_acc}, {"measure": "split_acc", "value": split_acc},
            {"measure": "seconds", "value": seconds}, {"measure": "diverged", "value": 0.0}]
    if mask.any():  # detecting the corrupted examples: high hardness = suspicious
        for e, suffix in [*((e, f"_ep{e}") for e in args.early_list), (final_epoch, "")]:
            for k in SCORES:
                det = detection_metrics(hardness(k, arrays[k + suffix]), mask)
                rows += [{"score": k, "measure": m, "value": det[m], "epoch": e} for m in ("auroc", "ap")]
    run.log(f"[seed {seed}] {label}: {'loaded pretrained' if args.source == 'pretrained' else 'trained'} "
            f"test acc {test_acc:.2f}%, {args.split} acc {split_acc:.2f}% ({seconds:.1f}s)")
    return arrays, rows, files


def pair_rows(arrays: dict, order: list, target: str, q: float, early: list, final_epoch, mask) -> list:
    """Tidy rows of one replicate: every ordered pair (both orders, same value) per score and
    measure, and each trained model's early-snapshot Spearman with the target's final scores.

    With corrupted examples (mask, bool (N,)) the Spearman is also taken within the clean and
    within the corrupted examples: noise splits every ranking into two blocks, which alone lifts
    the correlation over all examples."""
    rows = []
    for k in SCORES:
        hard = {m: hardness(k, arrays[m][k]) for m in order}
        for i, a in enumerate(order):
            for b in order[i + 1:]:
                values = compare(hard[a], hard[b], q)
                if mask.any():
                    values["spearman_clean"] = spearman(hard[a][~mask], hard[b][~mask])
                    values["spearman_corrupted"] = spearman(hard[a][mask], hard[b][mask])
                for meas, v in values.items():
                    rows.append({"score": k, "model_a": a, "model_b": b, "measure": meas, "value": v})
                    rows.append({"score": k, "model_a": b, "model_b": a, "measure": meas, "value": v})
        for m in order:
            for e in early:
                v = spearman(hardness(k, arrays[m][f"{k}_ep{e}"]), hard[target])
                rows.append({"score": k, "model_a": m, "model_b": target, "measure": "early_spearman",
                             "value": v, "epoch": e})
            if early:  # the line ends at the final epoch (target vs itself = 1)
                v = 1.0 if m == target else spearman(hard[m], hard[target])
                rows.append({"score": k, "model_a": m, "model_b": target, "measure": "early_spearman",
                             "value": v, "epoch": final_epoch})
    return rows


# ---------------------------------------------------------------- tables and plots


def matrix_table(df, order: list) -> str:
    """Mean (+- std over replicates) of a pairwise measure as a model x model text table."""
    g = df.groupby(["model_a", "model_b"])["value"]
    mean, std, n = g.mean(), g.std(), g.count()
    cells = [["", *order]]
    for a in order:
        row = [a]
        for b in order:
            if a == b:
                row.append("1")
            elif (a, b) in mean.index:
                s = f"{mean[(a, b)]:.3f}"
                row.append(s + (f" +- {std[(a, b)]:.3f}" if n[(a, b)] > 1 else ""))
            else:
                row.append("-")
        cells.append(row)
    return text_table(cells[0], cells[1:], rule=False)


def write_report(run, args, order, target, n_examples) -> None:
    df = results_frame(run)
    if df.empty:
        return
    df = df.rename(columns={"measure": "metric"})
    q = args.top_q
    noise = experiment.noise_tag(args.noise_kind, args.noise_rate)
    out = [f"DL-correlation on {args.dataset} ({args.split} split, N = {n_examples}), models {args.source}, "
           f"noise {noise}, target {target}",
           f"replicate seeds {args.seed_list}" + (
               "" if args.source == "pretrained" else
               f"; {args.epochs} epochs, {args.model_seeds} copies per model"),
           "hardness: high loss / EL2N / gradient norm, LOW margin (margin negated before comparing)",
           f"top-q = {q:g}: Jaccard of the round(qN) hardest sets; chance level for independent sets "
           f"~ q/(2-q) = {chance_jaccard(q):.3f}",
           "mean +- std over replicates (sample std), n = replicates", ""]
    models = df[df.job == "model"]
    if not models.empty:
        out += ["== models (test acc %: clean test set; split acc %: against the scored labels; "
                "seconds: train+score)",
                mean_std_table(models.rename(columns={"model_a": "model"}), ["model"],
                               ["test_acc", "split_acc", "seconds", "diverged"]), ""]
    pairs = df[df.job == "pairs"]
    if not pairs.empty:
        vs = pairs[(pairs.model_b == target) & pairs.metric.isin(MEASURES)]
        vs = vs.rename(columns={"model_a": "proxy"})
        out += [f"== each model vs the target {target} (per score kind)",
                mean_std_table(vs, ["score", "proxy"], list(MEASURES), fmt="{:.3f}"), ""]
        within = pairs[(pairs.model_b == target)
                       & pairs.metric.isin(["spearman_clean", "spearman_corrupted"])]
        if not within.empty:
            out += ["== Spearman with the target within the clean and within the corrupted examples",
                    mean_std_table(within.rename(columns={"model_a": "proxy"}), ["score", "proxy"],
                                   ["spearman_clean", "spearman_corrupted"], fmt="{:.3f}"), ""]
        early = pairs[pairs.metric == "early_spearman"].copy()
        if not early.empty:
            early["metric"] = "ep" + early["epoch"].astype(float).astype(int).astype(str)
            cols = [f"ep{e}" for e in sorted(early["epoch"].astype(float).astype(int).unique())]
            out += ["== Spearman of each model's epoch-e snapshot with the target's final scores "
                    "(proxy x epoch)",
                    mean_std_table(early.rename(columns={"model_a": "model"}), ["score", "model"], cols,
                                   fmt="{:.3f}"), ""]
    det = models[models.metric.isin(["auroc", "ap"])] if not models.empty else models
    if not det.empty:
        final = det[det.epoch.isna()] if args.source == "pretrained" else det[det.epoch == args.epochs]
        out += ["== detecting the corrupted training examples (high hardness = suspicious; "
                f"chance AUROC 0.5, AP {args.noise_rate:g})",
                mean_std_table(final.rename(columns={"model_a": "model"}), ["score", "model"],
                               ["auroc", "ap"], fmt="{:.3f}"), ""]
    if not pairs.empty:
        for k in SCORES:
            for m in MEASURES:
                d = pairs[(pairs.score == k) & (pairs.metric == m)]
                if not d.empty:
                    out += [f"== {m} matrix, {k}", matrix_table(d, order), ""]
    run.write_text("res.txt", "\n".join(out))


def draw_plots(run, args, order, target, arrays0, mask, seed0) -> None:
    """heat.png (every replicate-mean matrix in one grid), scatter-loss.png (each proxy's loss
    against the target's, first replicate) and early.png (snapshot Spearman per epoch)."""
    from islab import plots

    plt = plots.plt
    df = results_frame(run)
    pairs = df[df.job == "pairs"]
    n_rep = pairs.seed.nunique()
    mats = {}
    for k in SCORES:
        for m in MEASURES:
            d = pairs[(pairs.score == k) & (pairs.measure == m)]
            mean = d.groupby(["model_a", "model_b"])["value"].mean()
            mats[k, m] = np.array([[1.0 if a == b else mean.get((a, b), np.nan) for b in order] for a in order])
    plots.heatmap_grid(mats, order, SCORES, MEASURES, run.path / "heat.png", vmin=-1, vmax=1, highlight=target,
                       notes={"jaccard": f"top-{args.top_q:g} sets; chance {chance_jaccard(args.top_q):.3f}"},
                       cbar_label="agreement (one scale for every panel)",
                       title=f"DL-correlation: agreement between every pair of models (rows: score; columns: "
                             f"measure; mean over {plots.seeds_text([n_rep])} (replicates); boxed: the "
                             f"target {target})")
    rng = np.random.default_rng(0)  # which examples are drawn in the scatter plots only
    n = len(arrays0[target]["loss"])
    idx = np.sort(rng.choice(n, size=min(n, args.scatter_points), replace=False))

    def log_loss(m):  # losses span decades; 1e-7 keeps exact zeros on the plot
        return np.log10(np.maximum(arrays0[m]["loss"][idx], 1e-7))

    proxies = [m for m in order if m != target]
    ncol = min(len(proxies), 4)
    nrow = -(-len(proxies) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.9 * ncol + 0.6, 2.9 * nrow + 0.5), squeeze=False,
                             sharex=True, sharey=True)
    groups = [("corrupted", mask[idx], plots.VERMILLION), ("clean", ~mask[idx], plots.BLUE)] if mask.any() \
        else [("all examples", np.ones(len(idx), dtype=bool), plots.BLUE)]
    tx = log_loss(target)
    lo = min(tx.min(), *(log_loss(m).min() for m in proxies))
    hi = max(tx.max(), *(log_loss(m).max() for m in proxies))
    pad = 0.03 * (hi - lo)
    for ax, m in zip(axes.flat, proxies):
        my = log_loss(m)
        for name, sel, colour in groups[::-1]:
            ax.scatter(tx[sel], my[sel], s=4, alpha=0.45, linewidths=0, color=colour, label=name, rasterized=True)
        ax.plot([lo, hi], [lo, hi], color="0.4", linestyle=(0, (4, 3)), linewidth=0.9, label="equal loss")
        rho = spearman(arrays0[target]["loss"], arrays0[m]["loss"])
        ax.set_title(f"{m}: Spearman {rho:.3f}")
        ax.set_ylabel("proxy log10 loss")
        ax.set_xlabel(f"{target} (target) log10 loss")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal", adjustable="box")
    for ax in list(axes.flat)[len(proxies):]:
        ax.axis("off")
    plots.legend_outside(fig, axes)
    fig.suptitle(plots.wrap(f"DL-correlation: per-example loss of each proxy against the target {target} "
                            f"(one replicate, seed {seed0}, n = 1 seed; {len(idx)} examples; exact zeros at 1e-7)",
                            40 * ncol))
    plots.save(fig, run.path / "scatter-loss.png")
    early = pairs[pairs.measure == "early_spearman"]
    if not early.empty:
        tlabel = f"{target} (target)"
        names = [tlabel if m == target else m for m in order]
        early = early.assign(model_a=early["model_a"].replace({target: tlabel}))
        plots.lines_with_band(early.rename(columns={"model_a": "model", "value": "spearman"}), "epoch",
                              "spearman", "model", run.path / "early.png", col="score", integer_x=True,
                              ylabel=f"Spearman with {target}'s final scores", clip=(-1, 1), panel="{value}",
                              hue_order=names, highlight=tlabel,
                              title="DL-correlation: each model's snapshot after epoch e against the "
                                    "target's final scores")


# ---------------------------------------------------------------- main


TABLE_COLUMNS = ("job", "seed", "score", "model_a", "model_b", "measure", "value", "epoch")


def export_scores(run, arrays, order, labels, clean, mask, seed):
    """scores-s<seed>.csv: one row per scored example (example_id = its index in --split), the
    labels, and `<score>__<model>` for every model and score kind (islab.export)."""
    from islab import export

    cols = {f"{k}__{m.replace('#', '_c')}": arrays[m][k] for m in order for k in SCORES}
    return export.write_scores_csv(run.path / f"scores-s{seed}.csv", cols, labels, clean, mask)


def results_frame(run):
    """run.frame() with every column of the table present (a run whose every model diverged
    has no score / model_b / epoch column)."""
    df = run.frame()
    for c in TABLE_COLUMNS:
        if c not in df:
            df[c] = np.nan
    return df


def reload_scores(run, key, file, arrays, label) -> bool:
    """Load a finished model's per-example arrays (its job file checksums them) into arrays."""
    if not run.is_done(key):
        return False
    with np.load(file) as z:
        arrays[label] = {k: z[k] for k in z.files}
    run.log(f"[seed {key['seed']}] {label}: done, per-example scores reloaded from {file.name}")
    return True


def main(argv=None):
    args = build_parser().parse_args(argv)
    resolve_args(args)
    ds = experiment.open_dataset(args)
    zoo = load_zoo(args, ds) if args.source == "pretrained" else {}
    path = launch.run_path(args, experiment.results_root(args, FAMILY), default_name)
    entries = [(arch if args.model_seeds == 1 else f"{arch}#{c}", arch, c)
               for arch in args.model_list for c in range(args.model_seeds)]
    model_keys = {seed: [{"job": "model", "seed": seed, "model_a": e[0]} for e in entries] for seed in args.seed_list}
    # a replicate's comparisons ("pairs") are done by whoever finishes its last model: no task of their own
    plan = launch.Plan(Path(__file__), launch.user_argv(argv), path,
                       [k for seed in args.seed_list for k in [*model_keys[seed], {"job": "pairs", "seed": seed}]],
                       [experiment.noise_tag(args.noise_kind, args.noise_rate)] if args.split == "train" else [],
                       task_keys=[k for seed in args.seed_list for k in model_keys[seed]])
    if args.dry_run:
        return launch.dry_run(plan, args)
    run = open_run(path, args, seed=args.seed_list[0], quiet=args.quiet)
    if launch.delegate(plan, args, run):
        return run.path
    role = launch.Role(args)
    tag = experiment.noise_tag(args.noise_kind, args.noise_rate)
    if args.split == "train":
        role.prepare_pass(run, [(tag, plan.keys, lambda: experiment.prepare(
            args, ds, args.noise_kind, args.noise_rate, run, need_proxies=False))])
    if role.stage == "prepare":
        return run.path

    import torch

    attacker_diverged = None
    if args.split == "train":
        with role.prepared(run, tag):
            prep = experiment.prepare(args, ds, args.noise_kind, args.noise_rate, run, need_proxies=False)
        labels, mask, attacker_diverged = prep.labels, prep.mask, prep.diverged
        if labels is None:   # the targeted-noise attacker diverged: nothing to score
            labels, mask = ds.train.y.cpu().numpy(), np.zeros(len(ds.train), dtype=bool)
        x_split, clean = ds.train.x, ds.train.y.cpu().numpy()
    else:
        labels, mask, x_split = ds.test.y.cpu().numpy(), np.zeros(len(ds.test), dtype=bool), ds.test.x
        clean = labels
    labels_np = np.asarray(labels) if args.split == "train" else ds.train.y.cpu().numpy()
    y_split = torch.as_tensor(np.asarray(labels), dtype=torch.long, device=x_split.device)
    target = args.target if args.model_seeds == 1 else f"{args.target}#0"
    if args.source == "pretrained" and len(experiment.parse_seeds(args.seeds)) > 1:
        run.log("pretrained models are deterministic: one replicate (seed "
                f"{args.seed_list[0]}), the other --seeds are not used")
    run.log(f"{args.dataset}: scoring {len(labels)} {args.split} examples with "
            f"{', '.join(e[0] for e in entries)} (target {target}) on {ds.train.x.device}")

    first = None
    for seed in args.seed_list:
        arrays = {}
        for label, arch, copy in entries:
            key = {"job": "model", "seed": seed, "model_a": label}
            file = run.path / f"scores-{label.replace('#', '_c')}-s{seed}.npz"
            if role.runs(key):
                with run.claim(key) as job:
                    if job is not None:
                        if attacker_diverged:
                            arrays[label], rows = ({"diverged": np.array(True)},
                                                   [{"measure": "diverged", "value": 1.0}])
                            extra = []
                            run.log(f"[seed {seed}] {label}: not trained ({attacker_diverged})")
                        else:
                            arrays[label], rows, extra = score_model(args, ds, arch, copy, seed, label, labels_np,
                                                                     mask, y_split, x_split, zoo, run)
                        run.save_arrays(file.name, **arrays[label])
                        job.finish(rows, files=[file, *extra])
                        if role.reports:
                            with run.locked():
                                write_report(run, args, [e[0] for e in entries], target, len(labels))
                        continue
            if not reload_scores(run, key, file, arrays, label) and role.runs(key):
                run.log(f"[seed {seed}] {label}: running in another worker, skipped")
        for label, _, _ in entries:   # models other workers finished meanwhile
            if label not in arrays:
                reload_scores(run, {"job": "model", "seed": seed, "model_a": label},
                              run.path / f"scores-{label.replace('#', '_c')}-s{seed}.npz", arrays, label)
        if len(arrays) < len(entries):   # the worker that finishes the last model compares them
            run.log(f"[seed {seed}] comparisons left to the worker that finishes its last model")
            continue
        order = [e[0] for e in entries if "diverged" not in arrays[e[0]]]
        if target not in order or len(order) < 2:   # recorded, so the replicate counts as finished
            with run.claim({"job": "pairs", "seed": seed}) as job:
                if job is not None:
                    job.finish([{"measure": "diverged", "value": 1.0}])
            run.log(f"[seed {seed}] the target or all proxies diverged: no comparisons for this replicate")
            continue
        final_epoch = args.epochs if args.source == "trained" else float("nan")
        with run.claim({"job": "pairs", "seed": seed}) as job:
            if job is not None:
                csv = export_scores(run, arrays, order, labels, clean, mask, seed)
                job.finish(pair_rows(arrays, order, target, args.top_q, args.early_list, final_epoch, mask),
                           files=[csv])
        if role.reports:
            with run.locked():
                write_report(run, args, order, target, len(labels))
        first = first or (seed, arrays, order)

    if not role.reports:   # a launcher's worker: the report comes once every job is done
        run.log(f"done -> {run.path}")
        return run.path
    # figures are drawn once, from every finished replicate (res.txt is rewritten after each job)
    if first is not None and not args.no_plots:
        t0 = time.time()
        with run.locked():
            draw_plots(run, args, first[2], target, first[1], mask, first[0])
        run.log(f"plots drawn ({time.time() - t0:.1f}s)")

    df = results_frame(run)
    vs = df[(df.job == "pairs") & (df.measure == "spearman") & (df.score == "loss") & (df.model_b == target)]
    for m, v in vs.groupby("model_a", sort=False)["value"]:
        spread = f" +- {v.std():.3f}" if len(v) > 1 else ""
        run.log(f"loss Spearman {m} vs {target}: {v.mean():.3f}{spread}")
    if df.empty or not (df.job == "pairs").any():
        run.log("no comparisons: every replicate lost its target or all its proxies to divergence"
                if (df.measure == "diverged").any() and (df.value[df.measure == "diverged"] == 1).any()
                else "no comparisons yet")
    figures = "" if args.no_plots else (
        ", heat.png, scatter-loss.png" + (", early.png" if args.early_list else ""))
    run.log(f"results: {run.path} (res.txt, results.csv{figures})")
    launch.finish(args)
    return run.path


if __name__ == "__main__":
    cli.run_main(main)
