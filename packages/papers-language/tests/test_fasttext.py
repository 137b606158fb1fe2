"""fastText subword skip-gram: n-grams, hashing, the negative-sampling objective, the toy morphology."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from papers.core.errors import PapersError
from papers.language.fasttext import (
    EXPERIMENT,
    SkipGram,
    char_ngrams,
    fnv1a,
    generate_corpus,
    keep_probability,
    make_morphology,
    negative_sampling_loss,
    ngram_bucket,
    noise_distribution,
    subword_ids,
    subword_strings,
    train_skipgram,
)
from papers.language.fasttext.experiment import Config, spearman

F64 = torch.float64


def test_char_ngrams_match_the_papers_example():
    assert char_ngrams("where", 3, 3) == ["<wh", "whe", "her", "ere", "re>"]
    assert subword_strings("where", 3, 3) == ["<where>", "<wh", "whe", "her", "ere", "re>"]
    # "<her>" (the word her) differs from the tri-gram "her" of where
    assert "<her>" in subword_strings("her", 3, 6) and "<her>" not in char_ngrams("her", 3, 6)
    grams = char_ngrams("where", 3, 6)
    assert len(grams) == 5 + 4 + 3 + 2  # n = 3..6 of the 7-character "<where>"
    assert len(char_ngrams("her", 3, 6)) == 3 + 2 + 1 - 1  # "<her>" (n = 5) is the word, not an n-gram
    assert all(3 <= len(g) <= 6 for g in grams)


def test_char_ngrams_bad_input():
    with pytest.raises(ValueError, match="minn <= maxn"):
        char_ngrams("word", 4, 3)
    with pytest.raises(ValueError, match="non-empty"):
        char_ngrams("", 3, 6)


def test_hashing_is_deterministic_and_in_range():
    assert fnv1a("") == 2166136261 and fnv1a("a") == 0xE40C292C  # FNV-1a 32-bit reference values
    for gram in ("<wh", "whe", "ère", "re>"):
        b = ngram_bucket(gram, 1000)
        assert 0 <= b < 1000 and b == ngram_bucket(gram, 1000)
    buckets = {ngram_bucket(g, 50) for g in char_ngrams("antidisestablishment", 3, 6)}
    assert buckets <= set(range(50)) and len(buckets) > 20
    with pytest.raises(ValueError, match="buckets"):
        ngram_bucket("abc", 0)


def test_subword_ids_layout():
    vocab = {"where": 0, "here": 1}
    ids = subword_ids("where", vocab, 100, 3, 3)
    assert ids[0] == 0 and all(2 <= i < 102 for i in ids[1:]) and len(ids) == 6
    assert subword_ids("nowhere", vocab, 0, 3, 6) == []  # word-level OOV: the null vector
    assert len(subword_ids("nowhere", vocab, 100, 3, 3)) == 7  # OOV subword: n-grams only


def test_word_vector_is_the_sum_of_its_ngram_vectors():
    torch.manual_seed(0)
    model = SkipGram(["where", "here"], dim=8, buckets=64, minn=3, maxn=6)
    weight = model.input.weight.detach()
    for word in ("where", "there"):  # in vocabulary and out of it
        rows = subword_ids(word, model.vocab, 64, 3, 6)
        torch.testing.assert_close(model.vectors([word])[0], weight[rows].sum(0))
    word_level = SkipGram(["where", "here"], dim=8)
    assert torch.equal(word_level.vectors(["there"])[0], torch.zeros(8))
    torch.testing.assert_close(word_level.vectors(["here"])[0], word_level.input.weight[1].detach())


def test_negative_sampling_loss_formula_and_gradient():
    u = torch.tensor([[0.5, -1.0]], dtype=F64)
    v = torch.tensor([[2.0, 0.5]], dtype=F64)
    n = torch.tensor([[[1.0, 1.0], [-0.5, 0.2]]], dtype=F64)
    s_pos, s_neg = 0.5 * 2.0 - 1.0 * 0.5, [0.5 - 1.0, -0.25 - 0.2]
    expected = math.log(1 + math.exp(-s_pos)) + sum(math.log(1 + math.exp(s)) for s in s_neg)
    assert negative_sampling_loss(u, v, n).item() == pytest.approx(expected, rel=1e-12)
    # analytic gradient wrt u: -σ(-s_pos) v + Σ σ(s_n) n
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    grad_u = -sig(-s_pos) * v[0] + sum(sig(s) * n[0, k] for k, s in enumerate(s_neg))
    u_req = u.clone().requires_grad_()
    negative_sampling_loss(u_req, v, n).backward()
    torch.testing.assert_close(u_req.grad[0], grad_u)
    g = torch.Generator().manual_seed(0)
    args = [
        torch.randn(3, 4, dtype=F64, generator=g).requires_grad_(),
        torch.randn(3, 4, dtype=F64, generator=g).requires_grad_(),
        torch.randn(3, 5, 4, dtype=F64, generator=g).requires_grad_(),
    ]
    assert torch.autograd.gradcheck(negative_sampling_loss, args)
    with pytest.raises(ValueError, match="shapes"):
        negative_sampling_loss(u, v, n[0])


def test_model_gradient_reaches_only_its_ngram_rows():
    torch.manual_seed(0)
    model = SkipGram(["where", "here", "a"], dim=4, buckets=32, minn=3, maxn=4)
    model.output.weight.data.normal_()
    loss = model(torch.tensor([0]), torch.tensor([2]), torch.tensor([[1, 1]]))
    loss.backward()
    touched = set(model.input.weight.grad.coalesce().indices()[0].tolist())
    assert touched == set(subword_ids("where", model.vocab, 32, 3, 4))


def test_row_averaged_sgd_step():
    from papers.language.fasttext.model import _sgd_rows

    emb = torch.nn.Embedding(4, 2, sparse=True)
    before = emb.weight.detach().clone()
    idx = torch.tensor([1, 1, 2])
    upstream = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    (emb(idx) * upstream).sum().backward()
    with torch.no_grad():
        _sgd_rows(emb.weight, idx, 0.1)
    expected = before.clone()
    expected[1] -= 0.1 * (upstream[0] + upstream[1]) / 2  # mean over the row's two uses
    expected[2] -= 0.1 * upstream[2]
    torch.testing.assert_close(emb.weight.detach(), expected)


def test_noise_distribution_is_unigram_to_the_three_quarters():
    counts = [100, 10, 1, 0]
    p = noise_distribution(counts)
    expected = torch.tensor([100**0.75, 10**0.75, 1.0, 0.0], dtype=F64)
    torch.testing.assert_close(p, expected / expected.sum())
    assert p.sum().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="non-negative"):
        noise_distribution([1, -1])


def test_subsampling_keep_probability():
    counts = torch.tensor([9000.0, 900.0, 99.0, 1.0])
    keep = keep_probability(counts, 1e-3)
    f = counts / counts.sum()
    torch.testing.assert_close(keep, torch.clamp(torch.sqrt(1e-3 / f), max=1.0).double())
    assert keep[0] == pytest.approx(math.sqrt(1e-3 / 0.9)) and keep[-1] == 1.0
    with pytest.raises(ValueError, match="threshold"):
        keep_probability(counts, 0.0)


def _morph(seed=0):
    return make_morphology(
        n_stems=30,
        n_classes=3,
        prefixes=("", "re"),
        suffixes=("", "s", "ed"),
        class_words=5,
        collocates=1,
        fillers=5,
        zipf=1.0,
        heldout_fraction=0.6,
        seed=seed,
    )


def test_morphology_heldout_forms_never_in_training():
    morph = _morph()
    corpus = generate_corpus(morph, 3000, seed=1)
    seen = {w for s in corpus for w in s}
    held = set(morph.heldout_words())
    assert held and not held & seen
    assert all(morph.prefixes[p] or morph.suffixes[x] for _, p, x in morph.heldout)  # never the bare stem
    analysis = morph.analysis()
    assert len(analysis) == 30 * 2 * 3  # all forms distinct
    for s in corpus[:50]:  # exactly one inflected word per sentence, followed by its suffix particle
        inflected = [i for i, w in enumerate(s) if w in analysis]
        assert len(inflected) == 1
        particle = morph.particles[analysis[s[inflected[0]]][2]]
        assert particle in s
    assert generate_corpus(morph, 3000, seed=1) == corpus  # deterministic under a seed
    with pytest.raises(ValueError, match="empty affix"):
        make_morphology(
            n_stems=5,
            n_classes=2,
            prefixes=("re",),
            suffixes=("",),
            class_words=2,
            collocates=1,
            fillers=2,
            zipf=1.0,
            heldout_fraction=0.5,
            seed=0,
        )


def test_training_is_deterministic_and_learns():
    morph = _morph()
    corpus = generate_corpus(morph, 800, seed=1)
    words = sorted({w for s in corpus for w in s})
    index = {w: i for i, w in enumerate(words)}
    counts = np.zeros(len(words))
    for s in corpus:
        for w in s:
            counts[index[w]] += 1
    sentences = [np.array([index[w] for w in s]) for s in corpus]

    def train():
        torch.manual_seed(0)
        model = SkipGram(words, dim=12, buckets=500, minn=3, maxn=5)
        losses = train_skipgram(model, sentences, counts, epochs=3, lr=0.05, t=1e-2, batch_size=32, seed=3)
        return model, losses

    (m1, l1), (m2, l2) = train(), train()
    assert l1 == l2 and torch.equal(m1.input.weight, m2.input.weight)
    assert l1[-1] < l1[0] and l1[0] < 6 * math.log(2)  # below the loss of all-zero scores


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([0, 0, 0, 0], [1, 2, 3, 0]) == 0.0


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("minn", "7", "minn <= maxn"),
        ("buckets", "0", "buckets"),
        ("subsample_t", "0", "subsample_t"),
        ("heldout_fraction", "0", "heldout_fraction"),
        ("count_bins", "3,1", "count_bins"),
        ("ablation_ranges", "4", "minn-maxn"),
        ("n_classes", "1", "n_classes"),
        ("row_average", "mean", "row_average"),
    ],
)
def test_bad_config(key, value, message):
    with pytest.raises(PapersError, match=message):
        EXPERIMENT.make_config("smoke", {key: value})


def test_config_defaults_validate():
    Config().validate()


def test_smoke_run(run_smoke):
    result, _ = run_smoke(EXPERIMENT)
    assert len(result.checks) == 5
    assert result.metrics["heldout_oov_words"] > 0
    assert result.metrics["oov_stem_acc_subword"] > result.metrics["oov_stem_acc_chance"]
