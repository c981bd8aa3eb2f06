"""Copy the benchmark result files into benchmarks/README.md (numbers are never typed there).

Each block of the README between
    <!-- result: results/NAME.txt -->
    <!-- end result -->
is replaced by the content of benchmarks/results/NAME.txt in a code fence.

    python benchmarks/readme.py           # rewrite the blocks
    python benchmarks/readme.py --check   # exit 1 if the README differs from the result files

The check compares two committed files and computes nothing, so unlike the `make demo` tables
(reporting/report.py) it gives the same answer on every machine: the timings in benchmarks/results/
are measured once by `make bench` and committed, never re-measured in CI.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # standalone: find islab

from islab import cli  # noqa: E402
from islab.runs import publish_text  # noqa: E402

README = HERE / "README.md"
BLOCK = re.compile(r"(<!-- result: (?P<file>[^ ]+) -->\n)(?P<body>.*?)(<!-- end result -->)", re.S)


def render(text: str) -> str:
    def fill(m):
        path = HERE / m.group("file")
        body = path.read_text() if path.is_file() else f"(missing: {m.group('file')})\n"
        return f"{m.group(1)}```\n{body}```\n{m.group(4)}"

    return BLOCK.sub(fill, text)


def main(argv=None):
    p = cli.make_parser("Rewrite (or check) the result blocks of benchmarks/README.md from benchmarks/results/.")
    p.add_argument("--check", action="store_true", help="exit 1 when the README differs from the results; write nothing")
    args = p.parse_args(argv)
    text = README.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print("benchmarks/README.md is out of date with benchmarks/results/: "
                  "run python benchmarks/readme.py", file=sys.stderr)
            return 1
        return 0
    publish_text(README, new)
    return 0


if __name__ == "__main__":
    cli.run_main(main)   # an OSError (disk full, file-size limit) exits 2 with one line naming the file
