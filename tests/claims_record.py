"""A small fake record of the DR-IS study (results.csv + config.json per draw folder, the layout of
the results of record) for the tests of DR-IS/claims.py; every number is chosen here, so the
tests know the answers."""
import json
from pathlib import Path

import pandas as pd

NAN = float("nan")
DRAWS = (0, 1, 2)
STATIC_METHODS = ("random", "el2n", "forgetting", "consensus", "aum", "dris")
# (config, alpha, method) -> accuracy of draw 0, 1, 2 (the short regime)
BASE = {"random": 76.0, "el2n": 18.0, "forgetting": 42.0, "consensus": 17.0, "aum": 73.0, "dris": 77.5}
# DR-IS - Random at targeted 25 %, alpha 0.3: +1.0, +1.5, +2.0 (mean 1.5, sd 0.5, n 3)
T25_DRIS = (77.0, 77.5, 78.0)
T25_RANDOM = (76.0, 76.0, 76.0)
CONFIG = {"dataset": "fashion-mnist", "target": "mlp2x256", "epochs": 10, "proxies": "pooled_cnn,mlp,linear",
          "proxy_epochs": 6, "snapshot_epoch": 3, "attacker": "mlp", "attacker_epochs": 6, "augment": False,
          "batch_size": 128, "lr": 0.05, "weight_decay": 0.0005}
KINDS = {"clean": ("clean", 0.0), "uniform0.1": ("uniform", 0.1), "targeted0.1": ("targeted", 0.1),
         "targeted0.25": ("targeted", 0.25), "targeted0.4": ("targeted", 0.4), "targeted0.5": ("targeted", 0.5)}
OCONFIG = dict(CONFIG, is_floor=0.1, rho_floor=0.1, rho_every=5, holdout=0.1, irreducible_model="mlp2x256",
               irreducible_epochs=6)


def _acc(config, alpha, method, d):
    if config == "targeted0.25" and alpha == 0.3 and method == "dris":
        return T25_DRIS[d]
    if config == "targeted0.25" and alpha == 0.3 and method == "random":
        return T25_RANDOM[d]
    shift = {"clean": 10.0, "targeted0.1": 8.0, "uniform0.1": 8.5, "targeted0.4": -15.0, "targeted0.5": -30.0}
    noise = (0.1, -0.2, 0.15)[d] * (1 + STATIC_METHODS.index(method) if method in STATIC_METHODS else 1)
    return BASE.get(method, 80.0) + shift.get(config, 0.0) + (alpha - 0.3) * 5 + noise


def static_rows(configs, alphas, methods, d, full=True, proxy_seconds=None):
    rows = []
    for config in configs:
        kind, rate = KINDS[config]
        eps = 0.0 if config == "clean" else rate
        cells = [(a, m) for a in alphas for m in methods] + ([(1.0, "full")] if full else [])
        for alpha, m in cells:
            key = {"config": config, "alpha": alpha, "method": m, "seed": d, "kind": kind, "rate": rate}
            acc = (89.6 if config == "clean" else 81.5 + 0.1 * d) if m == "full" else _acc(config, alpha, m, d)
            final = {"test_acc": acc, "corruption_in_subset": (0.82 if m in ("el2n", "consensus", "forgetting")
                                                              else 0.0 if m == "aum" else 0.4 * eps),
                     "eps": eps, "class_kept_min": 0.0 if m == "aum" else 0.2, "class_kept_max": 0.6,
                     "seconds": 20.0 + d, "diverged": 0.0}
            if m == "full":
                final.update(fit_noisy_corrupt=0.127, fit_true_corrupt=0.324, fit_clean=0.95)
                if proxy_seconds is not None:
                    final["proxy_seconds"] = proxy_seconds
            rows.append({**key, "metric": "epoch_test_acc", "epoch": 1, "value": acc - 5})
            rows += [{**key, "metric": k, "epoch": NAN, "value": v} for k, v in final.items()]
    return rows


def online_rows(configs, d):
    acc = {"uniform": 89.6, "standard_is": 88.0, "rho_approx": 86.0, "rho_faithful": 87.0, "dris": 89.0}
    rows = []
    for config in configs:
        drop = {"clean": 0.0, "targeted0.1": 1.0, "targeted0.25": 8.0}[config]
        for m, a in acc.items():
            # T3 clean: DR-IS - uniform = -0.6, -0.5, -0.4 (within 2 pp, TOST equivalent)
            v = a - drop + (0.1 * (d - 1) if m == "dris" else 0.0) + (0.05 * d if m != "dris" else 0.0)
            key = {"noise": config, "method": m, "seed": d}
            rows += [{**key, "metric": "final_acc", "epoch": NAN, "value": v},
                     {**key, "metric": "mass_corrupt_mean", "epoch": NAN,
                      "value": 0.5 if m == "standard_is" else 0.05},
                     {**key, "metric": "diverged", "epoch": NAN, "value": 0.0}]
    return rows


def write_folder(folder: Path, rows, config) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, sort_keys=True))
    pd.DataFrame(rows).to_csv(folder / "results.csv", index=False)
    return folder


def make_record(root: Path, mem_epochs: int = 40, proxy_seconds=None) -> Path:
    """Short regime: table1, table1b, alpha, rate, online, proxysets; memorisation-matched regime:
    table1 only (longer schedule); digits: nothing; the memorisation study's clean-label record."""
    root = Path(root)
    if proxy_seconds is not None:   # benchmarks/proxy_cost.py --out, against a 21.0 s target run
        (root / "benchmarks").mkdir(parents=True, exist_ok=True)
        (root / "benchmarks" / "proxy-cost-fashion-mnist.csv").write_text(
            f"preset,arm,seconds,epochs\nfashion-mnist,proxies,{proxy_seconds},6\nfashion-mnist,target,21.0,10\n")
    for d in DRAWS:
        base = root / "DR-IS" / "static"
        write_folder(base / f"repro-fashion-mnist-table1-d{d}",
                     static_rows(("clean", "targeted0.25"), (0.3,), STATIC_METHODS, d, proxy_seconds=proxy_seconds),
                     CONFIG)
        write_folder(base / f"repro-fashion-mnist-table1b-d{d}",
                     static_rows(("uniform0.1", "targeted0.1"), (0.3,), STATIC_METHODS, d), CONFIG)
        bal = static_rows(("clean", "targeted0.25"), (0.3,), ("el2n", "forgetting", "consensus", "aum", "dris"), d,
                          full=False)
        for r in bal:   # class-balanced AUM: 79.0, 79.5, 80.0 at targeted 25 % (above DR-IS's 77, 77.5, 78)
            if r["method"] == "aum" and r["config"] == "targeted0.25" and r["metric"] == "test_acc":
                r["value"] = 79.0 + 0.5 * d
        write_folder(base / f"repro-fashion-mnist-balanced-d{d}", bal, dict(CONFIG, class_balanced=True))
        write_folder(base / f"repro-fashion-mnist-alpha-d{d}",
                     static_rows(("targeted0.25",), (0.1, 0.5), ("random", "el2n", "consensus", "aum", "dris"), d,
                                 full=False), CONFIG)
        write_folder(base / f"repro-fashion-mnist-rate-d{d}",
                     static_rows(("targeted0.4", "targeted0.5"), (0.3,), ("random", "el2n", "consensus", "aum",
                                                                          "dris"), d, full=False), CONFIG)
        write_folder(root / "DR-IS" / "online" / f"repro-fashion-mnist-online-d{d}",
                     online_rows(("clean", "targeted0.1", "targeted0.25"), d), OCONFIG)
        sweep = root / "DR-IS" / "ablations" / f"repro-fashion-mnist-proxysets-d{d}"
        for sub, shift in (("K1", -8.0), ("K2", -3.5), ("K3", 1.5)):
            rows = [r for r in static_rows(("targeted0.25",), (0.3,), ("dris",), d, full=False)]
            for r in rows:
                if r["metric"] in ("test_acc", "epoch_test_acc"):
                    r["value"] = T25_RANDOM[d] + shift + 0.1 * d
            write_folder(sweep / sub, rows, CONFIG)
        (sweep / "config.json").write_text(json.dumps(CONFIG))
        write_folder(base / f"repro-fashion-mnist-mem-table1-d{d}",
                     static_rows(("clean", "targeted0.25"), (0.3,), STATIC_METHODS, d),
                     dict(CONFIG, epochs=mem_epochs, proxy_epochs=mem_epochs // 4, snapshot_epoch=mem_epochs // 8))
    mem = root / "DR-IS" / "memorisation" / "mlp2x256"
    write_folder(mem, [{"labels": "clean", "model": "mlp2x256", "epochs": 80, "wd": 0.0, "epoch": NAN,
                        "metric": "fit_noisy_corrupt", "value": 0.027},
                       {"labels": "targeted0.25", "model": "mlp2x256", "epochs": 80, "wd": 0.0, "epoch": NAN,
                        "metric": "fit_noisy_corrupt", "value": 0.9}], {"models": "mlp2x256"})
    return root


def folder_of(root: Path):
    """reproduce.py's folder_of for this record: the draw folders that exist, sorted."""
    def f(preset, stage, script):
        return sorted(Path(root, "DR-IS", script).glob(f"repro-{preset}-{stage}-d[0-9]*"))
    return f
