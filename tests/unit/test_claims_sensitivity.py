"""DR-IS/claims.py's sensitivity section (the `sensitivity` stages of reproduce.py) on hand-made
final frames with known answers."""
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from islab.loader import load_script

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def claims():
    return load_script(ROOT / "DR-IS" / "claims.py", "dris_claims_test")


def frame(cells):
    """final_frame()-like rows: (method, accuracies by seed 0.., diverged flags, max_weight_max)."""
    rows = []
    for method, accs, div, maxw in cells:
        for seed, (a, d) in enumerate(zip(accs, div)):
            rows.append({"config": "targeted0.25", "method": method, "seed": seed, "test_acc": a,
                         "diverged": d, "max_weight_max": maxw, "max_weight_drawn_max": maxw / 2})
    return pd.DataFrame(rows)


def test_sensitivity_table_and_sentences_known_answers(claims):
    frames = {
        "online": frame([("uniform", [80, 81, 82], [0, 0, 0], 1.0),
                         ("standard_is", [70, 71, 72.5], [0, 0, 0], 11.0)]),
        # floor 0: every seed diverged and scored chance (10 %): still below uniform, same verdict
        "sensitivity-floor0": frame([("standard_is", [10, 10, 10], [1, 1, 1], 5000.0)]),
        # unweighted: paired differences +0.5, -1, +1 vs uniform (mean 0.167, sd 1.04, t = 0.277,
        # p = 0.808): no significant difference
        "sensitivity-unweighted": frame([("standard_is", [80.5, 80, 83], [0, 0, 0], 11.0)]),
    }
    rows = claims.sensitivity_rows(frames)
    si = {r["variant"]: r for r in rows if r["method"] == "standard_is"}
    base = si["default: floor 0.1, refreshed target, weighted"]
    # differences -10, -10, -9.5: mean -9.83, sd 0.289 -> t = -59.0, p = 2.9e-4 (two-sided, 2 df)
    assert base["verdict"] == "below uniform" and base["vs"].startswith("-9.83 pp (p = 0.000287")
    assert si["floor 0"]["verdict"] == "below uniform" and si["floor 0"]["diverged"] == 3
    assert si["unweighted"]["verdict"] == "no significant difference"
    assert si["frozen proxy snapshot"]["verdict"] == "not run" and si["floor 0.01"]["n"] == 0
    table = claims.sensitivity_table(rows)
    # 70, 71, 72.5: mean 71.17, sd sqrt(3.1667 / 2) = 1.26
    assert "| targeted0.25 | standard_is | default: floor 0.1, refreshed target, weighted | 71.17 +- 1.26 |" in table
    assert "| floor 0 | 10.00 +- 0.00 | -71.00 pp (p = " in table and "| 3/3 | 5000.0 | 2500.0 |" in table
    # rho methods were not run at all: their rows say so
    assert "| targeted0.25 | rho_faithful | floor 0 | not run | - | not run | - | - | - |" in table
    text = "\n".join(claims.sensitivity_sentences(rows))
    assert ("- targeted0.25, standard_is: default below uniform (-9.83 pp (p = 0.000287) vs uniform); unweighted "
            "changes it to no significant difference (+0.17 pp (p = 0.808)); floor 0 keeps it.") in text
    assert "- targeted0.25, rho_faithful: not run." in text


def test_sensitivity_sentence_when_nothing_changes(claims):
    frames = {"online": frame([("uniform", [80, 81, 82], [0, 0, 0], 1.0),
                               ("rho_approx", [60, 61, 62.5], [0, 0, 0], 11.0)]),
              "sensitivity-floor0.01": frame([("rho_approx", [40, 45, 41], [0, 0, 0], 101.0)])}
    text = "\n".join(claims.sensitivity_sentences(claims.sensitivity_rows(frames)))
    assert "- targeted0.25, rho_approx: default below uniform (" in text
    assert "no single choice changes it (floor 0.01 keeps it)." in text


TINY = ["--train-size", "300", "--epochs", "2", "--target", "mlp", "--proxies", "linear,mlp", "--proxy-epochs", "2",
        "--snapshot-epoch", "1", "--attacker", "linear", "--attacker-epochs", "2", "--irreducible-model", "linear",
        "--irreducible-epochs", "2", "--rho-every", "1", "--noise", "targeted:0.2", "--seeds", "0,1"]


def test_sensitivity_stages_through_reproduce_cli(tmp_path):
    """`reproduce.py --stages sensitivity` on tiny digits settings: its four run folders, each
    with its variant's flags, and the report's section filled from them."""
    import json
    import subprocess

    root, report = tmp_path / "res", tmp_path / "REPORT.md"
    # one draw (each variant one run folder), recorded into and reported from a record of its own
    cmd = [sys.executable, str(ROOT / "DR-IS" / "reproduce.py"), "--preset", "digits", "--stages", "sensitivity",
           "--draws", "0", "--results-root", str(root), "--record-root", str(tmp_path / "record"),
           "--report", str(report), "--", *TINY, "--cache-dir", str(tmp_path / "cache")]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600,
                       env={"OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    want = {"floor0": {"is_floor": 0.0, "rho_floor": 0.0}, "floor0.01": {"is_floor": 0.01, "rho_floor": 0.01},
            "frozen": {"is_source": "proxy", "methods": "standard_is"}, "unweighted": {"unweighted": True}}
    for variant, flags in want.items():
        # one folder per draw (repro-...-<variant>-d<d>) or, in the older layout, one folder
        folders = [f for f in sorted((root / "DR-IS" / "online").iterdir())
                   if re.fullmatch(rf"repro-digits-sensitivity-{re.escape(variant)}(-d\d+)?", f.name)]
        assert folders, variant
        folder = folders[0]
        config = json.loads((folder / "config.json").read_text())
        assert {k: config[k] for k in flags} == flags, variant
        assert (folder / "res.txt").exists()
    text = report.read_text().split("## digits")[1].split("### Sensitivity of the online verdicts")[1]
    # no `online` stage here: the defaults are "not run", the variants have numbers
    assert "| targeted0.2 | standard_is | default: floor 0.1, refreshed target, weighted | not run |" in text
    for variant in ("floor 0", "floor 0.01", "frozen proxy snapshot", "unweighted"):
        row = [ln for ln in text.splitlines() if ln.startswith(f"| targeted0.2 | standard_is | {variant} |")]
        assert len(row) == 1 and "not run" not in row[0].split("|")[4], row
    assert "- targeted0.2, standard_is: not run." in text   # no uniform reference, no verdict
