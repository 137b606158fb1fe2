"""MUSE: Procrustes, the orthogonalisation update, CSLS, the mutual-NN dictionary, the run."""

from __future__ import annotations

import math

import pytest
import torch
from papers_testing import untimed

from papers.language.muse import (
    Discriminator,
    csls_scores,
    k_occurrence,
    make_language_pair,
    mean_knn_similarity,
    mutual_nn_dictionary,
    normalize_embeddings,
    orthogonalize,
    precision_at_k,
    procrustes,
    retrieval_scores,
    selection_criterion,
)
from papers.language.muse.languages import random_orthogonal

F64 = torch.float64


def _orthogonal(d: int, seed: int = 0) -> torch.Tensor:
    return random_orthogonal(d, torch.Generator().manual_seed(seed))


def test_procrustes_recovers_exact_orthogonal_map():
    q = _orthogonal(12)
    x = torch.randn(200, 12, dtype=F64, generator=torch.Generator().manual_seed(1))
    w = procrustes(x, x @ q.T)
    assert (w - q).abs().max() < 1e-12
    assert (w @ w.T - torch.eye(12, dtype=F64)).abs().max() < 1e-12


def test_procrustes_is_optimal_among_orthogonal_maps():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(50, 6, dtype=F64, generator=g)
    y = x @ _orthogonal(6, 3).T + 0.3 * torch.randn(50, 6, dtype=F64, generator=g)
    best = (x @ procrustes(x, y).T - y).norm()
    for seed in range(20):
        assert best <= (x @ _orthogonal(6, 100 + seed).T - y).norm() + 1e-12


def test_orthogonalize_fixed_point_and_contraction():
    q = _orthogonal(10)
    assert (orthogonalize(q, 0.01) - q).abs().max() < 1e-14
    g = torch.Generator().manual_seed(4)
    w = q + 0.05 * torch.randn(10, 10, dtype=F64, generator=g)
    err = lambda m: (m @ m.T - torch.eye(10, dtype=F64)).norm().item()  # noqa: E731
    errors = [err(w)]
    for _ in range(200):
        w = orthogonalize(w, 0.01)
        errors.append(err(w))
    assert all(b < a for a, b in zip(errors, errors[1:], strict=False))
    assert errors[-1] < 0.1 * errors[0]


def test_csls_matches_formula_on_hand_case():
    mapped = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=F64)
    target = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], dtype=F64)
    cos = mapped @ target.T  # rows are unit length
    k = 2
    r_t = torch.stack([row.sort(descending=True).values[:k].mean() for row in cos])
    r_s = torch.stack([col.sort(descending=True).values[:k].mean() for col in cos.T])
    expected = 2 * cos - r_t[:, None] - r_s[None, :]
    assert torch.allclose(csls_scores(mapped, target, k), expected, atol=1e-15)
    # one entry by hand: cos(m0, t0) = 1; r_T(m0) = (1 + 0.8)/2; r_S(t0) = (1 + 0.6)/2
    assert math.isclose(csls_scores(mapped, target, 2)[0, 0].item(), 2 - 0.9 - 0.8, abs_tol=1e-12)
    assert torch.allclose(mean_knn_similarity(mapped, target, k), r_t)


def test_csls_reduces_hubness_on_a_constructed_hub():
    g = torch.Generator().manual_seed(5)
    d, n = 20, 200
    target = normalize_embeddings(torch.randn(n, d, dtype=F64, generator=g), center=False)
    centre = target.mean(0)
    hub = centre / centre.norm()
    target[0] = hub  # a target near the centre of mass: close to every query
    queries = normalize_embeddings(
        target[1:] + 0.9 * torch.randn(n - 1, d, dtype=F64, generator=g) + 2.0 * hub, center=False
    )
    nn_hub = k_occurrence(retrieval_scores(queries, target, "nn"), 1)[0].item()
    csls_hub = k_occurrence(retrieval_scores(queries, target, "csls", 10), 1)[0].item()
    assert nn_hub > 20 and csls_hub < nn_hub / 2
    gold = torch.arange(1, n)
    p_nn = precision_at_k(retrieval_scores(queries, target, "nn"), gold, (1,))[1]
    p_csls = precision_at_k(retrieval_scores(queries, target, "csls"), gold, (1,))[1]
    assert p_csls > p_nn


def test_mutual_nn_dictionary_contains_only_mutual_neighbours():
    g = torch.Generator().manual_seed(6)
    mapped, target = torch.randn(80, 8, generator=g), torch.randn(90, 8, generator=g)
    for method in ("nn", "csls"):
        pairs = mutual_nn_dictionary(mapped, target, method, 5)
        scores = retrieval_scores(mapped, target, method, 5)
        fwd, bwd = scores.argmax(1), scores.argmax(0)
        assert len(pairs) > 0
        for i, j in pairs.tolist():
            assert fwd[i] == j and bwd[j] == i
        # and every mutual pair is in it
        expected = {(i, fwd[i].item()) for i in range(80) if bwd[fwd[i]] == i}
        assert {tuple(p) for p in pairs.tolist()} == expected
    # an exact copy is its own dictionary
    pairs = mutual_nn_dictionary(target, target, "csls", 5)
    assert torch.equal(pairs[:, 0], pairs[:, 1]) and len(pairs) == 90


def test_precision_k_occurrence_and_criterion():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.7, 0.1], [0.0, 0.2, 0.5]])
    p = precision_at_k(scores, torch.tensor([0, 1, 2]), (1, 2))
    assert p[1] == pytest.approx(2 / 3) and p[2] == 1.0
    assert k_occurrence(scores, 1).tolist() == [2, 0, 1]
    y = normalize_embeddings(torch.randn(30, 5, generator=torch.Generator().manual_seed(7)), center=False)
    assert selection_criterion(y, y, 3) == pytest.approx(1.0)


def test_discriminator_shapes_and_errors():
    disc = Discriminator(8, hidden=16, layers=2, input_dropout=0.1)
    assert disc(torch.randn(5, 8)).shape == (5,)
    with pytest.raises(ValueError, match="input_dropout"):
        Discriminator(8, input_dropout=1.0)
    with pytest.raises(ValueError, match="square"):
        orthogonalize(torch.randn(3, 4))
    with pytest.raises(ValueError, match="beta"):
        orthogonalize(torch.eye(3), beta=0.0)
    with pytest.raises(ValueError, match="equal shapes"):
        procrustes(torch.randn(5, 3), torch.randn(4, 3))
    with pytest.raises(ValueError, match="2-D"):
        procrustes(torch.randn(5), torch.randn(5))
    with pytest.raises(ValueError, match="dimension mismatch"):
        csls_scores(torch.randn(5, 3), torch.randn(5, 4))
    with pytest.raises(ValueError, match="k must be"):
        csls_scores(torch.randn(5, 3), torch.randn(4, 3), k=5)
    with pytest.raises(ValueError, match="unknown retrieval method"):
        retrieval_scores(torch.randn(5, 3), torch.randn(4, 3), "cosine")
    with pytest.raises(ValueError, match="gold"):
        precision_at_k(torch.randn(5, 3), torch.zeros(4, dtype=torch.long))


def test_language_pair_is_seeded_and_dictionary_is_a_bijection():
    kw = dict(
        vocab=120,
        latent_dim=6,
        clusters=4,
        zipf=1.0,
        streams=50,
        segments=5,
        segment_length=10,
        persistence=0.9,
        window=2,
        dim=8,
        drift=0.1,
        freq_drift=0.3,
    )
    a, b = make_language_pair(**kw, seed=3), make_language_pair(**kw, seed=3)
    assert a["x"].shape == a["y"].shape == (120, 8)
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["gold"], b["gold"])
    assert sorted(a["gold"].tolist()) == list(range(120))
    assert a["counts_a"][0] >= a["counts_a"][-1]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("vocab", 0),
        ("beta", 0.0),
        ("dis_smoothing", 0.5),
        ("test_words", 1000),
        ("csls_k", 0),
        ("threads", -1),
        ("adv_max_rank", 10**6),
        ("dim", 10**6),
    ],
)
def test_config_validation(key, value):
    from papers.language.muse.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.language.muse import EXPERIMENT

    result, _ = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert untimed(result.metrics) == untimed(again.metrics)
    assert len(result.checks) == 6
    assert sorted(result.figures) == ["figures/hubness.png", "figures/precision.png"]
    assert result.metrics["adversarial_orthogonality_error"] < 0.1
    assert 0 <= result.metrics["supervised_csls_p1"] <= 1
