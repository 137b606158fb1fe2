"""Compressive Transformer: memory update order and eviction, compression shapes, stop-gradients, losses."""

from __future__ import annotations

import math

import pytest
import torch

from papers.language.compressive_transformer import (
    CompressiveTransformerLM,
    Compressor,
    MemoryAttention,
    attention_reconstruction,
    content_attention,
    update_memory,
)
from papers.language.compressive_transformer.experiment import Config, make_model, recall_batch


def _rows(b, start, n, d=3):
    """(b, n, d) whose row i holds the value start + i everywhere: easy to track through the FIFO."""
    return (torch.arange(start, start + n, dtype=torch.float32)[None, :, None]).expand(b, n, d).clone()


# ---------- memory update ----------


def test_update_memory_evicts_oldest_and_keeps_order():
    mean = Compressor(3, 2, "mean")
    mem, cmem = torch.zeros(1, 4, 3), torch.zeros(1, 3, 3)
    mv, cv = torch.zeros(4, dtype=torch.bool), torch.zeros(3, dtype=torch.bool)
    seen = []
    for seg in range(4):  # segments of 4 states valued 4·seg … 4·seg + 3
        h = _rows(1, 4 * seg, 4)
        out = update_memory(mem, cmem, h, mean, mem_valid=mv, cmem_valid=cv, rate=2)
        mem, cmem, mv, cv = out["mem"], out["cmem"], out["mem_valid"], out["cmem_valid"]
        seen.append(out)
    # after 4 segments (states 0..15) the memory holds the newest n_m = 4 states of [m; h]
    assert mem[0, :, 0].tolist() == [12, 13, 14, 15] and mv.all()
    # evicted at the last step: states 8..11, compressed pairwise → 8.5, 10.5; cm keeps the newest 3 slots
    assert seen[-1]["evicted"][0, :, 0].tolist() == [8, 9, 10, 11]
    assert cmem[0, :, 0].tolist() == [6.5, 8.5, 10.5] and cv.all()
    # the first step evicted the empty (invalid) initial memory: its compressed slots stay invalid
    assert not seen[0]["evicted_valid"].any() and not seen[0]["cmem_valid"].any()
    assert seen[1]["cmem_valid"].tolist() == [False, True, True]  # states 0..3 → 0.5, 2.5
    assert seen[1]["cmem"][0, 1:, 0].tolist() == [0.5, 2.5]
    assert seen[2]["cmem_valid"].all()


def test_update_memory_detaches_and_checks_rate():
    h = torch.randn(2, 4, 3, requires_grad=True)
    out = update_memory(
        torch.zeros(2, 2, 3),
        torch.zeros(2, 2, 3),
        h,
        Compressor(3, 2),
        rate=2,
        mem_valid=torch.ones(2, dtype=torch.bool),
        cmem_valid=torch.ones(2, dtype=torch.bool),
    )
    assert not out["mem"].requires_grad and not out["cmem"].requires_grad
    assert (
        out["mem"].shape == (2, 2, 3) and out["cmem"].shape == (2, 2, 3) and out["evicted"].shape == (2, 4, 3)
    )
    with pytest.raises(ValueError, match="divisible by the compression rate"):
        update_memory(
            torch.zeros(2, 2, 3),
            torch.zeros(2, 2, 3),
            torch.randn(2, 3, 3),
            Compressor(3, 2),
            rate=2,
            mem_valid=torch.ones(2, dtype=torch.bool),
            cmem_valid=torch.ones(2, dtype=torch.bool),
        )


# ---------- compression ----------


@pytest.mark.parametrize("kind", ["conv", "mean"])
def test_compressor_shapes_and_mean_pool_exact(kind):
    f = Compressor(6, 3, kind)
    x = torch.randn(2, 9, 6)
    assert f(x).shape == (2, 3, 6)
    if kind == "mean":
        torch.testing.assert_close(f(x), x.view(2, 3, 3, 6).mean(2))
    with pytest.raises(ValueError, match="divisible by 3"):
        f(torch.randn(2, 8, 6))


def test_conv_compressor_is_local_kernel_equals_stride():
    torch.manual_seed(0)
    f = Compressor(4, 2, "conv")
    x = torch.randn(1, 6, 4)
    y = f(x)
    x2 = x.clone()
    x2[:, 2:4] += 1.0  # only the second window changes
    y2 = f(x2)
    assert torch.equal(y[:, [0, 2]], y2[:, [0, 2]]) and not torch.allclose(y[:, 1], y2[:, 1])


def test_autoencoder_decoder_and_bad_options():
    f = Compressor(4, 2, "conv", decoder=True)
    assert f.decode(f(torch.randn(3, 6, 4))).shape == (3, 6, 4)
    with pytest.raises(ValueError, match="no decoder"):
        Compressor(4, 2, "conv").decode(torch.randn(1, 3, 4))
    with pytest.raises(ValueError, match="compression must be one of"):
        Compressor(4, 2, "max")
    with pytest.raises(ValueError, match="trainable"):
        Compressor(4, 2, "mean", decoder=True)


# ---------- attention-reconstruction loss ----------


def test_attention_reconstruction_zero_for_identity_compression_and_positive_otherwise():
    torch.manual_seed(0)
    d = 8
    attn, norm = MemoryAttention(d, 2, 4, 12), torch.nn.LayerNorm(d)
    f = Compressor(d, 1, "conv")  # c = 1 with the identity kernel: f_c(m) = m
    with torch.no_grad():
        f.conv.weight.copy_(torch.eye(d)[:, :, None])
        f.conv.bias.zero_()
    h, old = torch.randn(2, 4, d), torch.randn(2, 4, d)
    valid = torch.ones(4, dtype=torch.bool)
    loss = attention_reconstruction(attn, norm, h, old, valid, f(old), valid)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    g = Compressor(d, 2, "mean")
    lossy = attention_reconstruction(attn, norm, h, old, valid, g(old), torch.ones(2, dtype=torch.bool))
    assert lossy.item() > 1e-4


def test_attention_reconstruction_gradient_reaches_only_the_compressor():
    torch.manual_seed(0)
    d = 8
    attn, norm, f = MemoryAttention(d, 2, 4, 12), torch.nn.LayerNorm(d), Compressor(d, 2, "conv")
    h = torch.randn(2, 4, d, requires_grad=True)
    old = torch.randn(2, 4, d, requires_grad=True)
    valid = torch.ones(4, dtype=torch.bool)
    attention_reconstruction(
        attn, norm, h, old, valid, f(old.detach()), torch.ones(2, dtype=torch.bool)
    ).backward()
    assert all(p.grad is None for p in [*attn.parameters(), *norm.parameters()])
    assert h.grad is None and old.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in f.parameters())


def test_content_attention_matches_a_manual_single_head():
    torch.manual_seed(0)
    attn = MemoryAttention(4, 1, 2, 5)
    q, m = torch.randn(1, 2, 4), torch.randn(1, 5, 4)
    valid = torch.tensor([True, True, False, True, True])
    out = content_attention(attn, q, m, valid)
    qq, kk, vv = attn.w_q(q), attn.w_k(m[:, valid]), attn.w_v(m[:, valid])
    ref = attn.w_o((qq @ kk.transpose(1, 2) / 2.0).softmax(-1) @ vv)
    torch.testing.assert_close(out, ref)


# ---------- the model ----------


def _model(**kw):
    values = dict(d_model=16, n_heads=2, d_ff=32, segment=4, memory=4, compressed=2, rate=2)
    return CompressiveTransformerLM(11, **{**values, **kw})


def test_model_shapes_cost_and_span():
    torch.manual_seed(0)
    model = _model()
    logits, aux = model(torch.randint(11, (3, 16)))
    assert logits.shape == (3, 16, 11) and aux.dim() == 0 and aux.item() > 0
    assert model.attended_slots == 2 + 4 + 4 and model.context_span == 4 + 2 * 2
    txl = _model(memory=6, compressed=0, loss="none")
    assert txl.attended_slots == model.attended_slots and txl.context_span < model.context_span
    assert txl(torch.randint(11, (3, 16)))[1].item() == 0.0


def test_task_loss_does_not_reach_compressor_and_compression_loss_not_main_network():
    torch.manual_seed(0)
    for loss in ("attention", "autoencoder"):
        model = _model(loss=loss)
        ids = torch.randint(11, (2, 20))
        logits, aux = model(ids)
        logits[:, -1].sum().backward(retain_graph=True)
        assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.compression_parameters())
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.main_parameters())
        model.zero_grad(set_to_none=True)
        aux.backward()
        assert all(p.grad is None for p in model.main_parameters())
        assert all(p.grad is not None for p in model.compression_parameters())


def test_no_gradient_reaches_past_segments_through_memory():
    torch.manual_seed(0)
    model = _model(compressed=0, loss="none")
    emb = []

    def keep(module, inputs, output):
        if output.requires_grad:
            output.retain_grad()
        emb.append(output)

    model.embed.register_forward_hook(keep)
    logits, _ = model(torch.randint(11, (2, 12)))
    logits[:, -1].sum().backward()
    assert [e.grad is None or e.grad.abs().sum() == 0 for e in emb] == [True, True, False]


def test_loss_segments_matches_full_forward_and_is_checked():
    torch.manual_seed(0)
    model = _model()
    ids = torch.randint(11, (2, 16))
    full, aux_full = model(ids)
    last, aux_last = model(ids, loss_segments=1)
    torch.testing.assert_close(full, last)
    torch.testing.assert_close(aux_full, aux_last)
    with pytest.raises(ValueError, match="loss_segments"):
        model(ids, loss_segments=5)


def test_compressed_memory_lets_a_query_see_beyond_plain_memory():
    """Changing a token older than memory + segment changes the last logits only with compression."""
    torch.manual_seed(0)
    for compressed, changes in ((0, False), (2, True)):
        model = _model(compressed=compressed, loss="none" if compressed == 0 else "attention")
        ids = torch.randint(11, (1, 16))
        other = ids.clone()
        other[0, 5] = (ids[0, 5] + 1) % 11  # distance 10: beyond 4 + 4 − 1, within 4 + 2 · 2 + 4 − 1
        with torch.no_grad():
            diff = (model(ids)[0][0, -1] - model(other)[0][0, -1]).abs().max().item()
        assert (diff > 1e-6) is changes


def test_model_is_deterministic_under_a_seed():
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        outs.append(_model()(torch.arange(16).remainder(11)[None])[0])
    assert torch.equal(outs[0], outs[1])


def test_model_rejects_bad_input_and_options():
    model = _model()
    with pytest.raises(ValueError, match="multiple of segment"):
        model(torch.randint(11, (2, 6)))
    with pytest.raises(ValueError, match="integer"):
        model(torch.randn(2, 8))
    with pytest.raises(ValueError, match=r"ids must be in \[0, 11\)"):
        model(torch.full((1, 8), 11))
    with pytest.raises(ValueError, match="divisible by the compression rate"):
        _model(segment=5)
    with pytest.raises(ValueError, match="loss must be one of"):
        _model(loss="mse")
    with pytest.raises(ValueError, match="mean pooling has no parameters"):
        _model(compression="mean", loss="attention")


# ---------- experiment ----------


def test_recall_batch_places_value_and_query():
    config = Config()
    g = torch.Generator().manual_seed(0)
    d = torch.tensor([1, 10, config.max_distance])
    ids, targets = recall_batch(config, d, g)
    t = config.seq_len
    assert ids.shape == (3, t) and (ids[:, -1] == config.n_distractors + config.n_values).all()
    assert torch.equal(ids[torch.arange(3), t - 1 - d], targets)
    is_value = (ids[:, :-1] >= config.n_distractors) & (ids[:, :-1] < config.n_distractors + config.n_values)
    assert is_value.sum(1).tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="distances"):
        recall_batch(config, torch.tensor([0]), g)


def test_config_spans_and_equal_attention_cost():
    config = Config()
    assert config.txl_reach < config.max_distance < config.seq_len
    assert make_model(config, "txl").attended_slots == make_model(config, "ct_attention").attended_slots


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"steps": 0}, "steps must be >= 1"),
        ({"rate": 3}, "divisible by rate"),
        ({"n_segments": 3}, "n_segments"),
        ({"variants": ("ct_mean",)}, "variants"),
        ({"lr": 0.0}, "lr and grad_clip"),
        ({"n_heads": 5}, "divisible by n_heads"),
    ],
)
def test_config_rejects_bad_values(override, message):
    with pytest.raises(ValueError, match=message):
        Config(**override).validate()


def test_smoke_run(run_smoke):
    from papers.language.compressive_transformer import EXPERIMENT

    result, _ = run_smoke(EXPERIMENT)
    assert len(result.checks) == 4 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == ["figures/accuracy_by_distance.png", "figures/training.png"]
    assert len(result.metrics["accuracy_by_distance"]["txl"]) == Config().max_distance
