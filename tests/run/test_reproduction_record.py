"""The committed REPRODUCTION.md and DR-IS/README.md's memorisation block are exactly what the
committed results of record (results-of-record/) give: a clone reproduces the report without
rerunning the study, and a hand edit of either file, or of a result file, fails here."""
from pathlib import Path

import pytest

from islab.loader import load_script

ROOT = Path(__file__).resolve().parents[2]
RECORD = ROOT / "results-of-record"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    reproduce = load_script(ROOT / "DR-IS" / "reproduce.py", "dris_reproduce_record_test")
    tmp = tmp_path_factory.mktemp("record")
    readme = tmp / "README.md"
    readme.write_text((ROOT / "DR-IS" / "README.md").read_text())
    out = tmp / "REPRODUCTION.md"
    reproduce.write_report(RECORD, out, figures_dir=tmp / "figures", readme=readme)
    return out.read_text(), readme.read_text(), tmp / "figures"


def test_reproduction_md_equals_the_record(regenerated):
    assert regenerated[0] == (ROOT / "REPRODUCTION.md").read_text(), \
        "REPRODUCTION.md differs from what results-of-record/ gives: run `python DR-IS/reproduce.py --report-only`"


def test_readme_memorisation_block_equals_the_record(regenerated):
    assert regenerated[1] == (ROOT / "DR-IS" / "README.md").read_text(), \
        "DR-IS/README.md's memorisation block differs from results-of-record/: run `python DR-IS/reproduce.py --report-only`"


def test_every_figure_the_report_shows_is_made_from_the_record(regenerated):
    made = {p.name for p in regenerated[2].glob("*.png")}
    assert "memorisation.png" in made
    for name in made:
        assert (ROOT / "docs" / "figures" / name).exists(), f"docs/figures/{name} is not committed"


def test_record_holds_only_small_text_files():
    files = [p for p in RECORD.rglob("*") if p.is_file()]
    assert files, "results-of-record/ is empty"
    allowed = {"config.json", "cmd.txt", "env.json", "results.csv", "res.txt", "README.md"}
    names = {p.name for p in files if not p.name.startswith("proxy-cost-")}   # benchmarks/proxy_cost.py --out
    assert names <= allowed, names - allowed
    assert max(p.stat().st_size for p in files) < 5_000_000
