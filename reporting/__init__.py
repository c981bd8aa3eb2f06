"""Repository tooling, not the library: the README blocks made from run folders (report.py with
tables.py, its generators, and blocks.py, their data model: `make report`, `make report-check`), the
demo figures copied into docs/figures (gallery.py) and the summary `make demo` ends with (summary.py,
also the `islab-summary` command).  They read the family scripts' own table helpers (loaded by path
through islab.loader), so they live outside the islab package, which never loads a family script.
"""
