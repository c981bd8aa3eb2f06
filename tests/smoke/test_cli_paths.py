"""'~' in a path flag is expanded once, by the flag's type (islab.cli.path): a quoted '~/x' or
--flag=~/x makes the folder under $HOME, never a literal './~' folder beside the command."""
from pathlib import Path

import pytest

from islab import cli
from islab.loader import load_script

ROOT = Path(__file__).resolve().parents[2]


def _load(rel):
    return load_script(ROOT / rel, "paths_" + Path(rel).stem)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path / "home"


def test_path_types_expand_the_home_folder(home):
    assert cli.path("~/x") == str(home / "x") and cli.folder("~") == str(home)
    assert cli.path("a/~/b") == "a/~/b"   # only a leading '~' means home


def test_results_root_and_cache_dir_with_a_tilde(home, tmp_path):
    static = _load("DR-IS/static.py")
    argv = ["--train-size", "100", "--epochs", "1", "--target", "linear", "--proxies", "linear,mlp",
            "--proxy-epochs", "1", "--snapshot-epoch", "1", "--attacker", "linear", "--seeds", "0", "--quiet",
            "--device", "cpu", "--noise", "clean", "--methods", "random", "--name", "t",
            "--cache-dir=~/c", "--results-root", "~/res", "--data-dir", "~/data"]
    args = static.parse_args(argv)
    assert (args.cache_dir, args.results_root, args.data_dir) == (str(home / "c"), str(home / "res"),
                                                                   str(home / "data"))
    assert cli.guarded(static.main, argv, signals=False) == 0
    assert (home / "res" / "DR-IS" / "static" / "t" / "jobs").is_dir() and (home / "c").is_dir()
    assert list((tmp_path / "cwd").iterdir()) == []   # no literal ./~ anywhere


def test_the_convex_script_results_root(home, tmp_path):
    convex = _load("Convex-Noise/IS-noise.py")
    assert cli.guarded(convex.main, ["--quick", "--results-root", "~/r", "--name", "q"], signals=False) == 0
    assert (home / "r" / "Convex-Noise" / "q" / "config.json").is_file()
    assert list((tmp_path / "cwd").iterdir()) == []
