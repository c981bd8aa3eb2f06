"""The public DR-IS API (islab.dris, docs/own-data.md "DR-IS on your own data"): the examples run
as written, known answers (hand-computed ranks and variances, exact unbiasedness of the sampler's
weights), the one-path checks (hook features = forward_with_features; proxy_statistics = the
scripts' proxies), and bad input -> ValueError."""
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import forgetting_from_sequence
from torch.utils.data import DataLoader, TensorDataset

import islab
from islab import dris, scores

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- the README example


def own_data_blocks() -> list[str]:
    """The python code blocks of docs/own-data.md's "DR-IS on your own data" section, in order."""
    text = (ROOT / "docs" / "own-data.md").read_text()
    section = text.split("\n## DR-IS on your own data\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_points_to_the_own_data_section():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Use DR-IS on your own data", 1)[1].split("\n## ", 1)[0]
    assert "docs/own-data.md#dr-is-on-your-own-data" in section and "examples/own_losses.py" in section
    assert len(own_data_blocks()) == 2


def test_own_data_example_runs_as_written(tmp_path, monkeypatch, capsys):
    code = own_data_blocks()[0]
    assert "islab.models" not in code and "build_model" not in code   # no registry names
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    exec(compile(code, "docs/own-data.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert printed.startswith("kept 180 of 600") and "proxies narrow, wide, linear" in printed
    out = tmp_path / "dris-out"
    for f in ("aum_values.csv", "forgetting_values.csv", "scores.csv", "training_dynamics/dynamics_epoch_2.jsonl"):
        assert (out / f).is_file(), f
    import pandas as pd

    table = pd.read_csv(out / "scores.csv")
    assert len(table) == 600 and {"example_id", "dris", "aum", "corrupted", "loss__wide_s1001"} <= set(table.columns)
    # the DR-IS subset holds fewer corrupted labels than the data (the example's printed claim)
    keep, corrupt = namespace["keep"], namespace["train_set"].corrupt.numpy()
    assert corrupt[keep].mean() < corrupt.mean()


def test_own_losses_block_runs_as_written(capsys):
    namespace = {"__name__": "__readme__"}
    exec(compile(own_data_blocks()[1], "docs/own-data.md", "exec"), namespace)
    assert capsys.readouterr().out.startswith("kept 150; drew 256, weights ")
    assert namespace["losses"].shape == (2, 500)


def test_own_losses_example_file_runs_as_written():
    import subprocess

    r = subprocess.run([sys.executable, str(ROOT / "examples" / "own_losses.py")], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert lines[0].startswith("kept 300 of 1000: ")
    largest = re.fullmatch(r"largest weight (\d+\.\d) \(bound \(1 \+ gamma\) / gamma = 11\)", lines[1])
    assert largest and 1 < float(largest.group(1)) <= 11.0
    assert lines[3] == "rank 0 draws 500, rank 1 draws 500: together the global draw of 1000"
    kept, everyone = (float(v) for v in re.findall(r"(\d\.\d\d) corrupted \(all: (\d\.\d\d)\)", lines[0])[0])
    assert kept < everyone   # the DR-IS subset is cleaner than the data on this example


# ---------------------------------------------------------------- known answers


def test_ranks_variance_consensus_hand_computed():
    losses = [[0.1, 0.5, 0.9, 0.3],     # ranks 1 3 4 2 -> 0, 2/3, 1, 1/3
              [0.9, 0.5, 0.1, 0.3]]     # ranks 4 3 1 2 -> 1, 2/3, 0, 1/3
    r = dris.normalised_ranks(losses)
    np.testing.assert_allclose(r, [[0, 2 / 3, 1, 1 / 3], [1, 2 / 3, 0, 1 / 3]])
    # 1/K variance of (0, 1) is 1/4; identical ranks give 0
    np.testing.assert_allclose(dris.rank_disagreement(losses), [0.25, 0, 0.25, 0])
    np.testing.assert_allclose(dris.rank_disagreement(losses, ddof=1), [0.5, 0, 0.5, 0])
    np.testing.assert_allclose(dris.consensus(losses), [0.5, 2 / 3, 0.5, 1 / 3])
    # ties share the average rank: (1, 1, 3) -> ranks 1.5, 1.5, 3 -> 0.25, 0.25, 1
    np.testing.assert_allclose(dris.normalised_ranks([[1.0, 1.0, 3.0]]), [[0.25, 0.25, 1.0]])


def test_select_top_global_and_class_balanced():
    s = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3])
    assert dris.select_top(s, 0.5).tolist() == [0, 2, 4]
    labels = np.array([0, 0, 0, 1, 1, 1])
    # round(0.5 * 3) = 2 of each class: class 0 (ids 0-2) keeps 0 (0.9), 2 (0.8); class 1 (ids 3-5)
    # keeps 4 (0.7), 5 (0.3)
    assert dris.select_top(s, 0.5, labels=labels).tolist() == [0, 2, 4, 5]
    assert dris.select_top(s, 1.0).tolist() == list(range(6))


def test_online_probs_and_weights_hand_computed():
    s = np.array([0.0, 0.1, 0.3])              # mean 0.4/3, c = 0.1 * mean
    c = 0.1 * s.mean()
    p = dris.online_probs(s, gamma=0.1)
    np.testing.assert_allclose(p, (s + c) / (s + c).sum())
    np.testing.assert_allclose(dris.importance_weights(p), 1 / (3 * p))
    np.testing.assert_allclose(dris.importance_weights(p, [2, 0]), 1 / (3 * p[[2, 0]]))


def test_sampler_weights_are_exactly_unbiased():
    """E_{i~p}[w_i l_i] = sum_i p_i / (N p_i) l_i = mean(l), with the sampler's own float32 weights."""
    p = np.array([0.5, 0.25, 0.125, 0.125])
    losses = np.array([1.0, 2.0, 4.0, 8.0])
    sampler = dris.ImportanceSampler(p)
    w = sampler.importance_weights(torch.arange(4)).double().numpy()
    np.testing.assert_allclose(w, [0.5, 1.0, 2.0, 2.0])           # 1 / (4 p)
    assert float(np.sum(p * w * losses)) == pytest.approx(losses.mean(), rel=1e-7)


def test_sampler_draws_follow_p_and_work_with_a_dataloader():
    p = np.array([0.1, 0.2, 0.3, 0.4])
    sampler = dris.ImportanceSampler(p, num_samples=40_000, generator=torch.Generator().manual_seed(0))
    ids = np.array(list(iter(sampler)))
    assert len(ids) == len(sampler) == 40_000
    freq = np.bincount(ids, minlength=4) / len(ids)
    # binomial sd of a frequency: sqrt(p (1 - p) / n) <= 0.0025; 5 sd
    np.testing.assert_allclose(freq, p, atol=0.0125)
    losses = np.array([3.0, 1.0, 2.0, 5.0])
    w = sampler.importance_weights(ids).double().numpy()
    assert np.mean(w * losses[ids]) == pytest.approx(losses.mean(), rel=0.02)
    # a plain DataLoader over (x, y, index)
    data = TensorDataset(torch.arange(4.0)[:, None], torch.tensor([0, 1, 0, 1]))
    loader = DataLoader(dris.WithIndex(data), batch_size=8,
                        sampler=dris.ImportanceSampler(p, num_samples=16, generator=torch.Generator().manual_seed(1)))
    batches = list(loader)
    assert [len(b[2]) for b in batches] == [8, 8]
    x, y, idx = batches[0]
    assert torch.equal(x[:, 0].long(), idx) and torch.equal(y, torch.tensor([0, 1, 0, 1])[idx])


def test_tracker_matches_reference_counters():
    """TrainingDynamics = islab.scores' AUM mean margin and the reference forgetting counter."""
    rng = np.random.default_rng(0)
    n, c, epochs = 5, 3, 4
    tracker = dris.TrainingDynamics(n, record_logits=True)
    all_logits, correct = [], []
    y = torch.tensor([0, 1, 2, 0, 1])
    for _ in range(epochs):
        z = torch.tensor(rng.normal(size=(n, c)), dtype=torch.float32)
        order = rng.permutation(n)
        for half in (order[:3], order[3:]):
            tracker.update(z[half], y[half], half)
        tracker.end_epoch()
        all_logits.append(z.numpy())
        correct.append((z.argmax(1) == y).numpy())
    z = torch.tensor(np.stack(all_logits))                            # (E, N, C)
    margins = np.stack([scores.margins(z[e], y).numpy() for e in range(epochs)])
    np.testing.assert_allclose(tracker.aum(), margins.mean(0), rtol=1e-6)
    np.testing.assert_array_equal(tracker.forgetting(), forgetting_from_sequence(np.stack(correct)))
    np.testing.assert_array_equal(tracker.epoch_logits(), np.stack(all_logits))


# ---------------------------------------------------------------- one path


class HeadLast(nn.Module):
    """A user's model (no forward_with_features): two hidden layers, head registered FIRST."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(8, 3)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.Tanh())

    def forward(self, x):
        return self.head(self.body(x))


def test_hook_features_give_the_exact_last_layer_gradient_norm():
    from islab.models import logits_and_features

    torch.manual_seed(0)
    model = HeadLast()
    x, y = torch.randn(6, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        logits, h = logits_and_features(model, x)
        assert torch.equal(logits, model(x)) and h.shape == (6, 8)
    bound = scores.gradnorm_bound(logits, y, h)
    for i in range(6):   # autograd: norm of the head's (weight, bias) gradient of example i's loss
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        g = torch.cat([model.head.weight.grad.flatten(), model.head.bias.grad])
        assert float(g.norm()) == pytest.approx(float(bound[i]), rel=1e-5)


def test_hook_features_equal_forward_with_features():
    from islab.models import build_model, logits_and_features

    torch.manual_seed(0)
    model = build_model("mlp", 10, (1, 8, 8)).eval()
    x = torch.randn(5, 1, 8, 8)
    fast = model.forward_with_features(x)

    class Plain(nn.Module):   # the same module seen without its fast path
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x)

    hooked = logits_and_features(Plain(model), x)
    assert torch.equal(fast[0], hooked[0]) and torch.equal(fast[1], hooked[1])


def test_models_whose_head_does_not_make_the_logits_are_refused():
    from islab.models import logits_and_features

    class Softmaxed(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return torch.softmax(self.fc(x), 1)

    with pytest.raises(ValueError, match="last nn.Linear"):
        logits_and_features(Softmaxed(), torch.randn(2, 4))
    with pytest.raises(ValueError, match="no nn.Linear"):
        logits_and_features(nn.Sequential(nn.Flatten()), torch.randn(2, 4))


def test_proxy_statistics_equal_the_scripts_proxies():
    """A user's Dataset (normalised floats) and a plain nn.Sequential give, through the API, the
    statistics islab.proxies computes for the registry 'linear' model on the same digits."""
    from islab.data import load_dataset, normalise
    from islab.proxies import train_proxy
    from islab.train import TrainConfig

    ds = load_dataset("digits", train_size=200)
    user = TensorDataset(normalise(ds.train.x, ds.mean, ds.std), ds.train.y)
    test = TensorDataset(normalise(ds.test.x, ds.mean, ds.std), ds.test.y)

    def plain_linear():   # LinearModel's layer, without forward_with_features
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    ens = dris.proxy_statistics(user, [plain_linear, plain_linear], test_set=test, epochs=2, snapshot_epoch=1,
                                batch_size=64, lr=0.05, seeds=[7, 8], num_classes=10)
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, momentum=0.9, weight_decay=5e-4)
    ref, acc = train_proxy(ds, ds.train.y.numpy(), "linear", 7, cfg, 1)
    for stat in ("loss", "el2n", "gradnorm", "margin", "aum", "forgetting"):
        np.testing.assert_allclose(ens[stat][0], ref[stat], rtol=1e-6, atol=1e-7, err_msg=stat)
    assert ens.test_acc[0] == pytest.approx(acc)
    assert ens.names == ["plain_linear", "plain_linear"] and ens.diverged == []
    table = dris.per_example_scores(ens)
    assert list(table["example_id"]) == list(range(200)) and "loss__plain_linear_s7" in table


def test_islab_import_is_light():
    code = ("import sys, islab; heavy = [m for m in ('torch', 'numpy', 'pandas') if m in sys.modules]; "
            "assert not heavy, heavy; assert 'rank_disagreement' in dir(islab)")
    import subprocess

    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert islab.rank_disagreement is dris.rank_disagreement


# ---------------------------------------------------------------- bad input


GOOD = np.array([[0.1, 0.5, 0.9], [0.9, 0.5, 0.1]])
P = np.array([0.5, 0.5, 0.0])


@pytest.mark.parametrize("call,match", [
    (lambda: dris.rank_disagreement(GOOD[:1]), "at least 2 proxies"),
    (lambda: dris.rank_disagreement(GOOD[0]), r"\(K proxies, N examples\)"),
    (lambda: dris.rank_disagreement(GOOD[:, :1]), "at least 2 examples"),
    (lambda: dris.rank_disagreement([[0.1, np.nan, 0.3], [0.2, 0.1, 0.3]]), "non-finite.*proxy 0, example 1"),
    (lambda: dris.consensus([[0.1, np.inf], [0.2, 0.1]]), "non-finite"),
    (lambda: dris.rank_disagreement(GOOD, ddof=2), "ddof"),
    (lambda: dris.select_top([0.1, 0.2], 0.0), r"alpha.*\(0, 1\]"),
    (lambda: dris.select_top([0.1, 0.2], 1.5), r"alpha.*\(0, 1\]"),
    (lambda: dris.select_top([0.1, 0.2], -0.1), r"alpha.*\(0, 1\]"),
    (lambda: dris.select_top([0.1, np.nan], 0.5), "non-finite"),
    (lambda: dris.select_top([0.1, 0.2, 0.3], 0.5, labels=[0, 1]), "one entry per example"),
    (lambda: dris.online_probs([0.1, -0.2]), ">= 0"),
    (lambda: dris.online_probs([0.1, 0.2], gamma=-1), "gamma"),
    (lambda: dris.online_probs([[0.1, 0.2]]), r"shape \(N,\)"),
    (lambda: dris.importance_weights(P, [2]), "probs is 0 at example 2"),
    (lambda: dris.importance_weights(P), "probs is 0 at example 2"),
    (lambda: dris.importance_weights([0.5, 0.6]), "sum to 1"),
    (lambda: dris.importance_weights([0.5, np.nan]), "finite"),
    (lambda: dris.importance_weights([0.5, 0.5], [2]), r"0\.\.1"),
    (lambda: dris.ImportanceSampler(P), r"are 0 for 1 example\(s\) \(first: 2\)"),
    (lambda: dris.ImportanceSampler([0.5, 0.5], num_samples=0), "num_samples"),
    (lambda: dris.ImportanceSampler([0.5, 0.5]).importance_weights([0.5]), "integer"),
    (lambda: dris.TrainingDynamics(0), "num_examples"),
    (lambda: dris.TrainingDynamics(3).update(torch.zeros(2, 3), torch.tensor([0, 1]), [0, 5]), r"0\.\.2"),
    (lambda: dris.TrainingDynamics(3).update(torch.zeros(2, 3), torch.tensor([0]), [0, 1]), "targets"),
    (lambda: dris.TrainingDynamics(3).update(torch.zeros(2, 3), torch.tensor([0, 3]), [0, 1]), r"targets must lie"),
    (lambda: dris.TrainingDynamics(3).update(torch.zeros(3), torch.tensor([0]), [0]), "logits"),
    (lambda: dris.proxy_statistics([(torch.zeros(2), 0)] * 4, nn.Identity(), epochs=0),
     r"nn.Module instance \(Identity\), not a factory.*lambda: nn\.Identity\(\.\.\.\)"),
    (lambda: dris.proxy_statistics([(torch.zeros(2), 0)] * 4, lambda: nn.Linear(2, 2), epochs=2,
                                   snapshot_epoch=3), "snapshot_epoch"),
    (lambda: dris.proxy_statistics([(torch.zeros(2), 0), (torch.zeros(3), 1)], lambda: nn.Linear(2, 2)),
     "same shape"),
    (lambda: dris.proxy_statistics([(torch.full((2,), float("nan")), 0), (torch.zeros(2), 1)],
                                   lambda: nn.Linear(2, 2)), "non-finite"),
    (lambda: dris.proxy_statistics([torch.zeros(2)] * 3, lambda: nn.Linear(2, 2)), r"\(x, y\) pair"),
    (lambda: dris.proxy_statistics([(torch.zeros(2), 0)] * 3, lambda: nn.Linear(2, 2), seeds=[1]), "one seed"),
    (lambda: dris.proxy_statistics([(torch.zeros(2), 0), (torch.zeros(2), 1)], lambda: "x"), "nn.Module"),
])
def test_bad_input_raises_a_clear_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------- traps a user met (own data)


def test_a_transposed_loss_matrix_is_refused_not_scored():
    """(N, K) instead of (K, N) used to give N = K scores and a subset of 1 example."""
    losses = np.random.default_rng(0).random((3, 600))           # K = 3 proxies, N = 600
    with pytest.raises(ValueError, match=r"\(K proxies, N examples\).*\(600, 3\).*looks like \(N, K\).*losses\.T"):
        dris.rank_disagreement(losses.T)
    with pytest.raises(ValueError, match=r"losses\.T"):
        dris.consensus(losses.T)
    assert len(dris.select_top(dris.rank_disagreement(losses), 0.3)) == 180
    with pytest.raises(ValueError, match="one proxy's losses"):
        dris.rank_disagreement(losses[0])


def test_one_proxy_is_refused_where_a_score_needs_two():
    """K = 1: no variance to take; per_example_scores used to drop the dris and consensus columns."""
    from islab.proxies import ProxyEnsemble

    with pytest.raises(ValueError, match="at least 2 proxies"):
        dris.rank_disagreement(np.ones((1, 5)))
    one = ProxyEnsemble(["a"], [0], {s: np.zeros((1, 4)) for s in ("loss", "el2n", "gradnorm", "margin", "correct",
                                                                   "aum", "forgetting")}, np.array([50.0]))
    with pytest.raises(ValueError, match="at least 2 proxies.*K = 1"):
        dris.per_example_scores(one)
    data = TensorDataset(torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="at least 2 proxies"):
        dris.proxy_statistics(data, lambda: nn.Linear(2, 2), num_proxies=1)
    with pytest.raises(ValueError, match="at least 2 proxies"):
        dris.proxy_statistics(data, {"only": lambda: nn.Linear(2, 2)})


def test_a_module_instead_of_a_factory_is_named_in_the_error():
    data = TensorDataset(torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"proxy .b. is an nn.Module instance \(Linear\).*lambda: nn\.Linear\(\.\.\.\)"):
        dris.proxy_statistics(data, {"a": lambda: nn.Linear(2, 2), "b": nn.Linear(2, 2)})


def test_sampler_normalises_probs_that_do_not_sum_to_one():
    sampler = dris.ImportanceSampler(torch.tensor([0.1, 0.2, 0.3, 0.4]) * 0.5)
    np.testing.assert_allclose(sampler.probs, [0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(sampler.importance_weights([0, 3]).double().numpy(), [2.5, 0.625], rtol=1e-7)
    for bad, match in (([1.0, -1.0], "finite and >= 0.*example 1"), ([np.nan, 1.0], "finite and >= 0.*example 0"),
                       ([1.0, np.inf], "finite"), ([0.0, 0.0], "all zero"), ([0.0, 1.0], "0 for 1 example")):
        with pytest.raises(ValueError, match=match):
            dris.ImportanceSampler(bad)


def test_from_scores_is_the_dris_distribution_with_its_weight_bound():
    s = np.array([0.0, 0.1, 0.3, 0.2])          # mean 0.15, c = gamma * mean = 0.015 at gamma 0.1
    sampler = dris.ImportanceSampler.from_scores(s, gamma=0.1)
    np.testing.assert_allclose(sampler.probs, (s + 0.015) / (s + 0.015).sum())
    w = sampler.importance_weights(torch.arange(4)).double().numpy()
    # the example with s = 0 carries the largest weight, exactly (1 + gamma) / gamma = 11
    assert w.max() == pytest.approx(11.0, rel=1e-6) and int(w.argmax()) == 0
    assert float(np.sum(sampler.probs * w * np.array([1.0, 2.0, 3.0, 4.0]))) == pytest.approx(2.5, rel=1e-7)
    for gamma in (0, 0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="gamma must be a finite number > 0"):
            dris.ImportanceSampler.from_scores(s, gamma=gamma)
    with pytest.raises(ValueError, match="gamma must be a finite number > 0"):
        dris.online_probs(s, gamma=0)


def test_select_top_rounds_half_up_as_methods_md_says():
    """alpha N = 2.5 keeps 3 (Python's round() gave 2); 0.35 of 10 is 3.4999999999999996 in floats: 4."""
    s = np.arange(10.0)
    assert dris.select_top(s, 0.25).tolist() == [7, 8, 9]
    assert dris.select_top(s, 0.35).tolist() == [6, 7, 8, 9]
    assert dris.select_top(s[:5], 0.5).tolist() == [2, 3, 4]
    assert len(dris.select_top(np.zeros(1437), 0.5)) == 719
    # per class: 5 examples of each class, alpha 0.5 -> 3 of each
    labels = np.repeat([0, 1], 5)
    assert dris.select_top(s, 0.5, labels=labels).tolist() == [2, 3, 4, 7, 8, 9]


class Diverges(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(x) * float("inf")


def test_named_proxies_and_a_diverged_one_left_out():
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(40, 2, generator=g), torch.randint(0, 2, (40,), generator=g))

    def lin():
        return nn.Linear(2, 2)

    with pytest.warns(RuntimeWarning, match=r"1 of 3 proxies diverged.*proxy broken seed 1001 diverged.*2 others: "
                                            r"small, other"):
        ens = dris.proxy_statistics(data, {"small": lin, "broken": Diverges, "other": lin}, epochs=2, batch_size=8)
    assert ens.names == ["small", "other"] and ens.seeds == [1000, 1002] and ens["loss"].shape == (2, 40)
    assert [(n, s) for n, s, _ in ens.diverged] == [("broken", 1001)]
    # the kept proxies are exactly those trained without the broken one (same seeds)
    alone = dris.proxy_statistics(data, {"small": lin, "other": lin}, epochs=2, batch_size=8, seeds=[1000, 1002])
    np.testing.assert_array_equal(ens["loss"], alone["loss"])
    table = dris.per_example_scores(ens)
    assert {"dris", "loss__small_s1000", "loss__other_s1002"} <= set(table.columns)
    from islab.proxies import ProxyDiverged

    with pytest.raises(ProxyDiverged, match="2 of 3 proxies diverged.*needs at least 2"):
        dris.proxy_statistics(data, {"a": lin, "b": Diverges, "c": Diverges}, epochs=1, batch_size=8)


def test_distributed_sampler_ranks_share_one_global_draw():
    p = np.array([0.05, 0.1, 0.15, 0.2, 0.5])
    ranks = [dris.DistributedImportanceSampler(p, num_replicas=3, rank=r, num_samples=10, seed=4) for r in range(3)]
    assert [len(r) for r in ranks] == [4, 4, 4]            # ceil(10 / 3) each, 12 in all
    for epoch in (0, 1):
        for r in ranks:
            r.set_epoch(epoch)
        parts = [list(r) for r in ranks]
        # the same global draw as one process drawing 12 ids from p with generator seed + epoch
        single = list(dris.ImportanceSampler(p, num_samples=12, generator=torch.Generator().manual_seed(4 + epoch)))
        assert [parts[k % 3][k // 3] for k in range(12)] == single
    again = dris.DistributedImportanceSampler(p, num_replicas=3, rank=1, num_samples=10, seed=4)
    again.set_epoch(1)
    assert list(again) == parts[1]                           # same seed + epoch: same share
    with pytest.raises(ValueError, match="num_replicas and rank"):
        dris.DistributedImportanceSampler(p)
    with pytest.raises(ValueError, match="rank in 0..num_replicas-1"):
        dris.DistributedImportanceSampler(p, num_replicas=2, rank=2)


def test_distributed_weighted_mean_over_ranks_is_unbiased():
    """Exactly: every rank's weight of example i is 1/(N p_i), so E over the global draw of the
    weighted loss is mean(l).  Empirically: the mean over 400 epochs of the weighted loss
    averaged over all ranks' examples is within 5 standard errors of mean(l)."""
    p = np.array([0.05, 0.1, 0.15, 0.2, 0.5])
    losses = np.array([4.0, 1.0, 3.0, 0.5, 2.0])
    ranks = [dris.DistributedImportanceSampler(p, num_replicas=2, rank=r, num_samples=8) for r in range(2)]
    w = ranks[1].importance_weights(torch.arange(5)).double().numpy()
    assert float(np.sum(p * w * losses)) == pytest.approx(losses.mean(), rel=1e-7)
    means = []
    for epoch in range(400):
        ids = []
        for r in ranks:
            r.set_epoch(epoch)
            ids += list(r)
        ids = np.array(ids)
        means.append(np.mean(w[ids] * losses[ids]))
    means = np.array(means)
    assert abs(means.mean() - losses.mean()) < 5 * means.std() / np.sqrt(len(means))


@pytest.mark.parametrize("readme", ["README.md", "DR-IS/README.md"])
def test_readme_one_minute_snippet_runs(readme):
    """The short API snippet at the top of README.md and DR-IS/README.md runs as written."""
    section = (ROOT / readme).read_text().split("## In one minute", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {"__name__": "__readme__"}
    exec(compile(code, readme, "exec"), namespace)
    assert len(namespace["keep"]) == 300 and namespace["s"].shape == (1000,)
    assert abs(namespace["p"].sum() - 1) < 1e-9 and len(namespace["sampler"]) == 1000


# ---------------------------------------------------------------- issue 26: a sampler API that cannot be misread


def quiet(call):
    """call() with every warning turned into an error (so a test sees that nothing was warned)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return call()


def test_sampler_takes_probs_by_name_and_by_position():
    p = np.array([0.1, 0.2, 0.3, 0.4])
    by_name = quiet(lambda: dris.ImportanceSampler(probs=p, num_samples=8, generator=torch.Generator().manual_seed(0)))
    by_position = dris.ImportanceSampler(p, 8, torch.Generator().manual_seed(0))
    assert list(by_name) == list(by_position)
    np.testing.assert_allclose(by_name.probs, p)
    assert quiet(lambda: dris.importance_weights(probs=p, ids=[3])).tolist() == pytest.approx([0.625])


def test_sampler_weights_is_renamed_importance_weights():
    sampler = dris.ImportanceSampler([0.5, 0.25, 0.25])
    np.testing.assert_allclose(sampler.importance_weights([0, 1]).numpy(), [2 / 3, 4 / 3], rtol=1e-6)
    with pytest.warns(DeprecationWarning, match=r"importance_weights\(ids\)"):
        old = sampler.weights([0, 1])
    assert torch.equal(old, sampler.importance_weights([0, 1]))


def test_importance_weights_passed_as_probs_are_warned_about():
    """The issue's trap: ImportanceSampler(importance_weights(p)) drew the examples p wanted least."""
    s = np.random.default_rng(0).gamma(2.0, size=200)
    p = dris.online_probs(s)
    with pytest.warns(UserWarning, match=r"look like importance weights.*ImportanceSampler\.from_scores.*check=False"):
        dris.ImportanceSampler(islab.importance_weights(p))
    with pytest.warns(UserWarning, match="look like importance weights"):
        dris.ImportanceSampler([1.0, 2.0, 3.0, 4.0])            # every value >= 1
    quiet(lambda: dris.ImportanceSampler(p))                     # the probabilities themselves: no warning
    quiet(lambda: dris.ImportanceSampler.from_scores(s))


def test_raw_scores_without_a_floor_are_warned_about_unless_exact():
    score = np.concatenate([np.full(99, 1.0), [1e-5]])          # one score near 0: weight ~ 1e3 x the rest
    with pytest.warns(UserWarning, match=r"raw scores without a floor: max / min = 1e\+05 > 1000.*from_scores"):
        dris.ImportanceSampler(score / score.sum())
    with pytest.warns(UserWarning, match="raw scores without a floor"):
        dris.DistributedImportanceSampler(score / score.sum(), num_replicas=2, rank=0)
    exact = quiet(lambda: dris.ImportanceSampler(score / score.sum(), check=False))
    assert float(exact.importance_weights([99])[0]) == pytest.approx(score.sum() / 100 / 1e-5, rel=1e-5)
    quiet(lambda: dris.ImportanceSampler.from_scores(score))   # floored by gamma: no warning


def test_a_scalar_id_gets_an_error_naming_ids():
    sampler = dris.ImportanceSampler([0.5, 0.25, 0.25])
    with pytest.raises(ValueError, match=r"ids must be a 1-D sequence.*scalar 2.*pass \[2\]"):
        sampler.importance_weights(2)
    with pytest.raises(ValueError, match=r"ids must be a 1-D sequence"):
        sampler.importance_weights(torch.tensor(2))
    with pytest.raises(ValueError, match=r"ids must be a 1-D sequence"):
        dris.importance_weights([0.5, 0.5], 1)


def api_table_rows() -> list[str]:
    """The first cells of docs/own-data.md's API table ("The API and what it refuses")."""
    text = (ROOT / "docs" / "own-data.md").read_text()
    section = text.split("### The API and what it refuses", 1)[1].split("\n## ", 1)[0]
    return [line.split(" | ")[0] for line in section.splitlines() if line.startswith("| `")]


def _table_params(args: str) -> list:
    """[(name, default or None)] of a README argument list; defaults read as Python literals."""
    import ast

    out = []
    for a in (a.strip() for a in args.split(",")):
        if a:
            name, _, default = a.partition("=")
            out.append((name, ast.literal_eval(default) if default else None))
    return out


def _code_params(obj) -> list:
    import inspect

    out, star = [], False
    for prm in inspect.signature(obj).parameters.values():
        if prm.name == "self":   # a method looked up on its class
            continue
        if prm.kind is prm.KEYWORD_ONLY and not star:
            out.append(("*", None))
            star = True
        name = {prm.VAR_POSITIONAL: "*", prm.VAR_KEYWORD: "**"}.get(prm.kind, "") + prm.name
        out.append((name, None if prm.default is prm.empty else prm.default))
    return out


def test_readme_api_table_signatures_match_the_code():
    """Every call in the API table's first column, `name(args)` or `.method(args)` of the row's
    class, has the parameters, order and defaults of inspect.signature of the code ("(...)": any)."""
    checked = 0
    for cell in api_table_rows():
        owner = None
        for name, args in re.findall(r"`([\w.]*)\(([^`]*)\)`", cell):
            obj = getattr(owner, name[1:]) if name.startswith(".") else islab
            for part in ([] if name.startswith(".") else name.split(".")):
                obj = getattr(obj, part)
            if not name.startswith(".") and isinstance(obj, type):
                owner = obj
            if args.strip() != "...":
                assert _table_params(args) == _code_params(obj), f"README `{name}({args})`"
                checked += 1
    assert checked >= 12


# ---------------------------------------------------------------- issue 26: proxies that memorised, held-out losses


def noisy_breast_cancer():
    from sklearn.datasets import load_breast_cancer

    X, clean = load_breast_cancer(return_X_y=True)
    flip = np.random.default_rng(0).random(len(clean)) < 0.2
    return X, np.where(flip, 1 - clean, clean), flip


def graded_models():
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    return {"logreg": make_pipeline(StandardScaler(), LogisticRegression()), "bayes": GaussianNB(),
            "knn15": KNeighborsClassifier(15), "tree3": DecisionTreeClassifier(max_depth=3, random_state=0)}


def test_in_sample_losses_of_memorising_proxies_are_warned_about():
    """The issue's trap: an unlimited-depth tree and a 1-NN model, in-sample: every loss is 0."""
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.tree import DecisionTreeClassifier

    X, y, _ = noisy_breast_cancer()
    models = [DecisionTreeClassifier(random_state=0), KNeighborsClassifier(1)]
    losses = islab.losses_from_probs(y, [m.fit(X, y).predict_proba(X) for m in models])
    for call in (islab.rank_disagreement, islab.consensus):
        with pytest.warns(UserWarning, match=r"look memorised \(proxy 0: 100% of its N = 569 losses below 0\.001; "
                                             r"proxy 1: .*held-out losses: islab\.cross_fit_losses"):
            call(losses)
    # held out, the same hard models still rank nothing (losses 0 or 27.6): a second, different warning
    with pytest.warns(UserWarning, match=r"very few values \(proxy 0: 2 distinct value\(s\).*graded probabilities"):
        islab.rank_disagreement(islab.cross_fit_losses(models, X, y))
    names = dris.warn_if_memorised
    with pytest.warns(UserWarning, match="proxy 'tree'"):
        assert names(losses, ["tree", "knn"]) == [0, 1]


def test_cross_fitted_losses_are_held_out_quiet_and_keep_clean_labels():
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    X, y, flip = noisy_breast_cancer()
    models = graded_models()
    losses = quiet(lambda: islab.cross_fit_losses(models, X, y, folds=5, seed=3))
    assert losses.shape == (4, len(y))
    # each example's loss is that of a copy fitted on the other folds (fold 2 of the same split, model 1)
    fit_ids, held = list(StratifiedKFold(5, shuffle=True, random_state=3).split(X, y))[2]
    m = clone(models["bayes"]).fit(X[fit_ids], y[fit_ids])
    np.testing.assert_allclose(losses[1, held], -np.log(np.clip(m.predict_proba(X[held])[np.arange(len(held)), y[held]],
                                                                1e-12, None)))
    s = quiet(lambda: islab.rank_disagreement(losses))
    assert flip[islab.select_top(s, 0.3)].mean() < 0.5 * flip.mean()
    for bad, match in ((dict(folds=1), "folds must be an integer in 2..N"), (dict(models=[]), "models is empty"),
                       (dict(y=y[:-1]), "one per row of X")):
        kw = dict(models=models, X=X, y=y) | bad
        with pytest.raises(ValueError, match=match):
            islab.cross_fit_losses(**kw)


def test_losses_from_probs_is_the_cross_entropy_of_each_label():
    labels = np.array([0, 2, 1])
    a = np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8], [0.0, 1.0, 0.0]])
    b = np.array([[0.9, 0.05, 0.05], [0.3, 0.3, 0.4], [1.0, 0.0, 0.0]])
    losses = islab.losses_from_probs(labels, [a, b])
    np.testing.assert_allclose(losses, [[np.log(2), -np.log(0.8), 0.0], [-np.log(0.9), -np.log(0.4), -np.log(1e-12)]])
    np.testing.assert_array_equal(islab.losses_from_probs(labels, np.stack([a, b])), losses)   # (K, N, C) too
    for call, match in ((lambda: islab.losses_from_probs(labels, a), r"list of \(N, C\) arrays.*\[pred_probs\]"),
                        (lambda: islab.losses_from_probs(labels, [a, b[:2]]), r"pred_probs\[1\] must be \(N, C\) with N = 3"),
                        (lambda: islab.losses_from_probs(labels, [a, np.log(b + 1e-9)]), r"pred_probs\[1\].*softmax"),
                        (lambda: islab.losses_from_probs([0, 3, 1], [a, b]), r"labels must lie in 0\.\.2"),
                        (lambda: islab.losses_from_probs([0.0, 1.0, 1.0], [a, b]), "labels must be integer"),
                        (lambda: islab.losses_from_probs(labels, []), "pred_probs is empty")):
        with pytest.raises(ValueError, match=match):
            call()


# ---------------------------------------------------------------- issue 26: messages in the library's voice


def test_library_device_errors_name_the_argument_not_a_flag():
    from islab.train import pick_device

    data = TensorDataset(torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"^unknown device='bogus'; use auto, cpu") as err:
        dris.proxy_statistics(data, lambda: nn.Linear(2, 2), device="bogus")
    assert "--" not in str(err.value)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"^device='cuda' asks for CUDA but no CUDA device is available here; "
                                             r"use cpu") as err:
            dris.proxy_statistics(data, lambda: nn.Linear(2, 2), device="cuda")
        assert "--" not in str(err.value)
    with pytest.raises(ValueError, match=r"^unknown --device bogus; use auto"):   # the scripts' voice, asked for by them
        pick_device("bogus", arg="--device")


def test_a_model_with_the_wrong_number_of_outputs_is_refused():
    data = TensorDataset(torch.zeros(6, 2), torch.tensor([0, 1, 2, 0, 1, 2]))
    with pytest.raises(ValueError, match=r"proxy 'wide' gives outputs of shape \(2, 5\).*num_classes = 3.*"
                                         r"out_features = 3"):
        dris.proxy_statistics(data, {"ok": lambda: nn.Linear(2, 3), "wide": lambda: nn.Linear(2, 5)}, epochs=1)
    with pytest.raises(ValueError, match=r"proxy 'Linear' gives outputs of shape \(2, 5\)"):
        dris.proxy_statistics(data, lambda: nn.Linear(2, 5), epochs=1)


def test_unnamed_factories_are_named_by_their_class():
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(40, 2, generator=g), torch.randint(0, 2, (40,), generator=g))
    ens = dris.proxy_statistics(data, [lambda: nn.Linear(2, 2), lambda: nn.Sequential(nn.Linear(2, 2))],
                                epochs=1, batch_size=8)
    assert ens.names == ["Linear", "Sequential"]
    table = dris.per_example_scores(ens)
    assert {"loss__Linear_s1000", "loss__Sequential_s1001"} <= set(table.columns)
    assert not any("<lambda>" in c for c in table.columns)
    # the same statistics as under chosen names: naming changes nothing else
    named = dris.proxy_statistics(data, {"a": lambda: nn.Linear(2, 2), "b": lambda: nn.Sequential(nn.Linear(2, 2))},
                                  epochs=1, batch_size=8)
    np.testing.assert_array_equal(ens["loss"], named["loss"])


def test_a_list_of_modules_gets_a_hint_that_builds_them():
    data = TensorDataset(torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]))
    modules = [nn.Sequential(nn.Linear(2, 2)), nn.Sequential(nn.Linear(2, 2))]
    with pytest.raises(ValueError, match=r"models\[0\] is an nn.Module instance \(Sequential\), not a factory.*"
                                         r"lambda: nn\.Sequential\(\.\.\.\) with the arguments you built it with.*"
                                         r"one factory per proxy") as err:
        dris.proxy_statistics(data, modules)
    assert "lambda: Sequential()" not in str(err.value)
