"""DR-IS/claims.py's sensitivity section (the `sensitivity` stages of reproduce.py) on hand-made
final frames with known answers; the `sensitivity` stages through reproduce.py's CLI are
tests/smoke/test_reproduce_sensitivity_smoke.py."""
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

