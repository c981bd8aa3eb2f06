"""Every script's --help follows the same rules (islab.cli.HelpFormatter):

  * every option has a help text; no flag is marked "unused" (a flag a script does not use is
    not in its parser);
  * each default is printed once, as the user types it: no "(default: None)", no second
    "(default", no Python list repr;
  * every option that takes a number says its unit or range (a unit word, a range such as
    "in [0, 1)", or what it counts).

The parsers are built in-process (no training starts); `--help` through the real CLI is run
for one script to check that the parser the test reads is the one the user sees.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from islab.loader import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["Convex-Noise/IS-noise.py", "Convex-Noise/nonconvex_rr.py", "DL-correlation/IS_01_corelations.py",
           "DL-noise/is.py", "DL-noise/plot.py", "DR-IS/static.py", "DR-IS/online.py", "DR-IS/ablations.py",
           "DR-IS/diagnostics.py", "DR-IS/synthetic.py", "DR-IS/food101.py", "DR-IS/reproduce.py",
           "DR-IS/cleanlab_compare.py", "benchmarks/launcher.py"]
# what a numeric flag's help must mention (one of): a unit, a range, or what the number counts
UNIT_WORDS = ("dimensionless", "unitless", "fraction", "epoch", "example", "step", "%", "percent", "per ",
              "seed", "count", "number of", "probability", "bins", "image", "pixel", "px", "unit", "chain",
              "run", "in [", "in (", "ratio", "classes", "proxies", "threads", "size", "std", "scale",
              "coefficient", "divisor", "quantile", "seconds", "minutes", "dimension", "integer")
NUMERIC_TYPES = {"int", "float", "rate", "fraction", "unit_interval", "positive_float", "nonnegative_float",
                 "positive_int", "nonnegative_int", "holdout_size", "learning_rate", "weight_decay"}


def load(rel: str):
    path = ROOT / rel
    return load_script(path, "help_" + path.stem.replace("-", "_"))


def option_helps(parser: argparse.ArgumentParser):
    """(option strings, action, the help text as --help prints it) of every option."""
    fmt = parser._get_formatter()
    for a in parser._actions:
        if not a.option_strings or a.help == argparse.SUPPRESS or isinstance(a, argparse._HelpAction):
            continue
        yield a.option_strings, a, (fmt._expand_help(a) if a.help else "")


def numeric(action) -> bool:
    t = action.type
    if t is None:
        d = action.default
        return isinstance(d, str) and bool(re.fullmatch(r"[0-9.e,+-]+", d)) and any(c.isdigit() for c in d)
    name = getattr(t, "__name__", "")
    if name in NUMERIC_TYPES:
        return True
    cells = getattr(t, "__closure__", None) or ()   # cli.comma_list(kind): the kind is in the closure
    return any(getattr(c.cell_contents, "__name__", "") in NUMERIC_TYPES for c in cells
               if callable(getattr(c, "cell_contents", None)))


@pytest.mark.parametrize("rel", SCRIPTS)
def test_help_rules(rel):
    parser = load(rel).build_parser()
    text = parser.format_help()
    assert "unused" not in text.lower(), f"{rel}: a flag is marked unused; drop it from this parser"
    problems = []
    for opts, action, help_text in option_helps(parser):
        flag = opts[-1]
        if not help_text.strip():
            problems.append(f"{flag}: no help text")
        if help_text.count("(default") > 1 or "default: None" in help_text or "(default: )" in help_text:
            problems.append(f"{flag}: default printed twice or as None: {help_text!r}")
        if "['" in help_text or re.search(r"\(default: [\[(]", help_text):
            problems.append(f"{flag}: a Python list in the help: {help_text!r}")
        if numeric(action) and not any(w in help_text.lower() for w in UNIT_WORDS):
            problems.append(f"{flag}: a number without its unit or range: {help_text!r}")
    assert not problems, f"{rel}:\n  " + "\n  ".join(problems)


def test_help_through_the_cli():
    """The real CLI prints the same help the parser gives (one script; the others share the code)."""
    out = subprocess.run([sys.executable, str(ROOT / "DR-IS/static.py"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "--lr LR" in out.stdout and "unused" not in out.stdout
    assert "(default: 0.9)" in out.stdout   # --momentum: printed once, as typed


@pytest.mark.parametrize("rel", SCRIPTS)
def test_help_is_short_and_hides_the_launchers_own_flags(rel):
    """The usage line does not repeat every flag; --stage, --only-jobs and --run-dir (set by the
    launcher for the processes it starts) are accepted but not shown; the launcher group comes last."""
    parser = load(rel).build_parser()
    text = parser.format_help()
    usage = text.split("\n\n", 1)[0]
    assert usage.startswith("usage: ") and "[options]" in usage and len(usage.splitlines()) <= 2, usage
    known = {a.dest for a in parser._actions}
    if not {"stage", "only_jobs", "run_dir"} <= known:   # no launcher flags (islab.launch.add_args)
        return
    for flag in ("--stage", "--only-jobs", "--run-dir"):
        assert flag not in text, f"{rel}: {flag} is launcher-internal"
    titles = [line for line in text.splitlines() if line and not line.startswith(" ") and line.endswith(":")]
    assert titles[-1].startswith("launcher"), titles
