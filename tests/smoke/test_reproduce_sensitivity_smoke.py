"""`DR-IS/reproduce.py --stages sensitivity` through its real CLI on tiny digits settings (the
known answers of claims.py's sensitivity section are tests/unit/test_claims_sensitivity.py)."""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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
