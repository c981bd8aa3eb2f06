"""The one way to import a family script as a module.

The family folders (DR-IS/, DL-noise/, Convex-Noise/, ...) have dashes in their names and are no
packages, so a script that reuses another's functions (ablations.py runs static.py's sweep), a
benchmark and a test load it from its file.  The module is registered in sys.modules before it
runs, because dataclasses look their module up there, and it is loaded once per path and name.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path


def module_name(path) -> str:
    """A stable module name for a script file: DR-IS/static.py -> script_DR_IS_static."""
    path = Path(path)
    return "script_" + re.sub(r"\W", "_", f"{path.parent.name}_{path.stem}")


def load_script(path, name: str | None = None, fresh: bool = False):
    """The script at `path` as a module named `name` (default: module_name(path)); the module of
    an earlier call with the same path and name unless fresh=True."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"load_script: path {str(path)!r} is no file")
    name = name or module_name(path)
    mod = sys.modules.get(name)
    if not fresh and mod is not None and getattr(mod, "__file__", None) == str(path):
        return mod
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(name, None)   # no half-run module for the next caller
        raise
    return mod
