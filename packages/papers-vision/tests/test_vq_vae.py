import math

import pytest
import torch
from papers_testing import untimed

from papers.vision.vq_vae import (
    VQVAE,
    CodePrior,
    GaussianVAE,
    VectorQuantizer,
    ema_update,
    flatten_latents,
    lookup,
    nearest_codes,
    perplexity,
    quantize,
    straight_through,
    vq_losses,
)

F64 = torch.float64


def test_quantiser_picks_the_nearest_code_like_brute_force():
    generator = torch.Generator().manual_seed(0)
    z_e = torch.randn(3, 5, 4, 6, generator=generator, dtype=F64)
    codebook = torch.randn(11, 5, generator=generator, dtype=F64)
    z_q, indices = quantize(z_e, codebook)
    assert indices.shape == (3, 4, 6) and z_q.shape == z_e.shape
    for n in range(3):
        for h in range(4):
            for w in range(6):
                distances = [float(((z_e[n, :, h, w] - code) ** 2).sum()) for code in codebook]
                best = min(range(11), key=distances.__getitem__)
                assert indices[n, h, w] == best
                assert torch.equal(z_q[n, :, h, w], codebook[best])
    # a latent equal to a code maps to that code
    exact = codebook[[2, 7]].view(2, 5, 1, 1)
    assert nearest_codes(exact, codebook).flatten().tolist() == [2, 7]
    assert torch.equal(flatten_latents(z_e)[7], z_e[0, :, 1, 1])


def test_straight_through_gradient_is_copied_exactly():
    generator = torch.Generator().manual_seed(1)
    z_e = torch.randn(2, 4, 3, 3, generator=generator, dtype=F64, requires_grad=True)
    codebook = torch.randn(6, 4, generator=generator, dtype=F64)
    z_q, _ = quantize(z_e.detach(), codebook)
    out = straight_through(z_e, z_q)
    assert torch.allclose(out, z_q, rtol=0, atol=1e-15)  # forward value: the quantised latent (to rounding)
    upstream = torch.randn(out.shape, generator=generator, dtype=F64)
    out.backward(upstream)
    assert torch.equal(z_e.grad, upstream)  # dL/dz_e = dL/dz_q, exactly
    # and through the quantiser module, for both variants
    for ema in (False, True):
        vq = VectorQuantizer(6, 4, ema=ema).double()
        leaf = z_e.detach().clone().requires_grad_(True)
        vq(leaf).z_q.backward(upstream)
        assert torch.equal(leaf.grad, upstream)


def test_codebook_loss_moves_only_codes_and_commitment_only_the_encoder():
    torch.manual_seed(2)
    model = VQVAE(num_codes=8, code_dim=4, hidden=8).double()
    x = torch.rand(3, 1, 8, 8, dtype=F64)
    codebook = model.quantizer.codebook

    def grads(which):
        model.zero_grad(set_to_none=True)
        vq = model.quantizer(model.encoder(x))
        getattr(vq, which).backward()
        encoder = [p.grad for p in model.encoder.parameters()]
        return encoder, codebook.grad

    encoder_grads, codebook_grad = grads("codebook_loss")
    assert all(g is None for g in encoder_grads)
    assert codebook_grad is not None and codebook_grad.abs().sum() > 0
    encoder_grads, codebook_grad = grads("commitment_loss")
    assert codebook_grad is None
    assert all(g is not None for g in encoder_grads) and sum(g.abs().sum() for g in encoder_grads) > 0
    # analytic gradients of both terms with respect to their own argument
    z_e = torch.randn(2, 4, 2, 2, dtype=F64, requires_grad=True)
    z_q = torch.randn(2, 4, 2, 2, dtype=F64, requires_grad=True)
    codebook_loss, commitment = vq_losses(z_e, z_q)
    (dz_q,) = torch.autograd.grad(codebook_loss, z_q)
    (dz_e,) = torch.autograd.grad(commitment, z_e)
    assert torch.allclose(dz_q, 2 * (z_q - z_e).detach() / z_e.numel(), rtol=0, atol=1e-15)
    assert torch.allclose(dz_e, 2 * (z_e - z_q).detach() / z_e.numel(), rtol=0, atol=1e-15)
    # loss = codebook + beta * commitment (codebook loss variant), beta * commitment (EMA)
    vq = model.quantizer(model.encoder(x))
    assert torch.allclose(vq.loss, vq.codebook_loss + 0.25 * vq.commitment_loss)
    ema = VectorQuantizer(8, 4, ema=True, beta=0.5).double()
    out = ema(torch.randn(2, 4, 3, 3, dtype=F64))
    assert torch.allclose(out.loss, 0.5 * out.commitment_loss)
    assert not list(ema.parameters())  # EMA codes are buffers, no gradient reaches them


def test_ema_with_decay_zero_sets_codes_to_cluster_means():
    generator = torch.Generator().manual_seed(3)
    z_e = torch.randn(4, 3, 5, 5, generator=generator, dtype=F64)
    for epsilon, tolerance in ((0.0, 1e-12), (1e-5, 1e-5)):
        vq = VectorQuantizer(6, 3, ema=True, decay=0.0, epsilon=epsilon).double()
        with torch.no_grad():
            vq.embedding.copy_(torch.randn(6, 3, generator=generator, dtype=F64))
        before = vq.codebook.clone()
        indices = nearest_codes(z_e, before)
        vq.train()
        vq(z_e)
        flat = flatten_latents(z_e)
        for k in range(6):
            members = flat[indices.flatten() == k]
            if len(members):
                assert torch.allclose(vq.codebook[k], members.mean(0), rtol=tolerance, atol=tolerance)
                assert vq.ema_count[k] == len(members)
            elif epsilon > 0:
                assert torch.equal(vq.codebook[k], torch.zeros(3, dtype=F64))
    # eval mode leaves the codebook alone
    vq.eval()
    frozen = vq.codebook.clone()
    vq(torch.randn(2, 3, 2, 2, dtype=F64))
    assert torch.equal(vq.codebook, frozen)


def test_ema_update_formula_with_decay_and_an_unused_code_stays_put():
    flat = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]], dtype=F64)
    indices = torch.tensor([0, 0, 1])
    counts = torch.ones(3, dtype=F64)
    sums = torch.tensor([[0.5, 0.5], [1.0, 1.0], [-4.0, 4.0]], dtype=F64)  # codes start at sums / 1
    new_counts, new_sums, codes = ema_update(flat, indices, counts, sums, decay=0.9, epsilon=0.0)
    assert torch.allclose(new_counts, torch.tensor([0.9 + 0.2, 0.9 + 0.1, 0.9], dtype=F64))
    assert torch.allclose(new_sums[0], 0.9 * sums[0] + 0.1 * torch.tensor([4.0, 0.0], dtype=F64))
    assert torch.allclose(codes, new_sums / new_counts[:, None])
    assert torch.allclose(codes[2], sums[2])  # never picked: still its initial value


def test_perplexity_is_k_for_uniform_use_and_one_for_one_code():
    assert perplexity(torch.arange(8).repeat(5), 8) == pytest.approx(8.0, rel=1e-12)
    assert perplexity(torch.full((4, 3, 3), 5), 8) == pytest.approx(1.0, abs=1e-12)
    assert perplexity(torch.tensor([0, 1]), 8) == pytest.approx(2.0)
    p = torch.tensor([0.5, 0.25, 0.25])
    assert perplexity(torch.tensor([0, 0, 1, 2]), 3) == pytest.approx(math.exp(float(-(p * p.log()).sum())))


def test_prior_is_causal_and_samples_valid_codes():
    torch.manual_seed(4)
    prior = CodePrior(num_codes=7, length=10, width=16, layers=2, heads=2).double().eval()
    generator = torch.Generator().manual_seed(5)
    codes = torch.randint(0, 7, (3, 10), generator=generator)
    logits = prior(codes)
    assert logits.shape == (3, 10, 7)
    for i in range(10):
        changed = codes.clone()
        changed[:, i:] = torch.randint(0, 7, (3, 10 - i), generator=generator)
        changed[:, i] = (codes[:, i] + 1) % 7  # surely different at position i
        # the output at position i (and before) depends on codes < i only
        assert torch.allclose(prior(changed)[:, : i + 1], logits[:, : i + 1], rtol=0, atol=1e-12)
        if i + 1 < 10:
            assert not torch.allclose(prior(changed)[:, i + 1], logits[:, i + 1], atol=1e-6)
    bits = prior.nll_bits(codes)
    assert bits.shape == (3,) and (bits > 0).all()
    samples = prior.float().sample(5, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (5, 10) and samples.min() >= 0 and samples.max() < 7
    again = prior.sample(5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(samples, again)


def test_models_shapes_and_decode_of_encode_is_the_reconstruction():
    x = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(6))
    torch.manual_seed(6)
    model = VQVAE(num_codes=16, code_dim=8, hidden=8, ema=True).eval()
    recon, vq = model(x)
    assert recon.shape == x.shape and vq.indices.shape == (5, 4, 4)
    codes = model.encode(x)
    assert torch.equal(codes, vq.indices)
    assert torch.allclose(model.decode(codes), recon, atol=1e-6)
    vae = GaussianVAE(latent_dim=8, hidden=8)
    loss, mse, kl = vae.loss(x)
    assert loss.dim() == 0 and math.isfinite(loss.item()) and kl > 0 and mse > 0
    assert vae.reconstruct(x).shape == x.shape
    mean, log_var = vae.posterior(x)
    assert mean.shape == log_var.shape == (5, 8, 4, 4)
    torch.manual_seed(6)
    assert torch.equal(VQVAE(num_codes=16, code_dim=8, hidden=8, ema=True).eval()(x)[0], recon)


def test_bad_input_gives_clear_errors():
    codebook = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"z_e must have shape \(N, D=3"):
        quantize(torch.randn(2, 5, 2, 2), codebook)
    with pytest.raises(ValueError, match=r"codebook must have shape \(K, D\)"):
        quantize(torch.randn(2, 3, 2, 2), torch.randn(4, 3, 1))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 4\)"):
        lookup(torch.full((1, 2, 2), 4), codebook)
    with pytest.raises(ValueError, match="indices must be a long tensor"):
        lookup(torch.zeros(1, 2, 2), codebook)
    with pytest.raises(ValueError, match="multiples of 4"):
        VQVAE(num_codes=4, code_dim=3, hidden=4)(torch.rand(1, 1, 10, 10))
    with pytest.raises(ValueError, match=r"shape \(N, 1, H, W\)"):
        GaussianVAE(latent_dim=2, hidden=4).loss(torch.rand(1, 3, 8, 8))
    prior = CodePrior(num_codes=4, length=6, width=8, layers=1, heads=2)
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 4\)"):
        prior(torch.full((1, 6), 4))
    with pytest.raises(ValueError, match="L <= 6"):
        prior(torch.zeros(1, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        CodePrior(num_codes=4, length=6, width=6, heads=4)
    with pytest.raises(ValueError, match="decay"):
        VectorQuantizer(4, 3, ema=True, decay=1.0)
    with pytest.raises(ValueError, match="at least one"):
        perplexity(torch.zeros(0, dtype=torch.long), 4)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        perplexity(torch.tensor([0, 5]), 4)


@pytest.mark.parametrize(
    ("key", "value"),
    [("size", 10), ("test_fraction", 1.0), ("num_codes", 1), ("steps", 0), ("beta", -0.1), ("decay", 1.0),
     ("epsilon", -1.0), ("lr", 0.0), ("prior_on", "vae"), ("prior_width", 30), ("threads", -1)],
)  # fmt: skip
def test_config_validation(key, value):
    from papers.vision.vq_vae.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.vision.vq_vae import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert untimed(result.metrics) == untimed(again.metrics)
    m = result.metrics
    assert len(result.checks) == 7 and all(math.isfinite(c.measured) for c in result.checks)
    assert 1.0 <= m["vq_test_perplexity"] <= 8 and 1.0 <= m["vq_ema_test_perplexity"] <= 8
    assert m["uniform_bits"] == pytest.approx(3.0)
    assert sorted(result.figures) == [
        "figures/curves.png",
        "figures/reconstructions.png",
        "figures/samples.png",
    ]
    assert sorted(p.name for p in (run_dir / "stages").glob("*.json")) == [
        "prior.json",
        "vae.json",
        "vq.json",
        "vq_ema.json",
    ]
