"""Argument parsing shared by every script: one-line errors with exit status 2, typed values,
and the one top-level guard every script's `if __name__ == "__main__"` goes through.

Every script builds its parser with `make_parser`, so `--help` shows each default, and invalid
input ends with one clear line on stderr and status 2 before any run folder is created.
`run_main(main)` turns what escapes `main` into one line and an exit status:
  UsageError, OSError (a path the user gave: unwritable, a file where a folder belongs, ...)  2
  Ctrl-C (SIGINT)                                                                           130
  SIGTERM (kill, Slurm preemption or time limit)                                            143
The interrupt line says how many jobs of the open run folder are finished; their job files
are kept and `--resume` continues.  Set ISLAB_TRACEBACK=1 to see the traceback instead.
Warnings raised while main() runs are shown when it ends, and dropped when it exits 2 (the
error line is the one line).  Every path flag goes through `path` ('~' expanded once), every
seed through `seed`, every float through `_number` (finite only).
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import warnings
from pathlib import Path

from islab import open_runs


class UsageError(Exception):
    """Invalid user input discovered after parsing (e.g. a missing data folder)."""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt (not caught by `except Exception`)."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints the usage block too; we want one line
        self.exit(2, f"{self.prog}: error: {message}\n")

    def format_help(self):
        """Groups in the order a user reads them: the script's own and the shared hyper-parameters
        first, how the jobs are spread (the launcher and Slurm groups) last."""
        def last(g):
            title = (g.title or "").lower()
            return title.startswith("launcher") or "slurm" in title

        kept = self._action_groups
        self._action_groups = [g for g in kept if not last(g)] + [g for g in kept if last(g)]
        try:
            return super().format_help()
        finally:
            self._action_groups = kept


def show_default(value) -> str:
    """A default as a user types it: lists as comma lists, floats without trailing zeros."""
    if isinstance(value, (list, tuple)):
        return ",".join(show_default(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class HelpFormatter(argparse.HelpFormatter):
    """--help with each default shown once, as the user would type it.

    '(default: X)' is appended unless the help text already says what the default is (it
    contains 'default'), the flag is a switch (store_true / store_false), or the default is
    None / empty (the help then says where the value comes from).  Lists print as comma lists."""

    def _format_usage(self, usage, actions, groups, prefix):
        """'usage: prog [options] POSITIONAL ...': the options are listed, grouped, below; a usage
        block naming every flag again was 25 lines of --help."""
        if usage is not None:
            return super()._format_usage(usage, actions, groups, prefix)
        positional = [a for a in actions if not a.option_strings]
        text = super()._format_usage(None, positional, [], prefix)
        head = f"{prefix or 'usage: '}{self._prog}"
        return text.replace(head, head + " [options]", 1)

    def _get_help_string(self, action):
        text = action.help or ""
        if "%(default)" in text:
            return text.replace("%(default)s", show_default(action.default)).replace("%", "%%")
        d = action.default
        if ("default" in text.lower() or d is None or d is argparse.SUPPRESS or isinstance(d, bool)
                or d == "" or d == [] or action.option_strings == [] or action.nargs == 0):
            return text.replace("%", "%%")
        return f"{text} (default: {show_default(d)})".replace("%", "%%")


def make_parser(description: str) -> OneLineParser:
    return OneLineParser(description=description, formatter_class=HelpFormatter)


def add_quick(group, quick: dict, note: str = "") -> None:
    """--quick: a tiny setting for smoke tests that changes the DEFAULTS only (parse_quick),
    so flags given explicitly still win.  `quick` maps destinations to their quick values."""
    group.add_argument("--quick", action="store_true",
                       help=f"tiny setting for smoke tests{note} (explicit flags still win): " +
                            ", ".join(f"{k}={v}" for k, v in quick.items()))


def parse_quick(parser, quick: dict, argv=None):
    """parser.parse_args(argv), reparsed with the quick defaults when --quick is given."""
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**quick)
        args = parser.parse_args(argv)
    return args


def fail(message: str, prog: str | None = None) -> None:
    """Exit with status 2 and one line: for errors found after argparse."""
    prog = prog or (sys.argv[0].rsplit("/", 1)[-1] if sys.argv else "islab")
    sys.stderr.write(f"{prog}: error: {message}\n")
    raise SystemExit(2)


def _number(kind, text, name):
    """`text` as a `kind` (int or float); a float must be finite (inf and nan are no setting)."""
    try:
        v = kind(text)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
    if kind is float and not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{name} must be a finite number, got {text!r}")
    return v


def finite_float(text: str) -> float:
    """Any finite number (no inf, no nan)."""
    return _number(float, text, "value")


SEED_LIMIT = 2 ** 32   # seeds are integers in [0, 2^32): numpy's SeedSequence words, torch's manual_seed


def seed(text: str) -> int:
    """argparse type of every seed flag (--seed, --seeds items, --noise-seed)."""
    v = _number(int, text, "seed")
    if not 0 <= v < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"a seed must be an integer in [0, 2^32), got {text}")
    return v


def rate(text: str) -> float:
    """A corruption rate in [0, 1)."""
    v = _number(float, text, "rate")
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"rate must lie in [0, 1), got {text}")
    return v


def fraction(text: str) -> float:
    """A keep fraction in (0, 1]."""
    v = _number(float, text, "fraction")
    if not 0.0 < v <= 1.0:
        raise argparse.ArgumentTypeError(f"fraction must lie in (0, 1], got {text}")
    return v


def unit_interval(text: str) -> float:
    """A mixing weight in [0, 1]."""
    v = _number(float, text, "value")
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"value must lie in [0, 1], got {text}")
    return v


# torch multiplies the float32 parameters by the learning rate and the weight decay: a coefficient
# beyond float32's range is finite here but makes the first SGD step raise inside torch
MAX_COEFFICIENT = 3.4028234663852886e38   # float32's largest finite value


def _coefficient(text: str, what: str, zero_ok: bool) -> float:
    v = _number(float, text, what)
    if not (v >= 0 if zero_ok else v > 0):
        raise argparse.ArgumentTypeError(f"{what} must be {'>= 0' if zero_ok else '> 0'}, got {text}")
    if v > MAX_COEFFICIENT:
        raise argparse.ArgumentTypeError(f"{what} {text} is beyond float32's range (max {MAX_COEFFICIENT:.3g}), "
                                         "the type of the parameters it multiplies")
    return v


def learning_rate(text: str) -> float:
    """A learning rate: > 0 and within float32's range (MAX_COEFFICIENT)."""
    return _coefficient(text, "learning rate", zero_ok=False)


def weight_decay(text: str) -> float:
    """A weight-decay coefficient: >= 0 and within float32's range (MAX_COEFFICIENT)."""
    return _coefficient(text, "weight decay", zero_ok=True)


def positive_float(text: str) -> float:
    v = _number(float, text, "value")
    if not v > 0:
        raise argparse.ArgumentTypeError(f"value must be > 0, got {text}")
    return v


def nonnegative_float(text: str) -> float:
    v = _number(float, text, "value")
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"value must be >= 0, got {text}")
    return v


def positive_int(text: str) -> int:
    v = _number(int, text, "value")
    if v <= 0:
        raise argparse.ArgumentTypeError(f"value must be a positive integer, got {text}")
    return v


def nonnegative_int(text: str) -> int:
    v = _number(int, text, "value")
    if v < 0:
        raise argparse.ArgumentTypeError(f"value must be a non-negative integer, got {text}")
    return v


def check_choices(values, allowed, what: str) -> None:
    """Fail with one line if any of `values` is not in `allowed` (for comma lists)."""
    bad = [v for v in values if v not in allowed]
    if bad:
        fail(f"unknown {what} {bad[0]!r}; choose from {', '.join(allowed)}")


def path(text: str) -> str:
    """argparse type of every path flag: not empty, '~' expanded here once (a path given quoted or
    as --flag=~/x reaches us unexpanded; every later use then sees the same home folder, never a
    literal './~' folder)."""
    if not str(text).strip():
        raise argparse.ArgumentTypeError("empty path")
    return os.path.expanduser(str(text))


def output_file(text: str) -> str:
    """argparse type of a file written at the end of a long run (--out): checked now, so a path
    that cannot be written fails before the work, not after it (nothing is created here)."""
    p = Path(path(text)).absolute()
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{p} is a folder; give a file name")
    have = next(a for a in p.parents if a.exists())   # the nearest ancestor there (made when written)
    if not have.is_dir():
        raise argparse.ArgumentTypeError(f"{have} is a file, so {p} cannot be written")
    if not os.access(p if p.exists() else have, os.W_OK):
        raise argparse.ArgumentTypeError(f"{p if p.exists() else have} is not writable")
    return str(p)


def read_folder(text: str) -> str:
    """argparse type of a folder that is only read (a report's --results-root): a path (see `path`)
    that is not a file (a missing one reads as empty)."""
    p = path(text)
    if os.path.exists(p) and not os.path.isdir(p):
        raise argparse.ArgumentTypeError(f"{p} is a file, not a folder")
    return p


def folder(text: str) -> str:
    """argparse type of a folder flag (--results-root, --cache-dir, --out): a path (see `path`)."""
    return path(text)


def split_items(text) -> list[str]:
    """The stripped items of a comma list; an empty list or an empty item raises ValueError
    (so '', '0,,0.1' and '0.1,' are refused, never silently shortened)."""
    items = [t.strip() for t in str(text).split(",")]
    if items == [""]:
        raise ValueError("empty list")
    if "" in items:
        raise ValueError(f"empty item in {text!r}")
    return items


def comma_list(kind=str, unique: bool = False):
    """argparse type: a comma list whose items are parsed (and checked) by `kind`; `unique`
    drops repeats (keeping the order).  Empty lists and empty items are errors."""
    def parse(text):
        try:
            items = split_items(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        values = [kind(t) for t in items]
        return list(dict.fromkeys(values)) if unique else values
    return parse


def parse_list(text, what: str, kind=str, unique: bool = False) -> list:
    """A comma list checked after argparse (exit 2 with one line naming `what`, e.g. '--seeds')."""
    try:
        return comma_list(kind, unique)(text)
    except (argparse.ArgumentTypeError, ValueError) as e:
        fail(f"{what}: {e}")


# ---------------------------------------------------------------- the top-level guard


def _on_sigterm(signum, frame):
    raise Terminated()


def guarded(main, argv=None, signals: bool = True) -> int:
    """Run main(argv) and return the exit status (see the module doc); one line on stderr for
    every failure that is not a bug in the code."""
    prog = (sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "islab")
    if signals:
        signal.signal(signal.SIGTERM, _on_sigterm)
    show = os.environ.get("ISLAB_TRACEBACK") == "1"
    mark = len(open_runs.OPEN)   # run folders opened by this main() come after
    held, shown = _hold_warnings()
    status = 1
    try:
        status = main(argv)
        _print_run_folder(mark)
        _close(mark)
        status = status if isinstance(status, int) and not isinstance(status, bool) else 0
        return status
    except SystemExit as e:   # argparse and fail() have printed their line
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        _discard_fresh(mark) if code == 2 else _close(mark)
        status = code
        return code
    except (KeyboardInterrupt, Terminated) as e:
        if show:
            raise
        sys.stderr.write(f"{prog}: {open_runs.interrupt_line()}\n")
        _close(mark)
        return 130 if isinstance(e, KeyboardInterrupt) else 143
    except (UsageError, OSError) as e:
        if show:
            raise
        text = str(e) if isinstance(e, UsageError) else _os_error_line(e)
        sys.stderr.write(f"{prog}: error: {' '.join(text.split())}\n")
        _discard_fresh(mark)
        status = 2
        return 2
    except BaseException:
        _close(mark)
        raise
    finally:
        _release_warnings(held, shown, keep=status != 2 or show)


def _hold_warnings():
    """Warnings (numpy's RuntimeWarnings, ...) raised while main() runs are held back: shown after
    it when it succeeds or fails with a bug, dropped when it exits 2 -- the one error line says
    what is wrong, and a warning printed before it (e.g. an overflow while checking a setting)
    would be a second line."""
    held, shown = [], warnings.showwarning

    def hold(message, category, filename, lineno, file=None, line=None):
        held.append((message, category, filename, lineno, file, line))

    warnings.showwarning = hold
    return held, shown


def _release_warnings(held, shown, keep: bool) -> None:
    warnings.showwarning = shown
    if keep:
        for w in held:
            shown(*w)


def _print_run_folder(mark: int) -> None:
    """The last line of every finished script, --quiet or not and in a pipe too: the run folder
    it wrote (the outermost one main() opened)."""
    if len(open_runs.OPEN) > mark:
        print(f"run folder: {open_runs.OPEN[mark].path}", flush=True)


def _discard_fresh(mark: int) -> None:
    """Bad input found after a run folder was made: remove it if it holds nothing (open_runs.discard_fresh)."""
    open_runs.discard_fresh(mark)


def _close(mark: int) -> None:
    open_runs.close_since(mark)


def _os_error_line(e: OSError) -> str:
    where = f": {e.filename}" if getattr(e, "filename", None) else ""
    return f"{e.strerror or type(e).__name__}{where}" if e.strerror else (str(e) or type(e).__name__)


def run_main(main) -> None:
    """`if __name__ == "__main__": cli.run_main(main)` in every script."""
    status = guarded(main)
    sys.stdout.flush()
    raise SystemExit(status)
