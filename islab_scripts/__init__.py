"""Console commands for the family scripts (pyproject.toml [project.scripts]): `islab-dris-static
--help` runs DR-IS/static.py as `python DR-IS/static.py --help` would.

The scripts live in folders with dashes (DR-IS/, DL-noise/, ...), which are not importable, so each
command runs its file with runpy.  The file is the repository's when this package is imported from
a checkout or an editable install (`pip install -e .`), else the copy a wheel carries under
islab_scripts/_bundled/ (`pip install .`; pyproject.toml's package-dir maps those folders there).
A package of its own, beside islab: the library never runs or imports a family script.
"""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# command -> (folder in the repository, folder in a wheel, file)
SCRIPTS = {
    "islab-dris-static": ("DR-IS", "dris", "static.py"),
    "islab-dris-online": ("DR-IS", "dris", "online.py"),
    "islab-dris-diagnostics": ("DR-IS", "dris", "diagnostics.py"),
    "islab-dris-ablations": ("DR-IS", "dris", "ablations.py"),
    "islab-dris-synthetic": ("DR-IS", "dris", "synthetic.py"),
    "islab-dris-food101": ("DR-IS", "dris", "food101.py"),
    "islab-dris-cleanlab": ("DR-IS", "dris", "cleanlab_compare.py"),
    "islab-convex-noise": ("Convex-Noise", "convex_noise", "IS-noise.py"),
    "islab-nonconvex": ("Convex-Noise", "convex_noise", "nonconvex_rr.py"),
    "islab-dl-noise": ("DL-noise", "dl_noise", "is.py"),
    "islab-dl-correlation": ("DL-correlation", "dl_correlation", "IS_01_corelations.py"),
}


def script_path(command: str) -> Path:
    folder, bundled, name = SCRIPTS[command]
    for path in (HERE.parent / folder / name, HERE / "_bundled" / bundled / name):
        if path.is_file():
            return path
    raise FileNotFoundError(f"{command}: neither {HERE.parent / folder / name} nor the installed copy "
                            f"{HERE / '_bundled' / bundled / name} exists; reinstall islab")


# what `pip install islab` brings; installed with --no-deps, a script stops at the first one missing
DEPENDENCIES = ("torch", "torchvision", "numpy", "scipy", "pandas", "matplotlib", "seaborn", "sklearn", "tqdm")


def run(command: str) -> None:
    path = script_path(command)
    sys.argv[0] = command   # --help and error lines name the command the user typed
    try:
        runpy.run_path(str(path), run_name="__main__")
    except ModuleNotFoundError as e:
        if e.name not in DEPENDENCIES:
            raise
        sys.exit(f"{command}: this Python ({sys.executable}) lacks the package {e.name!r} that the script needs: "
                 f"pip install islab with its dependencies (no --no-deps), or pip install -r requirements.txt")


def _entry(command: str):
    def main() -> None:
        run(command)
    main.__name__ = command.replace("-", "_")
    return main


# one function per command, named as in pyproject.toml: islab_scripts:dris_static, ...
for _command in SCRIPTS:
    globals()[_command[len("islab-"):].replace("-", "_")] = _entry(_command)
