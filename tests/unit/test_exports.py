"""islab.export: the per-example formats round-trip (scores CSV, online p per refresh, cartography
jsonl, aum/forgetting CSVs), and proxies record the same per-epoch logits from both trainers and
from the cache."""
import json

import numpy as np
import pandas as pd
import pytest

from islab import export
from islab.proxies import ProxyEnsemble


def tiny_ensemble(n=5, k=2, c=3, epochs=2):
    rng = np.random.default_rng(0)
    stats = {s: rng.normal(size=(k, n)) for s in ("loss", "el2n", "gradnorm", "margin", "correct", "aum",
                                                  "forgetting")}
    dyn = [rng.normal(size=(epochs, n, c)).astype(np.float32) for _ in range(k)]
    return ProxyEnsemble(["cnn", "mlp"], [1000, 1001], stats, np.array([90.0, 80.0]), dyn)


def test_scores_csv_round_trip(tmp_path):
    ens = tiny_ensemble()
    labels, clean = np.array([0, 1, 2, 0, 1]), np.array([0, 1, 1, 0, 2])
    corrupt = labels != clean
    cols = export.ensemble_columns(ens)
    path = export.write_scores_csv(tmp_path / "scores-x.csv", {**cols, "extra": np.arange(5) * 0.5},
                                   labels, clean, corrupt)
    df = export.read_scores_csv(path)
    assert list(df.columns[:4]) == ["example_id", "noisy_label", "clean_label", "corrupted"]
    assert df["example_id"].tolist() == list(range(5))
    assert df["corrupted"].tolist() == corrupt.astype(int).tolist()
    for name, v in cols.items():   # full precision survives the text format (9 significant digits)
        np.testing.assert_allclose(df[name].to_numpy(), v, rtol=1e-8, err_msg=name)
    np.testing.assert_allclose(df["loss__mlp_s1001"], ens["loss"][1], rtol=1e-8)
    assert {"dris", "consensus", "el2n", "gradnorm", "forgetting", "aum", "loss", "margin", "extra"} <= set(df)
    with pytest.raises(ValueError, match="different lengths"):
        export.write_scores_csv(tmp_path / "bad.csv", {"a": np.zeros(3)}, labels)


def test_probs_round_trip(tmp_path):
    p = np.array([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]])
    export.save_probs(tmp_path / "probs.npz", [0, 3], p)
    epochs, back = export.load_probs(tmp_path / "probs.npz")
    assert epochs.tolist() == [0, 3] and back.dtype == np.float32
    np.testing.assert_allclose(back, p, rtol=1e-7)
    with pytest.raises(ValueError):
        export.save_probs(tmp_path / "bad.npz", [0], p)
    # the ids of p's columns: default 0..N-1, or given (e.g. the RHO keep ids, a --train-size subset)
    assert [v.tolist() for v in export.load_probs_ids(tmp_path / "probs.npz")] == [[0, 1, 2], [0, 1, 2]]
    export.save_probs(tmp_path / "ids.npz", [0], p[:1], example_id=[4, 5, 9], dataset_id=[40, 50, 90])
    assert [v.tolist() for v in export.load_probs_ids(tmp_path / "ids.npz")] == [[4, 5, 9], [40, 50, 90]]
    with pytest.raises(ValueError, match="one example_id"):
        export.save_probs(tmp_path / "bad.npz", [0], p[:1], example_id=[1, 2])
    np.testing.assert_array_equal(export.subset_probs([1, 3], 4), [0, 0.5, 0, 0.5])


def test_cartography_round_trip_and_format(tmp_path):
    logits = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2) / 7
    logits[1, 2] = np.nan   # not presented in epoch 1
    files = export.write_cartography(tmp_path, logits, labels=[1, 0, 1], ids=[10, 11, 12])
    assert [f.name for f in files] == ["dynamics_epoch_0.jsonl", "dynamics_epoch_1.jsonl"]
    first = json.loads((tmp_path / "training_dynamics" / "dynamics_epoch_0.jsonl").read_text().splitlines()[0])
    assert first == {"guid": 10, "logits_epoch_0": [0.0, pytest.approx(1 / 7)], "gold": 1}
    last = json.loads((tmp_path / "training_dynamics" / "dynamics_epoch_1.jsonl").read_text().splitlines()[2])
    assert last["logits_epoch_1"] is None
    guids, gold, back = export.read_cartography(tmp_path)
    assert guids.tolist() == [10, 11, 12] and gold.tolist() == [1, 0, 1]
    np.testing.assert_array_equal(back, logits)   # float32 -> JSON -> float32 is exact


def test_tracker_save_writes_the_aum_package_format(tmp_path):
    import torch

    from islab.dynamics import TrainingDynamics

    t = TrainingDynamics(3, record_logits=True)
    t.update(torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0]]), torch.tensor([0, 0, 1]), torch.tensor([0, 1, 2]))
    t.end_epoch()
    files = t.save(tmp_path, labels=[0, 0, 1])
    aum = pd.read_csv(tmp_path / "aum_values.csv")
    assert list(aum.columns) == ["sample_id", "aum"] and aum["aum"].tolist() == [2.0, -1.0, 2.0]
    forget = pd.read_csv(tmp_path / "forgetting_values.csv")
    assert forget["forgetting"].tolist() == [0.0, 1.0, 0.0]   # never correct: max + 1
    assert (tmp_path / "training_dynamics" / "dynamics_epoch_0.jsonl") in files


def test_proxies_record_the_same_logits_batched_sequential_and_cached(tmp_path):
    """--export-dynamics: the folded ensemble, the sequential loop and the cache give one array."""
    from islab.data import load_dataset
    from islab.proxies import proxy_ensemble
    from islab.train import TrainConfig

    ds = load_dataset("digits", train_size=120)
    y = ds.train.y.numpy()
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05)
    runs = {}
    for batched in (True, False):
        runs[batched] = proxy_ensemble(ds, y, ["linear", "linear"], [1, 2], cfg, 1, batched=batched,
                                       cache_dir=tmp_path / f"c{batched}", dynamics=True)
    for a, b in zip(runs[True].dynamics, runs[False].dynamics):
        assert a.shape == (2, 120, 10)
        np.testing.assert_array_equal(a, b)   # linear models fold bit for bit
    cached = proxy_ensemble(ds, y, ["linear", "linear"], [1, 2], cfg, 1, cache_dir=tmp_path / "cTrue",
                            dynamics=True)
    np.testing.assert_array_equal(cached.dynamics[1], runs[True].dynamics[1])
    # a cache filled without logits still serves the statistics, and the logits make it train again
    plain = proxy_ensemble(ds, y, ["linear"], [3], cfg, 1, cache_dir=tmp_path / "p")
    assert plain.dynamics is None
    again = proxy_ensemble(ds, y, ["linear"], [3], cfg, 1, cache_dir=tmp_path / "p", dynamics=True)
    np.testing.assert_array_equal(again["loss"], plain["loss"])
    assert again.dynamics[0].shape == (2, 120, 10)
