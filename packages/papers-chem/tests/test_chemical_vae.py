"""Chemical VAE: tokenizer round trips, analytic KL, reparameterisation gradients, decoder shapes and
teacher forcing, KL annealing, invalid SMILES counted not raised, config errors, smoke run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from papers_testing import untimed

from papers.chem.chemical_vae import (
    ChemicalVAE,
    Decoder,
    Encoder,
    Vocabulary,
    kl_divergence,
    kl_weight,
    reparameterize,
    tokenize,
)

TRICKY = [
    "ClCCBr",
    "c1ccc2[nH]ccc2c1",
    "C[N+](C)(C)CC(=O)[O-]",
    "O=C(O)[C@@H](N)Cc1ccccc1",
    "C1CC2CCC1%10CC2%10",
    "[Na+].[Cl-]",
    "Brc1ccc(Cl)cc1",
    "CC(=O)Oc1ccccc1C(=O)O",
]


@pytest.mark.parametrize("smiles", TRICKY)
def test_tokenizer_round_trip(smiles):
    tokens = tokenize(smiles)
    assert "".join(tokens) == smiles
    vocab = Vocabulary.from_smiles([smiles])
    assert vocab.decode(vocab.encode(smiles, 60)) == smiles


def test_tokenizer_keeps_multi_character_atoms_whole():
    assert tokenize("ClCBr") == ["Cl", "C", "Br"]
    assert tokenize("c1cc[nH]c1") == ["c", "1", "c", "c", "[nH]", "c", "1"]
    assert tokenize("C[N+](=O)[O-]") == ["C", "[N+]", "(", "=", "O", ")", "[O-]"]
    assert tokenize("C%12CC%12") == ["C", "%12", "C", "C", "%12"]


def test_tokenizer_and_vocabulary_errors():
    with pytest.raises(ValueError, match="unbalanced bracket"):
        tokenize("C[NH")
    with pytest.raises(ValueError, match="empty"):
        tokenize("")
    vocab = Vocabulary.from_smiles(["CCO"])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vocab.encode("CCN", 10)
    with pytest.raises(ValueError, match="max_len 3"):
        vocab.encode("CCO", 3)
    assert vocab.tokens[:3] == ["<pad>", "<s>", "</s>"]
    assert vocab.decode([vocab.index["C"], 2, vocab.index["O"]]) == "C"  # stops at </s>


def test_kl_matches_the_analytic_and_monte_carlo_values():
    mu = torch.tensor([[0.0, 0.0], [1.0, -2.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, 0.0], [math.log(0.25), math.log(4.0)]], dtype=torch.float64)
    kl = kl_divergence(mu, logvar)
    assert kl[0].item() == 0.0
    var = logvar.exp()[1]
    expected = 0.5 * (var + mu[1] ** 2 - 1 - var.log()).sum()
    assert torch.allclose(kl[1], expected)
    q = torch.distributions.Normal(mu[1], var.sqrt())
    p = torch.distributions.Normal(torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64))
    assert torch.allclose(kl[1], torch.distributions.kl_divergence(q, p).sum())


def test_reparameterisation_gradients():
    mu = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    logvar = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    eps = torch.randn(4, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(7))
    assert torch.allclose(z, mu + (0.5 * logvar).exp() * eps)
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones_like(mu))
    assert torch.allclose(logvar.grad, 0.5 * (0.5 * logvar).exp() * eps)
    torch.autograd.gradcheck(
        lambda m, s: reparameterize(m, s, torch.Generator().manual_seed(1)),
        (mu.detach().requires_grad_(), logvar.detach().requires_grad_()),
    )


def test_kl_annealing_ramps_from_zero_to_beta():
    assert kl_weight(0, start=10, length=100) == 0.0
    assert kl_weight(9, start=10, length=100) == 0.0
    assert abs(kl_weight(60, start=10, length=100, beta=2.0) - 1.0) < 1e-9  # the sigmoid's midpoint
    weights = [kl_weight(s, start=10, length=100) for s in range(10, 200)]
    assert all(b >= a for a, b in zip(weights, weights[1:], strict=False))
    assert weights[-1] > 0.999
    assert kl_weight(5, start=5, length=0, beta=0.5) == 0.5


def test_encoder_and_decoder_shapes_and_teacher_forcing_causality():
    torch.manual_seed(0)
    encoder = Encoder(12, 40, latent=6, hidden=16)
    tokens = torch.randint(0, 12, (5, 40))
    mu, logvar = encoder(tokens)
    assert mu.shape == logvar.shape == (5, 6)
    with pytest.raises(ValueError, match="shape"):
        encoder(tokens[:, :30])
    with pytest.raises(ValueError, match="receptive field"):
        Encoder(12, 20)
    decoder = Decoder(12, latent=6, hidden=16, embed=8)
    z = torch.randn(5, 6)
    logits = decoder(z, tokens)
    assert logits.shape == (5, 40, 12)
    # step t sees tokens < t only: changing token 20 leaves logits 0..20 unchanged
    changed = tokens.clone()
    changed[:, 20] = (changed[:, 20] + 1) % 12
    other = decoder(z, changed)
    assert torch.allclose(logits[:, :21], other[:, :21])
    assert not torch.allclose(logits[:, 21:], other[:, 21:])
    with pytest.raises(ValueError, match="z must have shape"):
        decoder(torch.randn(5, 7), tokens)
    # greedy decoding follows the teacher-forced argmax when fed its own output
    generated = decoder.generate(z, 40)
    assert generated.shape == (5, 40)
    assert torch.equal(decoder(z, generated).argmax(-1), generated)
    sampled = decoder.generate(z, 40, temperature=1.0, generator=torch.Generator().manual_seed(0))
    again = decoder.generate(z, 40, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sampled, again)


def test_vae_loss_parts_and_property_head():
    vocab = Vocabulary.from_smiles(TRICKY)
    tokens = torch.tensor([vocab.encode(s, 40) for s in TRICKY])
    y = torch.randn(len(TRICKY), 1)
    torch.manual_seed(0)
    model = ChemicalVAE(len(vocab), 40, latent=8, encoder_hidden=16, decoder_hidden=16, property_hidden=8)
    parts = model.loss(tokens, y, beta=0.5, property_weight=2.0, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(parts["loss"], parts["recon"] + 0.5 * parts["kl"] + 2.0 * parts["property"])
    assert parts["recon"] > 0 and parts["kl"] >= 0 and parts["property"] > 0
    parts["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())
    plain = ChemicalVAE(len(vocab), 40, latent=8, property_head=False, encoder_hidden=16, decoder_hidden=16)
    assert plain.property is None
    assert plain.loss(tokens, y, beta=1.0, property_weight=1.0)["property"].item() == 0.0


def test_invalid_decodes_are_counted_not_raised():
    from papers.chem.chemical_vae.experiment import (
        _finished,
        carbon_chain_fraction,
        true_logp,
        unique_valid_fraction,
        validity,
    )

    decodes = ["CCO", "C1CC", "c1ccccc1", "", "C(((", "[Xx]"]
    assert validity(decodes) == pytest.approx(2 / 6)
    vocab = Vocabulary.from_smiles(["CCO"])
    c, end = vocab.index["C"], vocab.index["</s>"]
    assert _finished(vocab, [c, c, end, 0]) == "CC"
    assert _finished(vocab, [c, c, c, c]) == ""  # truncated: no </s>, counted invalid
    assert unique_valid_fraction(["CCO", "CCO", "C1CC", "c1ccccc1"]) == pytest.approx(2 / 4)
    assert carbon_chain_fraction(["CCCC", "C=CCC", "C1CCCC1", "CCO", "C(("]) == pytest.approx(2 / 4)
    values = true_logp(["CCO", "C1CC", "?"])
    assert values[0] is not None and values[1] is None and values[2] is None


def test_optimisation_steps_have_the_requested_length_and_raise_the_prediction():
    from papers.chem.chemical_vae.experiment import optimise

    torch.manual_seed(0)
    model = ChemicalVAE(10, 40, latent=4, encoder_hidden=8, decoder_hidden=8, property_hidden=8)
    z0 = torch.randn(6, 4)
    path = optimise(model, z0, steps=5, step_size=0.1)
    assert len(path) == 6
    for a, b in zip(path, path[1:], strict=False):
        assert torch.allclose((b - a).norm(dim=1), torch.full((6,), 0.1), atol=1e-6)
    with torch.no_grad():
        assert (model.property(path[1]) > model.property(path[0])).all()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"steps": 0}, "steps must be >= 1"),
        ({"max_len": 20}, "max_len must be >= 30"),
        ({"test_fraction": 1.5}, "test_fraction"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"kl_start": 2.0}, "kl_start"),
        ({"molecules": 1}, "molecules"),
        ({"beta": -1.0}, "beta must be >= 0"),
    ],
)
def test_bad_config_values(override, message):
    from papers.chem.chemical_vae.experiment import Config

    with pytest.raises(ValueError, match=message):
        Config(**override).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.chem.chemical_vae import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    # NaN (no valid decode at smoke scale) != NaN: compare the JSON text
    assert json.dumps(untimed(result.metrics)) == json.dumps(untimed(again.metrics))
    assert len(result.checks) == 6
    assert sorted(result.figures) == [
        "figures/latent_pca.png",
        "figures/optimisation.png",
        "figures/training.png",
    ]
    stages = {p.stem for p in (run_dir / "stages").glob("*.json")}
    assert stages == {"data", "train_joint", "train_vae", "evaluate_joint", "evaluate_vae"}
    assert result.metrics["molecules_train"] + result.metrics["molecules_test"] <= 200
    assert 0 <= result.metrics["joint_prior_greedy_validity"] <= 1
