"""Files read back instead of computed again carry a SHA-256 (islab.runs.intact): a proxy cache
entry, the cross-validated probabilities and the online run's irreducible-loss file with one
byte flipped is moved aside with one warning naming it and computed again, with the numbers of
the undamaged run.  The old code had no checksum: a flip the zip CRC catches was rebuilt without
a word (the damaged file overwritten, nothing said), one it misses (headers, member names; the
CRC of a member is only checked once it is read to its end) was read as it was."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import forget_jobs, job_files

from islab import proxies, runs
from islab.data import load_dataset
from islab.train import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def flip_byte(path) -> None:
    """Flip one bit of the byte in the middle of `path`, in place (its name and size unchanged)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def ds():
    return load_dataset("digits", train_size=200, seed=0)


CFG = TrainConfig(epochs=2, batch_size=64, lr=0.05)


def test_a_flipped_byte_in_a_proxy_cache_entry_is_moved_aside_and_the_proxy_trained_again(ds, tmp_path):
    y = ds.train.y.numpy()
    fresh, acc = proxies.train_proxy(ds, y, "mlp", 3, CFG, 1, cache_dir=tmp_path)
    [entry] = tmp_path.glob("*.npz")
    flip_byte(entry)
    warned = []
    again, acc2 = proxies.train_proxy(ds, y, "mlp", 3, CFG, 1, cache_dir=tmp_path, log=warned.append)
    assert acc2 == acc and all(np.array_equal(again[k], fresh[k]) for k in proxies.STAT_NAMES)
    [aside] = tmp_path.glob(entry.name + ".corrupt-*")
    bad = [w for w in warned if w.startswith("warning:")]
    assert len(bad) == 1 and str(entry) in bad[0] and aside.name in bad[0] and "SHA-256 mismatch" in bad[0]
    assert any("trained" in w for w in warned)                      # computed again, not read
    assert runs.intact(entry)                                         # and recorded again


def test_a_cache_entry_without_its_digest_is_not_trusted(ds, tmp_path, capsys):
    y = ds.train.y.numpy()
    fresh, _ = proxies.train_proxy(ds, y, "linear", 0, CFG, 1, cache_dir=tmp_path)
    [entry] = tmp_path.glob("*.npz")
    runs.digest_file(entry).unlink()
    again, _ = proxies.train_proxy(ds, y, "linear", 0, CFG, 1, cache_dir=tmp_path)
    assert all(np.array_equal(again[k], fresh[k]) for k in proxies.STAT_NAMES)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no SHA-256 recorded" in err[0] and str(entry) in err[0]


def test_cross_validated_probabilities_are_verified_too(ds, tmp_path):
    y = ds.train.y.numpy()
    ref = proxies.out_of_sample_probs(ds, y, ["linear"], [0], CFG, 2, 0, cache_dir=tmp_path)
    entry = sorted(tmp_path.glob("*.npz"))[0]
    flip_byte(entry)
    warned = []
    got = proxies.out_of_sample_probs(ds, y, ["linear"], [0], CFG, 2, 0, cache_dir=tmp_path, log=warned.append)
    assert np.array_equal(got, ref)
    assert sum(w.startswith("warning:") and str(entry) in w for w in warned) == 1


# ---------------------------------------------------------------- the online run folder's irreducible-loss file

ONLINE = ["--train-size", "100", "--epochs", "1", "--target", "linear", "--proxies", "linear,mlp",
          "--proxy-epochs", "1", "--snapshot-epoch", "1", "--irreducible-model", "linear",
          "--irreducible-epochs", "1", "--seeds", "0", "--noise", "clean", "--methods", "rho_approx",
          "--device", "cpu", "--name", "irr"]


def online(tmp_path, *extra):
    cmd = [sys.executable, str(ROOT / "DR-IS" / "online.py"), *ONLINE, "--results-root", str(tmp_path / "res"),
           "--cache-dir", str(tmp_path / "cache"), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"})


def test_a_flipped_byte_in_the_irreducible_loss_file_is_detected_on_resume(tmp_path):
    assert online(tmp_path).returncode == 0
    folder = tmp_path / "res" / "DR-IS" / "online" / "irr"
    irr = folder / "irreducible-clean.npz"
    before = {json.dumps(k): json.loads(p.read_text())["rows"] for p, k in job_files(folder).items()}
    flip_byte(irr)
    assert forget_jobs(folder, lambda k: True) == 1
    r = online(tmp_path, "--resume")
    assert r.returncode == 0, r.stderr
    after = {json.dumps(k): json.loads(p.read_text())["rows"] for p, k in job_files(folder).items()}
    strip = lambda d: {k: [x for x in v if "second" not in x["metric"]] for k, v in d.items()}  # noqa: E731
    assert strip(after) == strip(before)                              # the numbers of the undamaged run
    [aside] = folder.glob("irreducible-clean.npz.corrupt-*")
    log = (folder / "log.txt").read_text()
    assert log.count(f"warning: file {irr} is unusable (SHA-256 mismatch): moved to {aside.name}") == 1
    assert runs.intact(irr)
