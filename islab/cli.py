"""Argument parsing shared by every script: one-line errors with exit status 2, typed values.

Every script builds its parser with `make_parser`, so `--help` shows each default, and invalid
input ends with one clear line on stderr and status 2 before any run folder is created.
"""
from __future__ import annotations

import argparse
import sys


class UsageError(Exception):
    """Invalid user input discovered after parsing (e.g. a missing data folder)."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints the usage block too; we want one line
        self.exit(2, f"{self.prog}: error: {message}\n")


def make_parser(description: str) -> OneLineParser:
    return OneLineParser(description=description,
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def fail(message: str, prog: str | None = None) -> None:
    """Exit with status 2 and one line: for errors found after argparse."""
    prog = prog or (sys.argv[0].rsplit("/", 1)[-1] if sys.argv else "islab")
    sys.stderr.write(f"{prog}: error: {message}\n")
    raise SystemExit(2)


def _number(kind, text, name):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None


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


def comma_list(kind):
    """argparse type: a comma-separated list whose items are parsed (and checked) by `kind`."""
    def parse(text):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("empty list")
        return [kind(t) for t in items]
    return parse
