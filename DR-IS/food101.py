#!/usr/bin/env python
"""DR-IS on Food-101 (external validity; docs/dris-studies.md): ImageNet backbones as linear-probe
proxies on cached features, static pruning by their rank disagreement, and a ResNet-50 target
with only its last block (layer4) and classifier fine-tuned.

Pipeline (islab/features.py holds the pieces):
  1. Food-101 images resized once to --image-size and cached (uint8, on the device).
  2. Per backbone (--backbones, torchvision DEFAULT ImageNet weights): penultimate features
     extracted ONCE and cached on disk, keyed by backbone, weights and a data fingerprint.
  3. Noise per configuration (--noise): E1 = clean (only the data set's natural noise), E2 =
     natural + injected targeted noise (default: 25 %, the paper's "E2 (+25% Targeted)"); the
     attacker is a linear probe on the first backbone's features trained --attacker-epochs on the
     unmodified labels (the paper briefly trains a ResNet-18).
  4. Proxies: one linear probe per backbone (islab.train, registry model `linear`, on the
     quantised features), --probe-epochs epochs; losses snapshotted at --probe-snapshot.
  5. Scores -> keep the top round(alpha N) (docs/METHODS.md section 4; random = uniform subset) -> the
     target trains on the subset with the full-data step budget (E/alpha passes).

    python DR-IS/food101.py --data-dir data                     # needs data/food-101 and the weights
    python DR-IS/food101.py --fake --target-arch resnet18 --epochs 1 --seeds 0   # generated stand-in, CPU

Missing data or weights exit 2 with one line naming the file and the folder.  --fake writes a
tiny GENERATED Food-101-shaped folder (a few classes of 64x64 images) into the cache folder and
builds every network untrained (no download): it tests the code path, nothing about Food-101.
Output (results/DR-IS/food101/<run>/): res.txt, results.csv (tidy: config, alpha, method, seed,
metric, value, epoch), scores-<config>.npz, labels-<config>.npz, accuracy.png, provenance files.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # standalone: find islab

import numpy as np  # noqa: E402

from islab import cli, experiment, runs, sampling, scores, tables, theory  # noqa: E402
from islab.seeding import numpy_rng  # noqa: E402

FAMILY = "DR-IS/food101"
SCORE_METHODS = ("dris", "consensus", "el2n", "aum", "forgetting")   # islab.scores.ensemble_score names
METHODS = ("random",) + SCORE_METHODS + ("full",)
DEFAULT_NOISE = "clean,targeted:0.25"  # the paper's Table 4: E1 (natural noise) and E2 (+25% Targeted)
FAKE_IMAGE_SIZE = 64


# ---------------------------------------------------------------- arguments


def build_parser():
    from islab.features import BACKBONES, TARGETS

    p = cli.make_parser(__doc__.split("\n\n")[0])
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", type=cli.path, default="data", help="folder holding food-101/ (torchvision layout)")
    g.add_argument("--download", action="store_true", help="download missing data and ImageNet weights")
    g.add_argument("--fake", action="store_true",
                   help="use a tiny GENERATED stand-in (written under --cache-dir) and untrained networks")
    g.add_argument("--fake-classes", type=cli.positive_int, default=4, help="--fake: number of classes (>= 2)")
    g.add_argument("--fake-per-class", type=cli.positive_int, default=24,
                   help="--fake: training images per class (test: a third of it, at least 2)")
    g.add_argument("--image-size", type=cli.positive_int, default=None,
                   help=f"images are resized (shorter side) and centre-cropped to this many pixels "
                        f"(default 224; {FAKE_IMAGE_SIZE} with --fake)")
    g.add_argument("--train-size", type=cli.positive_int,
                   help="keep a seeded subset of this many training images")
    g.add_argument("--test-size", type=cli.positive_int, help="keep a seeded subset of this many test images")
    g.add_argument("--weights-dir", type=cli.path, default=None,
                   help="folder holding torchvision's ImageNet .pth files "
                        "(default: $TORCH_HOME/hub/checkpoints)")
    g = p.add_argument_group("proxies (linear probes on frozen features)")
    g.add_argument("--backbones", type=cli.comma_list(str, unique=True), default=list(BACKBONES),
                   help=f"ImageNet backbones, one probe proxy each, from {', '.join(BACKBONES)}")
    g.add_argument("--probe-epochs", type=cli.positive_int, default=10,
                   help="probe training epochs, each ceil(N / probe batch) steps (paper: 10)")
    g.add_argument("--probe-snapshot", type=cli.positive_int, default=5,
                   help="epoch (1-based) whose eval-mode losses give the ranks (ours: half of "
                        "--probe-epochs, as E_s = E_p/2 on CIFAR)")
    g.add_argument("--probe-lr", type=cli.learning_rate, default=0.1,
                   help="probe peak SGD learning rate (step size per unit gradient, dimensionless), "
                        "cosine-annealed to 0")
    g.add_argument("--probe-batch", type=cli.positive_int, default=256, help="probe examples per SGD step")
    g.add_argument("--probe-weight-decay", type=cli.weight_decay, default=5e-4,
                   help="probe L2 weight-decay coefficient (dimensionless; wd * w added to the gradient)")
    g.add_argument("--attacker-epochs", type=cli.positive_int, default=10,
                   help="epochs the targeted-noise attacker (a linear probe on the first backbone's "
                        "features, clean labels) trains; its other settings are the probes'. Default 10 = "
                        "the --probe-epochs default, which the attacker used before it had its own flag")
    g.add_argument("--feature-batch", type=cli.positive_int, default=256,
                   help="images per feature-extraction pass")
    g = p.add_argument_group("static pruning and target")
    g.add_argument("--noise", default=DEFAULT_NOISE,
                   help="noise configurations on top of the natural noise: clean | uniform:RATE | "
                        "targeted:RATE | pair:RATE (RATE = fraction of N relabelled, in [0, 1))")
    g.add_argument("--alpha", type=cli.comma_list(cli.fraction, unique=True), default=[0.3],
                   help="keep fractions in (0, 1], comma list")
    g.add_argument("--methods", type=cli.comma_list(str, unique=True), default=["random", "dris"],
                   help=f"methods, from {', '.join(METHODS)}")
    g.add_argument("--target-arch", choices=TARGETS, default="resnet50",
                   help="target network (layer4 + a new fc trained, the rest frozen)")
    g.add_argument("--epochs", type=cli.positive_int, default=5,
                   help="target budget in epochs, each ceil(N / batch size) SGD steps (ours)")
    g.add_argument("--batch-size", type=cli.positive_int, default=128, help="target examples per SGD step")
    g.add_argument("--lr", type=cli.learning_rate, default=0.01,
                   help="target peak SGD learning rate (step size per unit gradient, dimensionless), "
                        "cosine-annealed to 0")
    g.add_argument("--weight-decay", type=cli.weight_decay, default=5e-4, help="target L2 weight-decay coefficient (dimensionless; "
                   "wd * w added to the gradient)")
    g.add_argument("--momentum", type=cli.unit_interval, default=0.9,
                   help="SGD momentum coefficient in [0, 1] (dimensionless), probes and target")
    g.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on CUDA")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g = p.add_argument_group("run")
    g.add_argument("--seeds", default="0,1,2", help="comma list of target seeds (integers)")
    g.add_argument("--noise-seed", type=cli.seed, default=0, help="seed (integer) of the label-noise draw")
    g.add_argument("--cache-dir", type=cli.folder, default=None,
                   help="image / feature / probe cache folder (default: <results-root>/cache)")
    g.add_argument("--results-root", type=cli.folder, default=None,
                   help="results folder; runs land in <root>/DR-IS/food101/<name> (default: the repository's "
                        "results/)")
    g.add_argument("--name", type=runs.check_name, default=None,
                   help="run folder name, one folder (default: from the parameters)")
    g.add_argument("--resume", action="store_true",
                   help="continue an existing run folder, skipping finished jobs")
    g.add_argument("--quiet", action="store_true",
                   help="log to log.txt only (progress lines still show in a terminal)")
    g.add_argument("--progress", action="store_true",
                   help="a tqdm bar per epoch too (a line per finished job shows in a terminal anyway)")
    return p


def parse_args(argv=None):
    """Parse and validate everything, data and weights included (exit 2, one line), before any folder."""
    from islab.data import DataMissing
    from islab.features import BACKBONES, check_weights, food101_files
    from islab.models import PretrainedMissing
    from islab.train import pick_device

    args = build_parser().parse_args(argv)
    experiment.resolve_cache_dir(args)
    if args.fake and args.fake_classes < 2:
        cli.fail(f"--fake-classes must be at least 2 (one class has nothing to classify), got {args.fake_classes}")
    cli.check_choices(args.backbones, BACKBONES, "backbone")
    cli.check_choices(args.methods, METHODS, "method")
    if any(m in ("dris", "consensus") for m in args.methods) and len(args.backbones) < 2:
        cli.fail("rank-disagreement scores need at least 2 backbones (--backbones a,b,...)")
    if args.probe_snapshot > args.probe_epochs:
        cli.fail(f"--probe-snapshot {args.probe_snapshot} exceeds --probe-epochs {args.probe_epochs}")
    if args.fake:   # the backbones' BatchNorm cannot train on a batch of one example
        n = args.fake_classes * args.fake_per_class
        for k in sorted({n} | {max(1, round(a * n)) for a in args.alpha}):
            if k % args.batch_size == 1:
                cli.fail(f"the fake set's {n} training images give a training set of {k} (full data or "
                         f"an --alpha subset) whose last batch of --batch-size {args.batch_size} holds one "
                         "image, which BatchNorm cannot train on: raise --fake-per-class")
    args.noise_list = experiment.parse_noise_configs(args.noise)
    args.seed_list = experiment.parse_seeds(args.seeds)
    args.image_size = args.image_size or (FAKE_IMAGE_SIZE if args.fake else 224)
    try:
        args.torch_device = pick_device(args.device, arg="--device")
    except ValueError as e:
        cli.fail(str(e))
    if args.fake:
        args.data_root = str(Path(args.cache_dir) / "fake-food101")
    else:
        args.data_root = args.data_dir
        try:
            if not args.download:
                food101_files(args.data_dir)
            check_weights([*args.backbones, args.target_arch], args.weights_dir, args.download)
        except (DataMissing, PretrainedMissing) as e:
            cli.fail(str(e))
    return args


def default_name(args) -> str:
    digest = runs.config_digest(args)
    return runs.run_name("fake" if args.fake else "food101", args.target_arch, f"e{args.epochs}",
                         "a" + "_".join(f"{a:g}" for a in args.alpha),
                         f"n{args.train_size}" if args.train_size else None, digest)


def probe_config(args):
    from islab.train import TrainConfig

    return TrainConfig(epochs=args.probe_epochs, batch_size=args.probe_batch, lr=args.probe_lr,
                       momentum=args.momentum, weight_decay=args.probe_weight_decay, amp=not args.no_amp)


def attacker_config(args):
    """The probes' settings for --attacker-epochs epochs (the epochs are part of its cache key)."""
    from dataclasses import replace

    return replace(probe_config(args), epochs=args.attacker_epochs)


def target_config(args):
    from islab.train import TrainConfig

    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                       weight_decay=args.weight_decay, amp=not args.no_amp)


# ---------------------------------------------------------------- report


def write_report(run, args, info: dict) -> None:
    df = run.frame()
    fin = tables.final_rows(df)
    what = "FAKE GENERATED STAND-IN (not Food-101; untrained networks)" if args.fake else "Food-101"
    head = [f"DR-IS Food-101 static pruning: {what}, {info.get('n', '?')} train / "
            f"{info.get('n_test', '?')} test images at {args.image_size}px, "
            f"{info.get('classes', '?')} classes",
            f"proxies: linear probes ({args.probe_epochs} epochs, ranks at epoch {args.probe_snapshot}) on "
            f"{', '.join(args.backbones)} features; targeted-noise attacker: linear probe on "
            f"{args.backbones[0]} ({args.attacker_epochs} epochs); target {args.target_arch} "
            "(layer4 + fc trained), "
            f"{args.epochs} epochs budget (E/alpha passes over the subset), seeds {args.seeds}",
            "acc: final test accuracy % (mean +- sample std over seeds); corruption_in_subset: fraction",
            "of kept examples whose label was injected-corrupted (natural noise is unknown; chance = eps);",
            "auroc: the method's discard order (lowest keep-score first) as a detector of injected",
            "corruption.", ""]
    for tag, meta in info.get("configs", {}).items():
        head.append(f"== {tag}: eps (injected) = {meta['eps']:.3f}; probe test acc % {meta['probe_acc']}")
        d = fin[fin["config"] == tag] if len(fin) else fin
        if len(d):
            d = d[d["value"].notna()]   # random has no score: its AUROC shows '-', and n counts seeds
            head.append(runs.mean_std_table(d, ["alpha", "method"],
                                            ["test_acc", "corruption_in_subset", "auroc", "diverged"],
                                            fmt="{:.3f}"))
        head.append("")
    run.write_text("res.txt", "\n".join(head) + "\n")


def write_plot(run, classes=None) -> None:
    """accuracy.png: final test accuracy per configuration and method (one bar per method and
    alpha), sd error bars over seeds, y from 0, chance (1/classes) dashed, one legend outside."""
    from islab import plots

    fin = tables.final_rows(run.frame())
    d = fin[fin["metric"] == "test_acc"] if len(fin) else fin
    if len(d) == 0:
        return
    d = d.assign(label=d["method"].map(plots.display) + d["alpha"].map(lambda a: "" if a == 1 else f", alpha {a:g}"))
    groups, hues = list(dict.fromkeys(d["config"])), list(dict.fromkeys(d["label"]))
    base = dict(zip(d["label"], d["method"]))
    sts = {h: plots.style(base[h]) for h in hues}
    fig, ax = plots.plt.subplots(figsize=(1.6 + 0.45 * len(hues) * len(groups), 3.2))
    stats = {(g, h): d[(d["config"] == g) & (d["label"] == h)]["value"].to_numpy(dtype=float)
             for g in groups for h in hues}
    chance = {g: 100.0 / classes for g in groups} if classes else None
    handles = plots.grouped_bars(ax, stats, groups, hues, sts=sts, chance=chance, chance_label=f"chance (1/{classes})")
    ax.set_ylim(0, 100)
    ax.set_ylabel("final test accuracy (%)")
    ax.set_xlabel("noise configuration")
    plots.legend_outside(fig, handles=handles, title="method")
    fig.suptitle("DR-IS Food-101: final test accuracy (mean +- sd over "
                 + (plots.count_seeds(d, ["config", "label"]) or "seeds") + ")")
    plots.save(fig, run.path / "accuracy.png")


# ---------------------------------------------------------------- main


def load_data(args):
    """The Food-101 set (or the generated stand-in) on the device; exit 2 with one line when it
    is missing, damaged or has fewer than 2 classes."""
    from islab import features

    if args.fake:   # the generated stand-in, written once per cache folder
        features.make_fake_food101(args.data_root, classes=args.fake_classes,
                                   train_per_class=args.fake_per_class,
                                   test_per_class=max(2, args.fake_per_class // 3), size=args.image_size)
    try:
        ds = features.load_food101(args.data_root, args.image_size, download=args.download and not args.fake,
                                   cache_dir=args.cache_dir, train_size=args.train_size,
                                   test_size=args.test_size, device=args.torch_device,
                                   name="fake_food101" if args.fake else "food101")
    except Exception as e:  # noqa: BLE001  DataMissing, a damaged meta file, a failed download
        cli.fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    if ds.num_classes < 2 or len(np.unique(ds.train.y.cpu().numpy())) < 2:
        cli.fail(f"{args.data_root}: the training set holds {len(np.unique(ds.train.y.cpu().numpy()))} class(es); "
                 "classification needs at least 2")
    return ds


def diverged_rows(eps) -> list[dict]:
    """The record of a job that could not train because a probe (or the attacker) diverged."""
    nan = float("nan")
    return [{"metric": q, "epoch": nan, "value": v} for q, v in
            {"test_acc": nan, "corruption_in_subset": nan, "kept_fraction": nan, "auroc": nan, "eps": eps,
             "diverged": 1.0, "proxy_diverged": 1.0, "seconds": 0.0}.items()]


def run_food101(args):
    from islab import features
    from islab.proxies import STAT_NAMES, ProxyDiverged, ProxyEnsemble, fingerprint, noisy_labels, train_proxy
    from islab.train import Sampling, train

    # real data is loaded (and checked) before any folder exists; the generated stand-in is
    # written into the cache folder, which open_run has checked first
    ds = None if args.fake else load_data(args)
    run = runs.open_run(experiment.results_root(args, FAMILY) / (args.name or default_name(args)), args,
                        seed=args.seed_list[0], quiet=args.quiet)
    ds = ds if ds is not None else load_data(args)
    n = len(ds.train)
    info = {"n": n, "n_test": len(ds.test), "classes": ds.num_classes, "configs": {}}
    run.log(f"run folder {run.path}; {n} train / {len(ds.test)} test images, {ds.num_classes} classes, "
            f"device {args.torch_device}{' (FAKE stand-in)' if args.fake else ''}")
    run.plan([{"config": experiment.noise_tag(k, r), "alpha": a, "method": m, "seed": s}
              for k, r in args.noise_list for a in args.alpha for m in args.methods for s in args.seed_list])
    pretrained = not args.fake
    data_fp = fingerprint(ds.train.x, ds.test.x)   # hashed once, shared by every backbone's cache key
    feat_ds = {}
    for b in args.backbones:
        try:
            tr, te = features.cached_features(b, ds, pretrained, args.weights_dir, args.cache_dir,
                                              args.feature_batch, amp=not args.no_amp, log=run.log,
                                              data_fingerprint=data_fp)
        except ValueError as e:   # damaged weights or weights of another network: exit 2, one line
            cli.fail(str(e))
        feat_ds[b] = features.feature_dataset(tr, te, ds, b)
    pcfg, tcfg = probe_config(args), target_config(args)
    t_all = time.time()
    for kind, rate in args.noise_list:
        tag = experiment.noise_tag(kind, rate)
        diverged, ens, labels, mask = None, None, None, None
        try:
            labels, mask, clean = noisy_labels(feat_ds[args.backbones[0]], kind, rate, args.noise_seed,
                                               attacker_model="linear", attacker_cfg=attacker_config(args),
                                               cache_dir=args.cache_dir, log=run.log)
            run.save_arrays(f"labels-{tag}.npz", noisy=labels, clean=clean, corrupt=mask)
            stats, accs, seeds = {s: [] for s in STAT_NAMES}, [], []
            for k, b in enumerate(args.backbones):
                seed = experiment.proxy_seed(args, k)
                out, acc = train_proxy(feat_ds[b], labels, "linear", seed, pcfg, args.probe_snapshot,
                                       cache_dir=args.cache_dir, log=run.log)
                for s in STAT_NAMES:
                    stats[s].append(out[s])
                accs.append(acc)
                seeds.append(seed)
            ens = ProxyEnsemble(list(args.backbones), seeds, {s: np.stack(v) for s, v in stats.items()},
                                np.asarray(accs))
        except ProxyDiverged as e:
            diverged = str(e)
            run.log(f"[{tag}] {e}: the jobs that need it are recorded as diverged")
        eps = float(mask.mean()) if mask is not None else float("nan")
        info["configs"][tag] = {"eps": eps, "probe_acc": ", ".join(
            f"{b} {a:.1f}" for b, a in zip(args.backbones, ens.test_acc)) if ens is not None else f"DIVERGED: {diverged}"}
        score_of = ({m: scores.ensemble_score(ens, m) for m in args.methods if m in SCORE_METHODS}
                    if ens is not None else {})
        if mask is not None:
            run.save_arrays(f"scores-{tag}.npz", index=np.arange(n), corrupt=mask, noisy=labels, **score_of)
        for alpha in args.alpha:
            for m in args.methods:
                for seed in args.seed_list:
                    key = {"config": tag, "alpha": alpha, "method": m, "seed": seed}
                    with run.claim(key) as job:
                        if job is None:
                            run.log(f"[{tag}] {m} alpha {alpha:g} seed {seed}: " + (
                                "done, skipped (--resume)" if run.is_done(key)
                                else "running in another worker, skipped"))
                            continue
                        if labels is None or (m in SCORE_METHODS and m not in score_of):
                            job.finish(diverged_rows(eps))
                            run.log(f"[{tag}] {m} alpha {alpha:g} seed {seed}: DIVERGED (no scores: {diverged})")
                            continue
                        if m == "full":
                            ids = np.arange(n)
                        elif m == "random":
                            rng = numpy_rng(seed, "subset", int(round(alpha * 1e6)))   # own draw per alpha
                            ids = sampling.random_subset(n, alpha, rng)
                        else:
                            ids = sampling.keep_top_fraction(score_of[m], alpha)
                        model = features.build_target(args.target_arch, ds.num_classes, seed, args.torch_device,
                                                      pretrained, args.weights_dir)
                        res = train(model, ds, labels, tcfg, seed, sampling=Sampling(mode="subset", subset=ids),
                                    corrupt_mask=mask, progress=args.progress,
                                    desc=f"[{tag}] {m} a{alpha:g} s{seed}")
                        det = theory.detection_metrics(-score_of[m], mask) if m in score_of else {"auroc": np.nan}
                        rows = [{"metric": f"epoch_{q}", "epoch": h["epoch"], "value": h[q]}
                                for h in res.history for q in ("test_acc", "train_loss") if q in h]
                        final = {"test_acc": res.test_acc,
                                 "corruption_in_subset": theory.corruption_in_subset(ids, mask),
                                 "kept_fraction": len(ids) / n, "auroc": det["auroc"], "eps": eps,
                                 "diverged": float(res.diverged), "seconds": res.seconds}
                        rows += [{"metric": q, "epoch": np.nan, "value": float(v)} for q, v in final.items()]
                        job.finish(rows)
                    run.log(f"[{tag}] {m} alpha {alpha:g} seed {seed}: test acc {res.test_acc:.2f}%"
                            f"{' DIVERGED' if res.diverged else ''}, corruption in subset "
                            f"{final['corruption_in_subset']:.3f} (eps {eps:.3f}), {res.seconds:.1f}s")
                    with run.locked():
                        write_report(run, args, info)
        with run.locked():   # from every worker's job files
            write_report(run, args, info)
            write_plot(run, info.get("classes"))
    run.log(f"done in {time.time() - t_all:.1f}s -> {run.path}")
    return run.path


def main(argv=None):
    return run_food101(parse_args(argv))


if __name__ == "__main__":
    cli.run_main(main)
