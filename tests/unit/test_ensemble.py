"""islab.ensemble: K proxies trained as one batched model equal K separate islab.train runs.

The tolerance (stated once, here), on tiny runs (300 digits examples, 2 epochs, ~10 steps):
  * Models without convolutions (linear, mlp, mlp2x256): NONE.  Every number -- epoch losses,
    test accuracy and loss, the eval-mode snapshots (loss, EL2N, gradient-norm bound, margin,
    correct), AUM, forgetting -- is bit for bit that of the separate runs: each member's matrix
    products are the very calls a separate layer makes (islab.ensemble.StackedLinear), every
    other op is per example or per element.  (Measured also on all 1437 digits and on 3000
    generated 28x28 images, 3 epochs, 1 and 2 threads: identical.)
  * Convolutional models (cnn: grouped convolutions, BatchNorm over K*C channels, NHWC): the
    convolution kernels sum in another order, so: continuous statistics within 1e-4 absolute +
    1e-4 relative, epoch losses within 1e-4 relative, correct flags and forgetting counts
    identical on >= 99 % of the examples, test accuracy within one test example.  Measured on
    this run: <= 3e-7 relative, flags and accuracy identical.  SGD amplifies such rounding
    differences over many steps exactly as it amplifies those between 1 and 2 torch threads of
    one sequential run (all 1437 digits, cnn, 3 epochs: gradient-norm bounds up to 0.040 apart
    batched vs sequential, 0.057 apart 1 vs 2 threads): long conv runs agree statistically.
Streams are checked by the exact cases: init (bit for bit for every model), data order and
augmentation (a wrong crop or order changes the numbers).
"""
from dataclasses import replace

import numpy as np
import pytest
import torch

from islab import ensemble, proxies
from islab.data import load_dataset
from islab.train import TrainConfig, new_model, train

SEEDS = [11, 12, 13]
TIGHT = dict(atol=1e-4, rtol=1e-4)
CONTINUOUS = ("loss", "el2n", "gradnorm", "margin")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("digits", train_size=300, seed=0)


def cfg(**kw):
    base = dict(epochs=2, batch_size=64, lr=0.05, weight_decay=5e-4, snapshot_epochs=(1, 2),
                track_presentations=True)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("name", ["linear", "mlp", "cnn", "cnn_wide", "resnet20", "pooled_cnn", "mlp2x256"])
def test_fold_is_exactly_the_members_init_and_forward(name, tiny):
    ds = tiny if name != "resnet20" else load_dataset("fake_cifar", train_size=8)
    members = [new_model(name, ds, s, "cpu") for s in SEEDS]
    folded = ensemble.fold(members)
    for k, seed in enumerate(SEEDS):
        ref = new_model(name, ds, seed, "cpu").state_dict()
        got = ensemble.unfold(folded, members[0], k).state_dict()
        assert ref.keys() == got.keys()
        assert all(torch.equal(ref[key], got[key]) for key in ref), f"member {k} init differs"
    assert ensemble.foldable(name, ds)


@pytest.mark.parametrize("name", ["vgg11_bn", "mobilenetv2_x0_5", "shufflenetv2_x0_5"])
def test_models_that_do_not_fold_are_refused(name):
    """Dropout (VGG, MobileNetV2) would draw one mask for all members; ShuffleNet's chunk and
    channel shuffle mix the members' channels.  Both keep the sequential path."""
    assert not ensemble.foldable(name, load_dataset("fake_cifar", train_size=8))


def compare(seq, bat, exact: bool):
    """Each batched member against its sequential run, with the tolerance of the module doc."""
    for a, b in zip(seq, bat):
        assert not a.diverged and not b.diverged
        assert [h["epoch"] for h in a.history] == [h["epoch"] for h in b.history]
        assert a.snapshots.keys() == b.snapshots.keys() and a.snapshots
        if exact:
            for key in ("train_loss", "test_acc", "test_loss", "lr"):
                assert [h[key] for h in a.history] == [h[key] for h in b.history], key
            for epoch in a.snapshots:
                for key in a.snapshots[epoch]:
                    np.testing.assert_array_equal(b.snapshots[epoch][key], a.snapshots[epoch][key])
            np.testing.assert_array_equal(b.aum, a.aum)
            np.testing.assert_array_equal(b.forgetting, a.forgetting)
            continue
        np.testing.assert_allclose([h["train_loss"] for h in b.history], [h["train_loss"] for h in a.history],
                                   rtol=1e-4)
        assert abs(a.test_acc - b.test_acc) <= 100.0 / 360 + 1e-9   # one of the 360 test digits
        for epoch in a.snapshots:
            for key in CONTINUOUS:
                np.testing.assert_allclose(b.snapshots[epoch][key], a.snapshots[epoch][key], **TIGHT)
            assert np.mean(a.snapshots[epoch]["correct"] == b.snapshots[epoch]["correct"]) >= 0.99
        np.testing.assert_allclose(b.aum, a.aum, **TIGHT)
        assert np.mean(a.forgetting == b.forgetting) >= 0.99


def test_batched_equals_sequential_without_convolutions_with_augmentation(tiny):
    """mlp, K = 3, with per-example crops and flips (each member its own 'augment' stream)."""
    ds = replace(tiny, augment="crop_flip", crop_pad=1)
    y = ds.train.y.numpy()
    seq = [train("mlp", ds, y, cfg(), s) for s in SEEDS]
    bat = ensemble.train_ensemble("mlp", ds, y, cfg(), SEEDS)
    compare(seq, bat, exact=True)
    # the members really differ from each other (three seeds, not one run three times)
    assert not np.allclose(bat[0].snapshots[2]["loss"], bat[1].snapshots[2]["loss"], atol=1e-3)


def test_batched_equals_sequential_for_a_conv_net(tiny):
    y = tiny.train.y.numpy()
    seq = [train("cnn", tiny, y, cfg(), s) for s in SEEDS]
    bat = ensemble.train_ensemble("cnn", tiny, y, cfg(), SEEDS)
    compare(seq, bat, exact=False)


def test_a_diverged_member_stops_alone_and_is_reported(tiny, monkeypatch):
    """Member 1 starts from weights scaled by 1e30: its first epoch loss is not finite.  It is
    stopped and marked diverged at epoch 1 exactly like its sequential run; the other members
    finish with the numbers of their own sequential runs (no NaN leaks between members)."""
    y = tiny.train.y.numpy()

    def poisoned(name, ds, seed, device):
        model = new_model(name, ds, seed, device)
        if seed == SEEDS[1]:
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(1e30)
        return model

    seq_bad = train(poisoned("mlp", tiny, SEEDS[1], "cpu"), tiny, y, cfg(), SEEDS[1])
    monkeypatch.setattr(ensemble, "new_model", poisoned)
    bat = ensemble.train_ensemble("mlp", tiny, y, cfg(), SEEDS)
    assert seq_bad.diverged and bat[1].diverged and bat[1].diverged_epoch == seq_bad.diverged_epoch == 1
    assert np.isnan(bat[1].test_acc) and bat[1].snapshots == {}
    compare([train("mlp", tiny, y, cfg(), s) for s in (SEEDS[0], SEEDS[2])], [bat[0], bat[2]], exact=True)
    for res in (bat[0], bat[2]):
        assert all(np.isfinite(v).all() for v in res.snapshots[2].values())


def test_proxy_ensemble_batches_homogeneous_groups_and_shares_the_cache(tiny, tmp_path):
    y = tiny.train.y.numpy()
    c = cfg(snapshot_epochs=())
    logs = []
    names, seeds = ["mlp", "linear", "mlp", "mlp"], [1, 2, 3, 4]
    ens = proxies.proxy_ensemble(tiny, y, names, seeds, c, 2, cache_dir=tmp_path, log=logs.append)
    assert sum("batched with 2 other" in m for m in logs) == 3 and sum("(sequential)" in m for m in logs) == 1
    assert len(list(tmp_path.glob("*.npz"))) == 4
    # the sequential path reads the files the batched one wrote (one file per proxy), and its
    # own numbers agree within the tolerance above
    logs.clear()
    again = proxies.proxy_ensemble(tiny, y, ["mlp", "mlp"], [3, 1], c, 2, cache_dir=tmp_path, log=logs.append,
                                   batched=False)
    assert all("cached" in m for m in logs) and len(logs) == 2
    np.testing.assert_array_equal(again["loss"], ens["loss"][[2, 0]])
    fresh = proxies.proxy_ensemble(tiny, y, names, seeds, c, 2, batched=False)
    for s in proxies.STAT_NAMES:   # mlp and linear: exact (module doc)
        np.testing.assert_array_equal(ens[s], fresh[s])
    np.testing.assert_array_equal(ens.test_acc, fresh.test_acc)


def test_proxy_ensemble_raises_for_a_diverged_batched_member_after_caching_the_others(tiny, tmp_path,
                                                                                     monkeypatch):
    real = ensemble.new_model

    def poisoned(name, ds, seed, device):
        model = real(name, ds, seed, device)
        if seed == 2:
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(1e30)
        return model

    monkeypatch.setattr(ensemble, "new_model", poisoned)
    with pytest.raises(RuntimeError, match="proxy mlp seed 2 diverged at epoch 1"):
        proxies.proxy_ensemble(tiny, tiny.train.y.numpy(), ["mlp"] * 3, [1, 2, 3], cfg(snapshot_epochs=()), 1,
                               cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_gpu_form_of_stacked_linear_matches_and_takes_autocast():
    """StackedLinear's CUDA form (one baddbmm) computes what the exact CPU form does, and runs
    under bf16 autocast (checked with CPU autocast: no GPU in the tests)."""
    torch.manual_seed(0)
    layers = [torch.nn.Linear(6, 4) for _ in range(3)]
    stacked = ensemble.StackedLinear(layers)
    x = torch.randn(5, 18)
    exact = stacked(x)
    gpu_form = ensemble.batched_linear(x, stacked.weight, stacked.bias)
    torch.testing.assert_close(gpu_form, exact, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(exact[:, 4:8], layers[1](x[:, 6:12]), rtol=0, atol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = ensemble.batched_linear(x, stacked.weight, stacked.bias)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), exact, rtol=0.05, atol=0.05)
