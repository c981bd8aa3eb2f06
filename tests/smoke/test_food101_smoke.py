"""islab/features.py pieces and DR-IS/food101.py through its real CLI on the GENERATED stand-in
(--fake: a few classes of tiny images, untrained networks, no download)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from islab import features
from islab.data import prepare_batch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "DR-IS" / "food101.py"
TINY = ["--fake", "--fake-classes", "3", "--fake-per-class", "10", "--image-size", "32",
        "--target-arch", "resnet18", "--epochs", "1", "--seeds", "0", "--alpha", "0.5",
        "--probe-epochs", "2", "--probe-snapshot", "1", "--noise", "clean,targeted:0.2", "--quiet"]


def cli(*args, root, env=None):
    return subprocess.run([sys.executable, str(SCRIPT), *args, "--results-root", str(root)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)


def test_feature_dataset_round_trip_through_prepare_batch():
    rng = np.random.default_rng(0)
    train_f = rng.normal(3.0, 2.0, size=(50, 6)).astype(np.float32)
    test_f = rng.normal(3.0, 2.0, size=(20, 6)).astype(np.float32)

    def blank(n):
        return features.Split(torch.zeros(n, 3, 4, 4, dtype=torch.uint8), torch.arange(n) % 3)

    ds_img = features.Dataset("img", blank(50), blank(20), 3, (3, 4, 4), features.IMAGENET_MEAN,
                              features.IMAGENET_STD, "none")
    fds = features.feature_dataset(train_f, test_f, ds_img, "toy")
    assert fds.input_shape == (1, 6, 1) and fds.train.x.dtype == torch.uint8 and fds.augment == "none"
    z = (train_f - train_f.mean(0)) / (train_f.std(0) + 1e-6)
    back = prepare_batch(fds, fds.train.x, train=False).view(50, 6).numpy()
    inside = np.abs(z) <= features.Z_CLIP
    # 8-bit grid of step 2Z/255: rounding error at most half a step
    assert np.abs(back - z)[inside].max() <= features.Z_CLIP / 255 + 1e-6
    assert torch.equal(fds.train.y, ds_img.train.y)


def test_partial_finetune_trains_only_layer4_and_fc():
    model = features.build_target("resnet18", 5, seed=0, device="cpu", pretrained=False)
    model.train()
    assert not model.frozen.training and model.layer4.training       # frozen BN keeps its statistics
    x = torch.randn(2, 3, 32, 32)
    logits, h = model.forward_with_features(x)
    assert logits.shape == (2, 5) and h.shape == (2, 512)
    logits.sum().backward()
    assert all(p.grad is None for p in model.frozen.parameters())
    assert all(p.grad is not None for p in model.layer4.parameters()) and model.fc.weight.grad is not None
    # the new fc comes from the seed's init stream
    same = features.build_target("resnet18", 5, seed=0, device="cpu", pretrained=False)
    other = features.build_target("resnet18", 5, seed=1, device="cpu", pretrained=False)
    assert torch.equal(same.fc.weight, model.fc.weight) and not torch.equal(other.fc.weight, model.fc.weight)


@pytest.mark.parametrize("name,dim", [("resnet18", 512), ("mobilenet_v3_small", 1024),
                                      ("efficientnet_b0", 1280)])
def test_backbone_penultimate_dims(name, dim):
    with torch.no_grad():
        out = features.build_backbone(name, pretrained=False)(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, dim)


def test_missing_weights_message_names_file_and_folder(tmp_path):
    with pytest.raises(features.PretrainedMissing, match="resnet18-f37072fd.pth"):
        features.check_weights(["resnet18"], weights_dir=tmp_path)


def test_cli_fake_smoke_resume_and_bad_inputs(tmp_path):
    root, cache = tmp_path / "res", tmp_path / "cache"
    args = [*TINY, "--cache-dir", str(cache), "--name", "t"]
    r = cli(*args, root=root)
    assert r.returncode == 0, r.stderr[-2000:]
    run = root / "DR-IS" / "food101" / "t"
    for f in ("res.txt", "results.csv", "config.json", "accuracy.png", "scores-targeted0.2.npz",
              "labels-clean.npz"):
        assert (run / f).exists(), f
    df = pd.read_csv(run / "results.csv")
    fin = df[df["epoch"].isna()]
    assert set(fin["method"]) == {"random", "dris"} and set(fin["config"]) == {"clean", "targeted0.2"}
    cis = fin[(fin.metric == "corruption_in_subset") & (fin.config == "targeted0.2")]["value"]
    assert len(cis) == 2 and cis.between(0, 1).all()
    assert np.isclose(fin[(fin.metric == "kept_fraction")]["value"], 0.5).all()
    assert "FAKE GENERATED STAND-IN" in (run / "res.txt").read_text()
    assert len(list(cache.glob("features-fake_food101-*.npz"))) == 3      # one cache file per backbone

    r2 = cli(*args, "--resume", root=root)
    assert r2.returncode == 0, r2.stderr[-2000:]
    log = (run / "log.txt").read_text()
    assert log.count("done, skipped (--resume)") == 4 and "features resnet18: cached" in log

    # real mode: data present (the fake folder) but no weights in an empty torch hub -> exit 2, one line
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch_home")}
    bad_runs = [(["--data-dir", str(tmp_path / "nowhere")], "food-101"),
                (["--data-dir", str(cache / "fake-food101")], "resnet18-f37072fd.pth"),
                (["--fake", "--backbones", "vgg"], "backbone")]
    for bad, needle in bad_runs:
        r = cli(*bad, "--cache-dir", str(cache), "--name", "bad", root=root, env=env)
        assert r.returncode == 2, (bad, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr
        assert not (root / "DR-IS" / "food101" / "bad").exists()
