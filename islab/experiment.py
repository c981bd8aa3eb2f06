"""What the deep-learning scripts share: presets, argument groups, and the set-up steps
dataset -> noisy labels -> proxy ensemble, so each script only composes them.

Presets hold the protocol of each data set (docs/METHODS.md); every value stays overridable
on the command line, and `--help` shows the flag, its unit and the digits default.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from islab import cli, runs
from islab.data import DATASETS, DataMissing, dataset_choice, example_ids, load_dataset
from islab.models import MODELS
from islab.train import TrainConfig, pick_device

# Protocols.  cifar10/cifar100 follow the DR-IS paper (docs/METHODS.md section 3): proxies trained E_p = 40
# epochs, scored at E_s = 20; SGD momentum 0.9, wd 5e-4, cosine, batch 128.  digits is our
# CPU-sized stand-in: small models, short schedules, same structure.  The targeted-noise
# attacker trains `attacker_epochs` on the clean labels (its own flag, --attacker-epochs); the
# preset values equal the preset's E_p, which is what every earlier run used, but the attacker
# no longer follows --proxy-epochs: a proxy-epochs ablation must not change the corrupted labels.
PRESETS = {
    # digits: three proxies of different architectures and a CNN target, sized so a whole
    # sweep (tens of target runs) takes about a minute of CPU; cnn reaches ~98 % in 8 epochs.
    "digits": dict(dataset="digits", target="cnn", proxies="cnn,mlp,linear",
                   attacker="cnn", attacker_epochs=10, epochs=8, proxy_epochs=10, snapshot_epoch=5,
                   batch_size=64, lr=0.05, weight_decay=5e-4),
    # fashion-mnist: the paper's claims at scale on a CPU (all 60,000 training images), the SHORT
    # regime.  Target mlp2x256, proxies of three different inductive biases (conv, one hidden
    # layer, linear), each cheaper than the target.  No augmentation: an MLP has no translation
    # invariance, so crops and flips cost it accuracy and hide the memorisation of noisy labels
    # that the study is about.  In 10 epochs uniform SGD fits few of the flipped labels.
    "fashion-mnist": dict(dataset="fashion-mnist", target="mlp2x256", proxies="pooled_cnn,mlp,linear",
                          attacker="mlp", attacker_epochs=6, epochs=10, proxy_epochs=6, snapshot_epoch=3, batch_size=128,
                          lr=0.05, weight_decay=5e-4, augment=False),
    # fashion-mnist-mem: the MEMORISATION-MATCHED regime, the cheapest candidate of
    # DR-IS/memorisation.py whose uniform SGD fits >= 80 % of the targeted-25 % flipped labels
    # (DR-IS/README.md, "Two regimes": the measurement and the criterion).  Proxies and attacker
    # scaled like the paper's: E_p = E/4, E_s = E/8 rounded (40 and 20 of 160 epochs).
    "fashion-mnist-mem": dict(dataset="fashion-mnist", target="mlp2x256", proxies="pooled_cnn,mlp,linear",
                              attacker="mlp", attacker_epochs=15, epochs=60, proxy_epochs=15, snapshot_epoch=8,
                              batch_size=128, lr=0.05, weight_decay=0.0, augment=False),
    "cifar10": dict(dataset="cifar10", target="vgg19_bn",
                    proxies="resnet20,mobilenetv2_x0_5,shufflenetv2_x0_5", attacker="resnet20",
                    attacker_epochs=40, epochs=160, proxy_epochs=40, snapshot_epoch=20, batch_size=128,
                    lr=0.1, weight_decay=5e-4),
    "cifar100": dict(dataset="cifar100", target="resnet18",
                     proxies="resnet20,mobilenetv2_x0_5,shufflenetv2_x0_5", attacker="resnet20",
                     attacker_epochs=40, epochs=160, proxy_epochs=40, snapshot_epoch=20, batch_size=128,
                     lr=0.1, weight_decay=5e-4),
}
# Proxy-diversity presets of the DR-IS ablation (K1, K2, K3 in the paper); digits analogues.
PROXY_SETS = {
    "cifar": {"K1": "resnet20,resnet20,resnet20", "K2": "mobilenetv2_x0_5,mobilenetv2_x0_5,mobilenetv2_x0_5",
              "K3": "resnet20,mobilenetv2_x0_5,shufflenetv2_x0_5"},
    "digits": {"K1": "cnn,cnn,cnn", "K2": "mlp,mlp,mlp", "K3": "cnn,mlp,linear"},
    "fashion-mnist": {"K1": "pooled_cnn,pooled_cnn,pooled_cnn", "K2": "mlp,mlp,mlp",
                      "K3": "pooled_cnn,mlp,linear"},
}


def preset_epilog() -> str:
    """The preset values, for the --help epilog (flags left unset take these)."""
    return "presets (flags left unset take these values): " + "; ".join(
        f"{name} = " + ", ".join(_flag_text(k, v) for k, v in vals.items())
        for name, vals in PRESETS.items())


def _flag_text(key: str, value) -> str:
    flag = key.replace("_", "-")
    if isinstance(value, bool):
        return f"--{flag}" if value else f"--no-{flag}"
    return f"--{flag} {value}"


def add_common_args(p, default_name_hint: str = "", exclude=()) -> None:
    """Data, model, schedule, device and run-folder flags shared by the DL scripts.

    `exclude`: destinations of shared flags a script does not use (e.g. diagnostics.py trains no
    target: 'seeds', 'target', 'epochs'); they are left out of its parser, and `resolve` fills
    them from the preset where the shared set-up needs a value."""
    p.epilog = preset_epilog()
    skip = set(exclude)

    def add(g, *flags, **kw):
        dest = kw.get("dest") or flags[0].lstrip("-").replace("-", "_")
        if dest not in skip:
            g.add_argument(*flags, **kw)

    g = p.add_argument_group("data and protocol")
    add(g, "--preset", default="digits", choices=sorted(PRESETS),
        help="protocol preset; explicit flags below override its values (listed at the end)")
    add(g, "--dataset", type=dataset_choice, metavar="NAME",
        help=f"data set (default: the preset's): {', '.join(DATASETS)}; or your own: npz:PATH, a .npz file with "
             "x_train, y_train, x_test, y_test (uint8 images (N, H, W) or (N, C, H, W), 0..255, or float inputs "
             "used as they are; integer labels 0..C-1), or folder:PATH, a torchvision ImageFolder tree "
             "PATH/train/<class>/, PATH/test/<class>/ (one image size)")
    add(g, "--data-dir", type=cli.path, default="data", help="folder holding the torchvision data sets")
    add(g, "--download", action="store_true", help="download the data set if missing (network needed)")
    add(g, "--train-size", type=cli.positive_int,
        help="keep a seeded subset of this many training examples (default: all)")
    add(g, "--augment", action=argparse.BooleanOptionalAction, default=None,
        help="random crop + horizontal flip of training batches where the data set defines them "
             "(cifar, fashion-mnist); default: the preset's (on, off for fashion-mnist)")
    g = p.add_argument_group("training (the target model)")
    add(g, "--target", help="target model name (default: the preset's)")
    add(g, "--epochs", type=cli.positive_int,
        help="target budget in epochs, each ceil(N / batch size) SGD steps (default: the preset's)")
    add(g, "--batch-size", type=cli.positive_int, help="examples per SGD step (default: the preset's)")
    add(g, "--lr", type=cli.learning_rate,
        help="peak SGD learning rate (step size per unit gradient, dimensionless), cosine-annealed to 0 "
             "over the run (default: the preset's)")
    add(g, "--weight-decay", type=cli.weight_decay,
        help="L2 weight-decay coefficient (dimensionless; wd * w is added to the gradient every step; "
             "default: the preset's)")
    add(g, "--momentum", type=cli.unit_interval, default=0.9,
        help="SGD momentum coefficient in [0, 1] (dimensionless; fraction of the previous update kept)")
    add(g, "--no-amp", action="store_true", help="disable bf16 autocast on CUDA")
    add(g, "--compile", action="store_true", help="torch.compile the model (CUDA)")
    add(g, "--device", default="auto", help="auto, cpu, cuda or cuda:N (never changes a result's config: "
                                            "--resume may move a run to another device)")
    g = p.add_argument_group("proxies")
    add(g, "--proxies", help="comma list of proxy models (default: the preset's)")
    add(g, "--proxy-epochs", type=cli.positive_int,
        help="E_p: proxy training epochs, each ceil(N / batch size) steps (default: the preset's)")
    add(g, "--snapshot-epoch", type=cli.positive_int,
        help="E_s: the epoch (1-based, <= E_p) whose snapshot gives the scores (default: the preset's)")
    add(g, "--attacker", help="model trained on the clean labels whose gradient norms choose the targeted "
                              "flips (default: the preset's)")
    add(g, "--attacker-epochs", type=cli.positive_int,
        help="epochs the targeted-noise attacker trains on the clean labels (default: the preset's, equal "
             "to its --proxy-epochs; independent of --proxy-epochs); part of the attacker's cache key")
    add(g, "--cache-dir", type=cli.folder, default=None,
        help="proxy/attacker cache folder (default: <results-root>/cache)")
    add(g, "--sequential-proxies", action="store_true",
        help="train proxies of one architecture one after the other instead of as one batched model "
             "(islab.ensemble; the same numbers, up to float rounding for conv nets; one cache file per "
             "proxy either way)")
    g = p.add_argument_group("run")
    add(g, "--seeds", default="0,1,2", help="comma list of target seeds (integers; each trains every method once)")
    add(g, "--noise-seed", type=cli.seed, default=0, help="seed (integer) of the label-noise draw")
    add(g, "--results-root", type=cli.folder, default=None,
        help="results folder; runs land in <root>/<family>/<name> (default: the repository's results/)")
    add(g, "--name", type=runs.check_name, default=None,
        help=f"run folder name, one folder (default: from the parameters{default_name_hint})")
    add(g, "--resume", action="store_true", help="continue an existing run folder, skipping finished jobs")
    add(g, "--quiet", action="store_true", help="log to log.txt only (progress lines still show in a terminal; "
                                                 "the run folder is always the last line)")
    add(g, "--progress", action="store_true",
        help="a tqdm bar per epoch too (a line per finished job shows in a terminal anyway); where stderr is not "
             "a terminal a heartbeat line every 60 seconds replaces bars (env ISLAB_HEARTBEAT=<seconds>, 0 = off)")
    g = p.add_argument_group("per-example exports (scores-<config>.csv is always written)")
    add(g, "--export-dynamics", action="store_true",
        help="also write each proxy's per-epoch training logits in allenai/cartography's format "
             "(dynamics-<config>/<proxy>_s<seed>/training_dynamics/dynamics_epoch_<e>.jsonl; ~12 MB "
             "per epoch and proxy for 60,000 examples); proxies cached without them train again")


def add_probs_export_arg(p, files: str = "probs-<config>-<method>-s<seed>.npz", what: str = "at each refresh") -> None:
    """--export-probs (islab.export.save_probs's format), for the scripts with sampling distributions."""
    for g in p._action_groups:
        if g.title and g.title.startswith("per-example exports"):
            g.add_argument("--export-probs", action="store_true",
                           help=f"also write every job's sampling distribution p {what} ({files}: epochs (R,), "
                                "p float32 (R, N), example_id and dataset_id (N,); N x 4 bytes per row)")


def resolve(args) -> None:
    """Fill unset flags from the preset and validate names; errors exit 2 with one line."""
    preset = PRESETS[args.preset]
    for k, v in preset.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    args.proxy_list = parse_list(args.proxies, "--proxies")
    # a script without target seeds (diagnostics.py) has no --seeds flag
    args.seed_list = parse_seeds(args.seeds) if getattr(args, "seeds", None) is not None else []
    resolve_cache_dir(args)
    for m in [args.target, args.attacker, *args.proxy_list]:
        if m not in MODELS:
            cli.fail(f"unknown model {m!r}; choose from {', '.join(MODELS)}")
    if args.snapshot_epoch > args.proxy_epochs:
        cli.fail(f"--snapshot-epoch {args.snapshot_epoch} exceeds --proxy-epochs {args.proxy_epochs}")
    try:
        args.torch_device = pick_device(args.device, arg="--device")
    except ValueError as e:
        if not (getattr(args, "launcher", "inline") == "slurm" and str(args.device).startswith("cuda")):
            cli.fail(str(e))
        # --launcher slurm on a login node without a GPU: this process only checks the data and
        # submits; the tasks pick --device on their own nodes
        import torch

        args.torch_device = torch.device("cpu")


def parse_list(text: str, what: str = "list") -> list[str]:
    """The items of a comma list (exit 2 with one line on an empty list or an empty item)."""
    return cli.parse_list(text, what)


def parse_choices(text: str, allowed, what: str) -> list[str]:
    """A non-empty comma list of names from `allowed`, duplicates dropped (exit 2 otherwise)."""
    names = list(dict.fromkeys(cli.parse_list(text, f"the {what} list")))
    cli.check_choices(names, list(allowed), what)
    return names


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"not an integer: {text!r}") from None


def parse_ints(text: str, what: str) -> list[int]:
    """A comma list of integers for flag --<what> (exit 2 with one line otherwise)."""
    return cli.parse_list(text, f"--{what}", kind=_int)


def parse_seeds(text: str) -> list[int]:
    """--seeds: a comma list of seeds (cli.seed: integers in [0, 2^32)); exit 2 with one line otherwise."""
    return cli.parse_list(text, "--seeds", kind=cli.seed)


def parse_rates(text: str, what: str = "--rates") -> list[float]:
    return cli.parse_list(text, what, kind=cli.rate)


def resolve_cache_dir(args) -> None:
    """The default --cache-dir is <results-root>/cache, wherever the command is started from."""
    if getattr(args, "cache_dir", None) is None:
        args.cache_dir = str(Path(args.results_root or runs.RESULTS_ROOT) / "cache")


def open_dataset(args):
    """Load the data set on the device, or exit 2 with one line (missing or damaged files,
    --train-size larger than the data set)."""
    try:
        ds = load_dataset(args.dataset, data_dir=args.data_dir, download=args.download,
                          device=args.torch_device, train_size=args.train_size, seed=0)
    except (DataMissing, ValueError) as e:
        cli.fail(f"--train-size: {e}" if "train_size" in str(e) else str(e))
    return ds if getattr(args, "augment", None) is not False else replace(ds, augment="none")


def target_config(args, **over) -> TrainConfig:
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       momentum=args.momentum, weight_decay=args.weight_decay,
                       amp=not args.no_amp, compile=args.compile, **over)


def proxy_config(args) -> TrainConfig:
    return replace(target_config(args), epochs=args.proxy_epochs)


def attacker_config(args) -> TrainConfig:
    """The targeted-noise attacker's schedule: the proxies' optimiser settings for
    --attacker-epochs epochs (the epochs are in the TrainConfig, hence in its cache key)."""
    return replace(target_config(args), epochs=args.attacker_epochs)


def results_root(args, family: str) -> Path:
    """<results-root>/<family>: the one rule of every script (results/README.md)."""
    return Path(args.results_root or runs.RESULTS_ROOT) / family


# ---------------------------------------------------------------- noise configurations


def parse_noise_configs(text: str) -> list[tuple[str, float]]:
    """'clean,uniform:0.1,targeted:0.25' -> [('clean', 0.0), ('uniform', 0.1), ('targeted', 0.25)].

    Exits 2 with one line on an unknown kind or a rate outside [0, 1)."""
    from islab.noise import MULTICLASS_KINDS

    out = []
    for item in parse_list(text, "--noise"):
        if item in ("clean", "none"):   # 'none': the former spelling, still accepted
            out.append(("clean", 0.0))
            continue
        kind, _, r = item.partition(":")
        if kind not in MULTICLASS_KINDS:
            cli.fail(f"unknown noise kind {kind!r}; choose from clean, {', '.join(MULTICLASS_KINDS[1:])}")
        if not r:
            cli.fail(f"noise config {item!r} needs a rate, e.g. {kind}:0.1")
        out.append((kind, parse_rates(r, "--noise")[0]))
    if not out:
        cli.fail("no noise configuration given")
    return out


def noise_tag(kind: str, rate: float) -> str:
    return "clean" if kind in ("clean", "none") or rate == 0 else f"{kind}{rate:g}"


def proxy_seed(args, k: int) -> int:
    """Seed of proxy k: 1000 + k + 100 * noise seed, apart from every target seed."""
    return 1000 + k + 100 * args.noise_seed


def configuration(args, ds, kind: str, rate: float, run=None, need_proxies: bool = True, proxy_names=None,
                  proxy_seeds=None):
    """Noise, then proxies, for one (dataset, noise kind, rate, noise seed) configuration.

    Returns (labels, mask, clean, ensemble or None).  The labels, clean labels and mask are saved
    in the run folder (labels-<tag>.npz); the proxy run comes from the shared cache.  A diverging
    attacker or proxy raises islab.proxies.ProxyDiverged (see `prepare`).
    """
    labels, mask, clean = noise_draw(args, ds, kind, rate, run)
    ens = ensemble(args, ds, labels, run, proxy_names, proxy_seeds) if need_proxies else None
    return labels, mask, clean, ens


def noise_draw(args, ds, kind: str, rate: float, run=None):
    """(noisy labels, corruption mask, clean labels) of one configuration, saved in the run folder."""
    from islab.proxies import noisy_labels

    labels, mask, clean = noisy_labels(ds, kind, rate, args.noise_seed, attacker_model=args.attacker,
                                       attacker_cfg=attacker_config(args), cache_dir=args.cache_dir,
                                       log=run.log if run is not None else None)
    if run is not None:   # dataset_id: each example's index in the full training split (--train-size)
        run.save_arrays(f"labels-{noise_tag(kind, rate)}.npz", noisy=labels, clean=clean, corrupt=mask,
                        dataset_id=example_ids(ds))
    return labels, mask, clean


def ensemble(args, ds, labels, run=None, proxy_names=None, proxy_seeds=None):
    """The proxy ensemble of one configuration's labels (from the shared cache)."""
    from islab.proxies import proxy_ensemble

    names = proxy_names or args.proxy_list
    seeds = proxy_seeds or [proxy_seed(args, k) for k in range(len(names))]
    return proxy_ensemble(ds, labels, names, seeds, proxy_config(args), args.snapshot_epoch,
                          cache_dir=args.cache_dir, log=run.log if run is not None else None,
                          progress=args.progress, batched=not getattr(args, "sequential_proxies", False),
                          dynamics=bool(getattr(args, "export_dynamics", False)))


def export_configuration(run, args, tag: str, labels, clean, mask, ens=None, extra=None, ddof: int = 0,
                         ds=None) -> list:
    """The per-example exports of one configuration (islab.export): scores-<tag>.csv always (the
    ensemble's scores and per-proxy statistics, plus `extra` name -> (N,) columns; with `ds`, the
    dataset_id column: the examples' ids in the full training split), and with
    --export-dynamics the proxies' cartography files under dynamics-<tag>/.  Returns the paths.
    They are derived from the shared proxy cache and rewritten by every invocation."""
    from islab import export

    if labels is None:
        return []
    cols = export.ensemble_columns(ens, ddof=ddof) if ens is not None else {}
    for name, v in (extra or {}).items():
        cols.setdefault(name, v)
    files = [export.write_scores_csv(run.path / f"scores-{tag}.csv", cols, labels, clean, mask,
                                     dataset_ids=None if ds is None else example_ids(ds))]
    if getattr(args, "export_dynamics", False) and ens is not None and ens.dynamics:
        files += export.write_proxy_dynamics(run.path / f"dynamics-{tag}", ens, labels)
    return files


class Prepared(NamedTuple):
    """One configuration's shared inputs; `diverged` says why they are missing (else None)."""
    labels: object       # (N,) noisy labels, None when the targeted-noise attacker diverged
    mask: object         # (N,) bool corrupted, None likewise
    clean: object
    ens: object          # ProxyEnsemble, None when not needed or when a proxy diverged
    diverged: str | None


def prepare(args, ds, kind: str, rate: float, run, need_proxies: bool = True, **kw) -> Prepared:
    """configuration() that records a diverging attacker or proxy instead of raising: the
    script then records the jobs that need it as diverged (NaN, 'diverged' in res.txt) and
    carries on with the others (a method that diverges is a result)."""
    from islab.proxies import ProxyDiverged

    tag = noise_tag(kind, rate)
    try:
        labels, mask, clean = noise_draw(args, ds, kind, rate, run)
    except ProxyDiverged as e:
        run.log(f"[{tag}] targeted-noise attacker diverged ({e}): every job of this configuration is "
                "recorded as diverged")
        return Prepared(None, None, None, None, f"attacker: {e}")
    if not need_proxies:
        return Prepared(labels, mask, clean, None, None)
    try:
        ens = ensemble(args, ds, labels, run, **kw)
    except ProxyDiverged as e:
        run.log(f"[{tag}] {e}: the jobs that need proxy scores are recorded as diverged")
        return Prepared(labels, mask, clean, None, str(e))
    return Prepared(labels, mask, clean, ens, None)


# ---------------------------------------------------------------- memorisation of noisy labels


def fit_to_labels(model, ds, noisy, clean, mask, cfg) -> tuple[dict, np.ndarray]:
    """How a trained model fits the training labels it was given (eval mode, un-augmented):

      fit_noisy_corrupt  fraction of corrupted examples predicted as their NOISY label
                         (memorised; NaN when nothing is corrupted)
      fit_true_corrupt   fraction of corrupted examples predicted as their TRUE label (resisted)
      fit_clean          fraction of uncorrupted examples predicted correctly
    Returns (those metrics, the (N,) int64 predictions).  A model that never saw the noisy
    labels also predicts some of them (confusable classes): compare fit_noisy_corrupt with the
    same measure for a model trained on clean labels (REPRODUCTION.md does).
    """
    pred = predict(model, ds, cfg)
    noisy, clean, mask = np.asarray(noisy), np.asarray(clean), np.asarray(mask, dtype=bool)
    nan = float("nan")
    return {"fit_noisy_corrupt": float((pred[mask] == noisy[mask]).mean()) if mask.any() else nan,
            "fit_true_corrupt": float((pred[mask] == clean[mask]).mean()) if mask.any() else nan,
            "fit_clean": float((pred[~mask] == clean[~mask]).mean()) if (~mask).any() else nan}, pred


def predict(model, ds, cfg) -> np.ndarray:
    """Eval-mode argmax predictions of `model` on the un-augmented training split, (N,) int64."""
    import torch

    from islab.data import prepare_batch

    was = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(ds.train), cfg.eval_batch):
            out.append(model(prepare_batch(ds, ds.train.x[s:s + cfg.eval_batch], train=False)).argmax(1))
    model.train(was)
    return torch.cat(out).cpu().numpy().astype(np.int64)
