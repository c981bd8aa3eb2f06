"""The trainer and the proxy cache on the bundled digits data (CPU, a few seconds each)."""
import io

import numpy as np
import pytest
import torch

from islab import proxies, sampling
from islab.data import load_dataset
from islab.train import Sampling, TrainConfig, per_example_stats, train


@pytest.fixture(scope="module")
def ds():
    return load_dataset("digits")


def small_cfg(**kw):
    base = dict(epochs=2, batch_size=64, lr=0.05, weight_decay=5e-4)
    base.update(kw)
    return TrainConfig(**base)


def test_cnn_learns_digits(ds):
    res = train("cnn", ds, ds.train.y.numpy(), small_cfg(epochs=4), seed=0)
    assert not res.diverged
    assert res.test_acc >= 90.0, res.history
    assert len(res.history) == 4


def test_same_seed_same_numbers_other_seed_differs(ds):
    y = ds.train.y.numpy()
    a = train("mlp", ds, y, small_cfg(), seed=1)
    b = train("mlp", ds, y, small_cfg(), seed=1)
    c = train("mlp", ds, y, small_cfg(), seed=2)
    key = lambda r: [(h["train_loss"], h["test_acc"]) for h in r.history]  # noqa: E731
    assert key(a) == key(b)
    assert key(a) != key(c)


def test_subset_mode_draws_only_kept_ids_with_full_step_budget(ds):
    n = len(ds.train)
    keep = np.arange(0, n, 5)
    res = train("linear", ds, ds.train.y.numpy(), small_cfg(epochs=3, track_presentations=True), seed=0,
                sampling=Sampling(mode="subset", subset=keep))
    counts = np.isnan(res.aum)  # NaN = never presented
    assert counts[keep].sum() == 0 and counts.sum() == n - len(keep)
    # step parity: 3 epochs of ceil(N/b) steps over a 1/5 subset ~ 15 passes over it
    presented = ~counts
    assert presented.sum() == len(keep)


def test_weighted_mode_refresh_and_mass_on_corrupted(ds):
    n = len(ds.train)
    mask = np.zeros(n, dtype=bool)
    mask[:100] = True
    calls = []

    def refresh(model, epoch):
        calls.append(epoch)
        w = np.ones(n)
        w[mask] = 3.0
        return w / w.sum()

    res = train("linear", ds, ds.train.y.numpy(), small_cfg(epochs=4), seed=0, corrupt_mask=mask,
                sampling=Sampling(mode="weighted", refresh=refresh, refresh_every=2))
    assert calls == [0, 2]
    expect = 300 / (300 + n - 100)
    assert all(h["mass_corrupt"] == pytest.approx(expect) for h in res.history)
    drawn = np.mean([h["drawn_corrupt"] for h in res.history])
    assert abs(drawn - expect) < 0.05


def test_unweighted_draws_the_same_examples_with_weight_one(ds):
    # a fixed p: the draws depend only on the seed, so both runs draw the same examples; only
    # the weighted one multiplies the loss by 1/(N p) (3x mass on the first 100 -> weights != 1)
    n = len(ds.train)
    mask = np.zeros(n, dtype=bool)
    mask[:100] = True
    w = np.where(mask, 3.0, 1.0)
    p = w / w.sum()
    runs = {rw: train("linear", ds, ds.train.y.numpy(), small_cfg(epochs=2), seed=0, corrupt_mask=mask,
                      sampling=Sampling(mode="weighted", probs=p, reweight=rw)) for rw in (True, False)}
    assert [h["drawn_corrupt"] for h in runs[True].history] == [h["drawn_corrupt"] for h in runs[False].history]
    assert all(h["max_weight_drawn"] == 1.0 for h in runs[False].history)
    big = 1 / (n * p.min())   # the weight of a non-corrupted draw, > 1
    assert runs[True].history[0]["max_weight_drawn"] == pytest.approx(big, rel=1e-6)
    assert runs[True].history[0]["train_loss"] != runs[False].history[0]["train_loss"]


def test_divergence_is_recorded_not_hidden(ds):
    res = train("mlp", ds, ds.train.y.numpy(), small_cfg(epochs=3, lr=1e8), seed=0)
    assert res.diverged and res.diverged_epoch == len(res.history)


def test_checkpoint_resume_equals_uninterrupted_run(ds, tmp_path):
    y = ds.train.y.numpy()
    cfg = small_cfg(epochs=3, track_presentations=True)
    full = train("cnn", ds, y, cfg, seed=0)

    class Stop(Exception):
        pass

    def stop_after_two(msg):
        if "epoch 2/" in msg:
            raise Stop

    ck = tmp_path / "ck.pt"
    with pytest.raises(Stop):
        train("cnn", ds, y, cfg, seed=0, checkpoint=ck, log=stop_after_two)
    resumed = train("cnn", ds, y, cfg, seed=0, checkpoint=ck)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    np.testing.assert_array_equal(resumed.forgetting, full.forgetting)


def test_per_example_stats_match_autograd(ds):
    torch.manual_seed(0)
    from islab.models import build_model, last_linear

    model = build_model("mlp", ds.num_classes, ds.input_shape)
    x, y = ds.train.x[:5], ds.train.y[:5]
    st = per_example_stats(model, ds, x, y, small_cfg())
    from islab.data import prepare_batch

    lin = last_linear(model)
    for i in range(5):
        model.zero_grad()
        logits = model(prepare_batch(ds, x[i:i + 1], train=False))
        loss = torch.nn.functional.cross_entropy(logits, y[i:i + 1])
        loss.backward()
        g = torch.cat([lin.weight.grad.flatten(), lin.bias.grad])
        assert st["gradnorm"][i] == pytest.approx(g.norm().item(), rel=1e-4)
        assert st["loss"][i] == pytest.approx(loss.item(), rel=1e-5)


def test_proxy_cache_hit_key_and_truncation(ds, tmp_path):
    y = ds.train.y.numpy()
    cfg = small_cfg(epochs=2)
    logs = []
    a = proxies.proxy_ensemble(ds, y, ["linear"], [0], cfg, 1, cache_dir=tmp_path, log=logs.append)
    b = proxies.proxy_ensemble(ds, y, ["linear"], [0], cfg, 1, cache_dir=tmp_path, log=logs.append)
    assert "cached" in logs[-1]
    for s in proxies.STAT_NAMES:
        np.testing.assert_array_equal(a[s], b[s])
    # other labels -> other key -> trained again
    y2 = y.copy()
    y2[0] = (y2[0] + 1) % 10
    proxies.proxy_ensemble(ds, y2, ["linear"], [0], cfg, 1, cache_dir=tmp_path, log=logs.append)
    assert "trained" in logs[-1]
    # a truncated file is rebuilt, never trusted
    for f in tmp_path.glob("*.npz"):
        f.write_bytes(f.read_bytes()[:100])
    c = proxies.proxy_ensemble(ds, y, ["linear"], [0], cfg, 1, cache_dir=tmp_path, log=logs.append)
    assert "trained" in logs[-1]
    np.testing.assert_array_equal(a["loss"], c["loss"])


def test_noisy_labels_are_shared_and_exact(ds, tmp_path):
    a = proxies.noisy_labels(ds, "uniform", 0.1, noise_seed=0)
    b = proxies.noisy_labels(ds, "uniform", 0.1, noise_seed=0)
    assert np.array_equal(a[0], b[0]) and a[1].sum() == round(0.1 * len(ds.train))
    t, mask, clean = proxies.noisy_labels(ds, "targeted", 0.1, 0, attacker_model="linear",
                                          attacker_cfg=small_cfg(epochs=1), cache_dir=tmp_path)
    assert mask.sum() == round(0.1 * len(ds.train)) and np.all(t[mask] != clean[mask])
    assert sampling.mass_on(np.full(len(mask), 1 / len(mask)), mask) == pytest.approx(mask.mean())


def test_history_equals_a_reference_loop_bit_for_bit(ds):
    """islab.train's shuffle mode is exactly the textbook loop written out below (same streams,
    cosine lr per step, loss = mean of the per-example losses, epoch loss = float64 sum of batch
    loss * batch size / N, test metrics = numpy float32 means): every number of the history is
    identical, not merely close."""
    import math

    import torch.nn.functional as F

    from islab.data import prepare_batch
    from islab.seeding import derive_seed, torch_generator
    from islab.train import new_model

    cfg = small_cfg(epochs=2)
    y = ds.train.y
    res = train("mlp", ds, y.numpy(), cfg, seed=3)

    model = new_model("mlp", ds, 3, "cpu")
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    order = torch_generator(3, "order")
    n, b = len(y), cfg.batch_size
    steps = math.ceil(n / b)
    for epoch in range(cfg.epochs):
        torch.manual_seed(derive_seed(3, "dropout", epoch))
        perm = torch.randperm(n, generator=order)
        total = torch.zeros((), dtype=torch.float64)
        for s in range(steps):
            t = (epoch * steps + s) / (cfg.epochs * steps)
            for g in opt.param_groups:
                g["lr"] = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * t))
            idx = perm[s * b:(s + 1) * b]
            logits = model(prepare_batch(ds, ds.train.x[idx], train=True))
            loss = F.cross_entropy(logits, y[idx], reduction="none").mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.detach().double() * len(idx)
        model.eval()
        with torch.no_grad():
            logits = model(prepare_batch(ds, ds.test.x, train=False))
        model.train()
        test_loss = F.cross_entropy(logits, ds.test.y, reduction="none").numpy().mean()
        test_acc = 100.0 * float((logits.argmax(1) == ds.test.y).numpy().mean())
        h = res.history[epoch]
        assert h["train_loss"] == float(total) / n
        assert (h["test_acc"], h["test_loss"]) == (test_acc, float(test_loss))


def test_checkpoint_generator_states_stay_on_the_cpu_when_resuming_on_another_device(ds, tmp_path):
    """Issue 9: torch.load(map_location=<cuda>) moved the saved torch.Generator states to the GPU
    and Generator.set_state (which takes a CPU ByteTensor) crashed the resume.  Simulated here
    with the 'meta' device: the device-bound state moves, the generator states do not."""
    from islab.train import _load_checkpoint

    ck = tmp_path / "ck.pt"
    train("linear", ds, ds.train.y.numpy(), small_cfg(epochs=1, track_presentations=True), seed=0,
          checkpoint=ck)
    state = _load_checkpoint(ck, "meta")
    assert state["aum"][0].device.type == "meta" and state["stream"][0].device.type == "meta"
    for key in ("order_gen", "aug_gen"):
        assert state[key].device.type == "cpu" and state[key].dtype == torch.uint8
        torch.Generator().set_state(state[key])   # what train() does on resume
    with pytest.raises((TypeError, RuntimeError)):   # what the old map_location=device handed it
        payload = io.BytesIO(ck.read_bytes().split(b"\n", 2)[2])   # past islab.checkpoint's header
        torch.Generator().set_state(torch.load(payload, map_location="meta", weights_only=False)["order_gen"])


def test_compiled_training_builds_one_graph_per_architecture_and_shape(ds, monkeypatch):
    """cfg.compile: the short last batch of each pass (1437 = 22 * 64 + 29) runs uncompiled, and
    a second run of the same architecture reuses the first run's graph.  CPU stand-in for CUDA:
    the 'eager' backend (dynamo capture without code generation), the same numbers as no compile."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from islab import train as train_mod

    monkeypatch.setattr(train_mod, "use_compile", lambda cfg, device: cfg.compile)
    monkeypatch.setattr(train_mod, "compile_forward", lambda m: torch.compile(m, backend="eager", dynamic=False))
    torch._dynamo.reset()
    counters.clear()
    y = ds.train.y.numpy()
    plain = train("cnn", ds, y, small_cfg(epochs=2), seed=0)
    runs = [train("cnn", ds, y, small_cfg(epochs=2, compile=True), seed=s) for s in (0, 1)]
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    assert [h["train_loss"] for h in runs[0].history] == pytest.approx(
        [h["train_loss"] for h in plain.history], rel=1e-6)
    torch._dynamo.reset()


def test_data_fingerprint_once_per_data_set_from_host_arrays(monkeypatch):
    from dataclasses import replace

    from islab import data as data_mod

    ds = load_dataset("digits")
    calls = []
    real = data_mod.hash_arrays
    monkeypatch.setattr(data_mod, "hash_arrays", lambda *a: calls.append(len(a)) or real(*a))
    y = ds.train.y.numpy()
    keys = [proxies._cache_key(ds, y, "linear", s, small_cfg()) for s in range(3)]
    assert len(calls) == 1 and len({k["data"] for k in keys}) == 1   # 3 proxies, hashed once
    assert proxies._cache_key(replace(ds, augment="crop_flip"), y, "linear", 0, small_cfg())["data"] \
        == keys[0]["data"] and len(calls) == 1                    # same tensors: still remembered
    # moving to another device hashes the host arrays first; the moved set is never read back
    # ('meta' tensors have no data: reading them would raise)
    moved = ds.to("meta")
    assert data_mod.data_fingerprint(moved) == keys[0]["data"]
    # a row-chunked read gives the same digest; an in-place change is noticed
    monkeypatch.setattr(data_mod, "_HASH_CHUNK_BYTES", 100)
    assert real(ds.train.x, ds.test.x) == keys[0]["data"]
    ds.train.x[0, 0, 0, 0] += 1
    assert data_mod.data_fingerprint(ds) != keys[0]["data"]


def test_proxy_cache_key_holds_what_changes_the_numbers(ds):
    from dataclasses import replace

    y = ds.train.y.numpy()
    base = proxies._cache_key(ds, y, "linear", 0, small_cfg())
    assert base["torch"] == torch.__version__ and base["device"] == "cpu"
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert proxies._cache_key(ds, y, "linear", 0, small_cfg()) != base
    finally:
        torch.set_num_threads(threads)
    assert proxies._cache_key(ds, y, "linear", 0, small_cfg()) == base
    for other in (replace(ds, augment="crop_flip"), replace(ds, crop_pad=2), replace(ds, num_classes=11)):
        assert proxies._cache_key(other, y, "linear", 0, small_cfg()) != base
