"""`pip install -e .` into a FRESH virtual environment gives a working `import islab`.

Offline and without torch: the venv is made by the standard library (ensurepip, no download),
the install runs with --no-deps --no-build-isolation (setuptools from the venv itself, nothing
fetched), and the check needs no heavy package because `import islab` loads none (the API is
imported lazily).  What a real `pip install -e .` would then fetch is checked as declared metadata:
the requirement ranges of pyproject.toml, read back through importlib.metadata in that venv."""
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHECK = r"""
import importlib.metadata as md, json, sys
import islab, islab.cli
heavy = [m for m in ("torch", "numpy", "pandas") if m in sys.modules]
print(json.dumps({"file": islab.__file__, "version": md.version("islab"), "requires": md.requires("islab"),
                  "heavy": heavy, "public": islab.__all__, "torch_installed": bool(__import__("importlib.util").util.find_spec("torch"))}))
"""


def test_pyproject_declares_ranges_a_build_system_and_keeps_pytest_out():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["build-system"]["build-backend"] == "setuptools.build_meta"
    deps = meta["project"]["dependencies"]
    assert "torch>=2.4" in deps and not any("==" in d for d in deps)
    assert not any(d.startswith("pytest") for d in deps)
    assert any(d.startswith("pytest") for d in meta["project"]["optional-dependencies"]["dev"])
    pinned = (ROOT / "requirements.txt").read_text()
    assert "pytest" not in pinned and "cleanlab==" in pinned
    assert "pytest==" in (ROOT / "requirements-dev.txt").read_text()


def test_editable_install_into_a_fresh_venv(tmp_path):
    import venv  # noqa: F401  (the standard library's; ensurepip ships pip and, on 3.11, setuptools)

    env_dir = tmp_path / "venv"
    r = subprocess.run([sys.executable, "-m", "venv", str(env_dir)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0 and "ensurepip" in (r.stdout + r.stderr):
        pytest.skip("this Python has no ensurepip (Debian: apt-get install python3-venv)")
    assert r.returncode == 0, r.stderr
    py = env_dir / "bin" / "python"
    # The build backend, without a download: this environment's setuptools (>= 70.1 builds wheels by
    # itself; the one ensurepip bundles with 3.11 needs the separate `wheel`, and 3.12+ bundles none)
    import setuptools

    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True).stdout.strip())
    shutil.rmtree(site / "setuptools", ignore_errors=True)
    shutil.copytree(Path(setuptools.__file__).parent, site / "setuptools")
    r = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--no-index", "-e", str(ROOT)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    r = subprocess.run([str(py), "-c", CHECK], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert Path(got["file"]).resolve() == (ROOT / "islab" / "__init__.py").resolve()   # editable: this tree
    assert got["version"] == "0.1.0" and got["heavy"] == []
    assert "rank_disagreement" in got["public"] and "ImportanceSampler" in got["public"]
    requires = got["requires"]
    assert "torch>=2.4" in requires and any(r.startswith("cleanlab") and "extra" in r for r in requires)
    assert not got["torch_installed"]   # a fresh venv: the light import worked without torch


COMMANDS = ["islab-dris-static", "islab-dris-online", "islab-dris-diagnostics", "islab-dris-ablations",
            "islab-dris-synthetic", "islab-dris-food101", "islab-dris-cleanlab", "islab-convex-noise",
            "islab-nonconvex", "islab-dl-noise", "islab-dl-correlation", "islab-summary"]


def test_every_console_command_points_at_a_script():
    import islab_scripts as scripts

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert sorted(meta) == sorted(COMMANDS)
    for command in COMMANDS[:-1]:
        assert meta[command] == f"islab_scripts:{command[len('islab-'):].replace('-', '_')}"
        assert callable(getattr(scripts, meta[command].split(":")[1]))
        assert scripts.script_path(command).is_file()


def test_pip_install_into_a_fresh_venv_gives_working_commands(tmp_path):
    """`pip install .` (a wheel, not editable) into a fresh venv: the commands exist and --help works
    from another folder.  The heavy dependencies come from this environment through a .pth file (the
    install itself is --no-deps, offline)."""
    import sysconfig

    env_dir = tmp_path / "venv"
    r = subprocess.run([sys.executable, "-m", "venv", str(env_dir)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0 and "ensurepip" in (r.stdout + r.stderr):
        pytest.skip("this Python has no ensurepip (Debian: apt-get install python3-venv)")
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True).stdout.strip())
    import setuptools

    shutil.rmtree(site / "setuptools", ignore_errors=True)
    shutil.copytree(Path(setuptools.__file__).parent, site / "setuptools")
    (site / "deps-of-this-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    r = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                        str(ROOT)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for command in COMMANDS:
        assert (env_dir / "bin" / command).is_file(), command
    where = subprocess.run([str(py), "-c", "import islab_scripts as s; print(s.script_path('islab-dris-static'))"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert "/_bundled/dris/static.py" in where.stdout, where.stdout + where.stderr   # the wheel's copy
    for command in ("islab-dris-static", "islab-summary"):
        r = subprocess.run([str(env_dir / "bin" / command), "--help"], capture_output=True, text=True, timeout=300,
                           cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""})
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.startswith("usage: "), r.stdout[:200]
        assert ("DR-IS static pruning" in r.stdout and "--dataset NAME" in r.stdout) if command == "islab-dris-static" \
            else "--results-root" in r.stdout
