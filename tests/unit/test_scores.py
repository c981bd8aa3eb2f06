import numpy as np
import pytest
import torch

from helpers import forgetting_from_sequence

from islab import scores


def test_normalised_ranks_with_ties_hand_computed():
    losses = np.array([[0.1, 0.5, 0.5, 0.9],
                       [4.0, 3.0, 2.0, 1.0]])
    r = scores.normalised_ranks(losses)
    # proxy 0 ranks: 1, 2.5, 2.5, 4 -> (rank-1)/3
    np.testing.assert_allclose(r[0], [0, 0.5, 0.5, 1])
    np.testing.assert_allclose(r[1], [1, 2 / 3, 1 / 3, 0])


def test_rank_variance_and_consensus_hand_computed():
    r = np.array([[0, 0.5, 0.5, 1], [1, 2 / 3, 1 / 3, 0]])
    # example 0: values 0 and 1 -> population variance 0.25, sample variance 0.5
    np.testing.assert_allclose(scores.rank_variance(r)[0], 0.25)
    np.testing.assert_allclose(scores.rank_variance(r, ddof=1)[0], 0.5)
    np.testing.assert_allclose(scores.consensus_rank(r), [0.5, 7 / 12, 5 / 12, 0.5])
    # same ordering under both normalisations
    assert np.array_equal(np.argsort(scores.rank_variance(r)), np.argsort(scores.rank_variance(r, ddof=1)))


def test_el2n_gradnorm_margin_known_answers():
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    y = torch.tensor([0, 1])
    e = scores.el2n(logits, y)
    # p = (.5,.5): residual (-.5,.5) -> norm sqrt(.5)
    assert e[0].item() == pytest.approx(np.sqrt(0.5))
    p0 = 1 / (1 + np.exp(-2.0))
    assert e[1].item() == pytest.approx(np.sqrt(2) * p0, rel=1e-6)
    h = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    g = scores.gradnorm_bound(logits, y, h)
    assert g[0].item() == pytest.approx(np.sqrt(0.5) * np.sqrt(26))
    assert g[1].item() == pytest.approx(e[1].item())
    m = scores.margins(torch.tensor([[1.0, 3.0, 2.0], [5.0, 1.0, 0.0]]), torch.tensor([2, 0]))
    assert m.tolist() == [-1.0, 4.0]


def test_gradnorm_bound_equals_autograd_last_layer_gradient():
    torch.manual_seed(0)
    lin = torch.nn.Linear(5, 4)
    h = torch.randn(3, 5)
    y = torch.tensor([0, 3, 1])
    logits = lin(h)
    bound = scores.gradnorm_bound(logits.detach(), y, h)
    for i in range(3):
        lin.zero_grad()
        torch.nn.functional.cross_entropy(lin(h[i:i + 1]), y[i:i + 1]).backward()
        g = torch.cat([lin.weight.grad.flatten(), lin.bias.grad])
        assert g.norm().item() == pytest.approx(bound[i].item(), rel=1e-5)


def test_forgetting_tracker_matches_reference_and_never_learned_gets_max_plus_one():
    seq = np.array([[1, 0, 0, 1],
                    [0, 0, 1, 1],
                    [1, 0, 1, 0],
                    [0, 0, 0, 1],
                    [1, 0, 1, 1]], dtype=bool)  # 5 presentations of 4 examples
    ref = forgetting_from_sequence(seq)
    # example 0 forgets twice, 1 never learned -> max(2,0,1)+1 = 3, 2 forgets once, 3 forgets once
    np.testing.assert_array_equal(ref, [2, 3, 1, 1])
    tr = scores.ForgettingTracker(4)
    idx = torch.arange(4)
    y = torch.zeros(4, dtype=torch.long)
    for row in seq:
        logits = torch.stack([torch.tensor(row, dtype=torch.float), torch.tensor(~row, dtype=torch.float)], 1)
        tr.update(idx, logits, y)
    np.testing.assert_array_equal(tr.value(), ref)


def test_aum_tracker_averages_margins_over_presentations():
    tr = scores.AUMTracker(3)
    y = torch.tensor([0, 1])
    tr.update(torch.tensor([0, 2]), torch.tensor([[3.0, 1.0], [0.0, 1.0]]), y)   # margins 2, 1
    tr.update(torch.tensor([0]), torch.tensor([[0.0, 2.0]]), torch.tensor([0]))  # margin -2
    v = tr.value()
    assert v[0] == pytest.approx(0.0) and v[2] == pytest.approx(1.0) and np.isnan(v[1])


def test_hybrid_endpoints():
    s = np.array([0.3, 0.1, 0.2])
    g = np.array([1.0, 3.0, 2.0])
    np.testing.assert_allclose(scores.hybrid_score(s, g, 0.0), [1, 0, 0.5])
    np.testing.assert_allclose(scores.hybrid_score(s, g, 1.0), [0, 1, 0.5])
