"""Your own data set through the scripts' --dataset (issue 26): npz:PATH (x_train, y_train, x_test,
y_test) and folder:PATH (a torchvision ImageFolder tree), run through the real CLI of DR-IS/static.py
on tiny generated data; bad input exits 2 with one line and no run folder."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from islab.data import load_dataset

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "DR-IS" / "static.py"
TINY = ["--epochs", "1", "--target", "linear", "--proxies", "linear,mlp", "--proxy-epochs", "2",
        "--snapshot-epoch", "1", "--seeds", "0", "--noise", "clean", "--methods", "random,dris", "--quiet"]


def blobs(n: int, seed: int, float_inputs: bool = False):
    """3 classes of 8x8 one-channel images: a bright square in a class-specific corner, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.integers(0, 60, (n, 8, 8))
    for c, (r, q) in enumerate([(0, 0), (0, 4), (4, 0)]):
        x[y == c, r:r + 4, q:q + 4] += 180
    x = x.astype(np.uint8)
    return (x.astype(np.float32)[:, None] / 255 if float_inputs else x), y


def write_npz(path: Path, float_inputs: bool = False) -> Path:
    (xtr, ytr), (xte, yte) = blobs(150, 0, float_inputs), blobs(60, 1, float_inputs)
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return path


def static(*args, root):
    return subprocess.run([sys.executable, str(STATIC), *TINY, *args, "--results-root", str(root)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"})


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    """DR-IS/static.py on a generated .npz, run once, in the folder `make demo` would use."""
    tmp = tmp_path_factory.mktemp("own")
    data = write_npz(tmp / "mine.npz")
    r = static("--dataset", f"npz:{data}", "--name", "demo", root=tmp / "res")
    assert r.returncode == 0, r.stderr[-2000:]
    return tmp / "res", data, r


def test_npz_data_through_the_static_cli(own_run):
    root, data, r = own_run
    run = root / "DR-IS" / "static" / "demo"
    assert r.stdout.strip().splitlines()[-1] == f"run folder: {run}"
    df = pd.read_csv(run / "results.csv")
    acc = df[(df["metric"] == "test_acc")]
    assert set(acc["method"]) == {"random", "dris"} and acc["value"].notna().all()
    assert f"npz:{data}" in (run / "res.txt").read_text()


def test_demo_summary_reads_the_run_folders(own_run):
    """`python -m islab.summary` (the end of make demo): one line per family, the numbers from the
    results, the folders that are missing, where the figures are."""
    from reporting.tables import static_final

    root, _, _ = own_run
    r = subprocess.run([sys.executable, "-m", "reporting.summary", "--results-root", str(root)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    fin = static_final(root / "DR-IS" / "static" / "demo")
    dris = fin[fin["method"] == "dris"]["test_acc"]
    assert f"  DR-IS static: keep 0.3, test acc %: clean: dris {dris.iloc[0]:.2f}, random " in r.stdout
    assert f"  DR-IS online: no run folder {root / 'DR-IS/online/demo'} (make demo makes it)" in lines
    assert len([x for x in lines if x.startswith("  ") and ": " in x]) >= 8
    assert f"  {root / 'DR-IS/static/demo'}/*.png (" in r.stdout and lines[-1].endswith("make report")


def test_npz_loader_images_and_float_inputs(tmp_path):
    ds = load_dataset(f"npz:{write_npz(tmp_path / 'a.npz')}")
    assert ds.num_classes == 3 and ds.input_shape == (1, 8, 8) and len(ds.train) == 150 and len(ds.test) == 60
    assert ds.train.x.dtype.is_floating_point is False and ds.mean is not None and ds.augment == "none"
    ds = load_dataset(f"npz:{write_npz(tmp_path / 'b.npz', float_inputs=True)}", train_size=100)
    assert ds.mean is None and ds.train.x.dtype.is_floating_point and len(ds.train) == 100


def test_image_folder_data(tmp_path):
    from PIL import Image

    for split, (x, y) in (("train", blobs(30, 0)), ("test", blobs(12, 1))):
        for i, (img, c) in enumerate(zip(x, y)):
            folder = tmp_path / "imgs" / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(folder / f"{i}.png")
    ds = load_dataset(f"folder:{tmp_path / 'imgs'}")
    assert ds.num_classes == 3 and ds.input_shape == (3, 8, 8) and len(ds.train) == 30 and len(ds.test) == 12   # RGB


@pytest.mark.parametrize("dataset,match", [
    ("mydata", "unknown data set 'mydata'.*npz:PATH.*folder:PATH"),
    ("npz:{tmp}/none.npz", "none.npz: no such file"),
    ("npz:{tmp}/bad.npz", "missing array\\(s\\) y_test"),
    ("folder:{tmp}", "no train/ sub-folder"),
])
def test_bad_own_data_exits_2_with_one_line_and_no_folder(tmp_path, dataset, match):
    import re

    np.savez(tmp_path / "bad.npz", x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.zeros(4, int),
             x_test=np.zeros((2, 8, 8), np.uint8))
    r = static("--dataset", dataset.format(tmp=tmp_path), "--name", "bad", root=tmp_path / "res")
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(match, lines[0]), r.stderr
    assert not (tmp_path / "res" / "DR-IS" / "static" / "bad").exists()
