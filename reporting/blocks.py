"""The data model of the README blocks (reporting/report.py writes them, reporting/tables.py
declares them): a block, the run folders it reads, and its tolerance on another machine
fingerprint (reporting/report.py's docstring explains the rule)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Source:
    """A run folder a README cites: where it is (under the results root) and what makes it."""
    folder: str                 # e.g. "DR-IS/static/demo"
    command: str                # the command that makes it (from the repository root)
    demo: bool = False          # made by `make demo` (deterministic, checked in CI)


@dataclass(frozen=True)
class Tol:
    """How far one kind of number may move on another machine fingerprint (module docstring)."""
    atol: float = 0.0           # in the number's own unit
    rtol: float = 0.0           # of the larger of the two magnitudes
    binomial: int = 0           # a proportion of this many independent draws: + k sqrt(p(1-p)/N) + 1/N
    exact: bool = False         # the same text (a count the seed fixes)
    n: int = 0                  # seeds behind an 'm ± sd' number, where they differ from the block's n


@dataclass(frozen=True)
class Tolerance:
    """A demo block's comparison on another fingerprint.  `rules` pick a Tol by the number's
    context (other numbers shown as '#'): in a markdown table 'LINE ABOVE THE TABLE :: COLUMN
    HEADER', else its line with the number as '@' ('Collapsed chains (...): @ of #.'); the first
    rule whose regex matches (re.search) wins, else `default`.  The defaults (nothing but half a
    printed unit for a bare number) make an undeclared block strict, not lax."""
    n: int = 3                  # seeds (replicates) behind each 'm ± sd' cell
    k: float = 4.0              # standard errors of a difference allowed (module docstring)
    default: Tol = Tol()
    rules: tuple = ()           # ((regex, Tol), ...)

    def tol_for(self, context: str) -> Tol:
        return next((t for rx, t in self.rules if re.search(rx, context)), self.default)


@dataclass(frozen=True)
class Block:
    name: str
    readme: str
    sources: tuple              # Source objects, the first the main one
    render: Callable            # render(*run folder paths) -> markdown
    tol: Tolerance = Tolerance()   # demo blocks: the comparison on another machine fingerprint

    @property
    def demo(self) -> bool:
        return all(s.demo for s in self.sources)

    def marker_sources(self) -> str:
        return ", ".join(f"results/{s.folder}" for s in self.sources)
