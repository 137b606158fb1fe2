"""Funnel-Transformer: query pooling with a separate [CLS], upsampling + residual decoder, FLOP counts."""

from __future__ import annotations

import math

import pytest
import torch

from papers.language.funnel_transformer import (
    FunnelClassifier,
    FunnelTagger,
    FunnelTransformer,
    PoolQueryLayer,
    attention_layer_flops,
    matmul_flops,
    mean_pool,
    measured_matmul_flops,
    pooled_length,
    upsample,
)
from papers.language.funnel_transformer.experiment import Config, matched_block_layers, motif_data


def body(**overrides) -> FunnelTransformer:
    values = dict(d_model=16, n_heads=2, d_ff=24, block_sizes=(1, 1, 1), n_decoder_layers=2, max_len=40)
    return FunnelTransformer(7, **{**values, **overrides})


# ---------------------------------------------------------------------------------- pooling, upsampling


def test_mean_pool_averages_pairs_and_keeps_cls_apart():
    h = torch.arange(2 * 7 * 3, dtype=torch.float).reshape(2, 7, 3)  # [CLS] + 6 states
    out = mean_pool(h)
    assert out.shape == (2, 4, 3) and pooled_length(7) == 4
    torch.testing.assert_close(out[:, 0], h[:, 0])  # [CLS] is never mixed with position 1
    for i in range(3):
        torch.testing.assert_close(out[:, 1 + i], (h[:, 1 + 2 * i] + h[:, 2 + 2 * i]) / 2)
    joint = mean_pool(h, separate_cls=False)  # without separation [CLS] is averaged with x_1
    assert joint.shape == (2, 4, 3) and pooled_length(7, separate_cls=False) == 4
    torch.testing.assert_close(joint[:, 0], (h[:, 0] + h[:, 1]) / 2)


def test_mean_pool_odd_remainder_is_a_window_of_one():
    h = torch.randn(1, 6, 2)  # [CLS] + 5 states: windows (1,2), (3,4), (5)
    out = mean_pool(h)
    assert out.shape[1] == pooled_length(6) == 4
    torch.testing.assert_close(out[:, 3], h[:, 5])
    assert mean_pool(h[:, :1]).shape == (1, 1, 2)  # [CLS] alone stays


def test_upsample_repeats_states_and_inverts_pooling_of_window_constant_sequences():
    compressed = torch.randn(2, 1 + 3, 4)  # [CLS] + 3 states at stride 4 cover up to 12 positions
    full = upsample(compressed, 1 + 10, stride=4)
    assert full.shape == (2, 11, 4)
    torch.testing.assert_close(full[:, 0], compressed[:, 0])
    for j in range(10):
        torch.testing.assert_close(full[:, 1 + j], compressed[:, 1 + j // 4])
    pooled_twice = mean_pool(mean_pool(full))  # windows of 4 are constant: pooling recovers the states
    torch.testing.assert_close(pooled_twice, compressed)
    with pytest.raises(ValueError, match="cannot cover"):
        upsample(compressed, 1 + 13, stride=4)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"\(batch, length, d_model\)"):
        mean_pool(torch.randn(5, 3))
    with pytest.raises(ValueError, match="stride"):
        upsample(torch.randn(1, 3, 2), 5, stride=0)
    with pytest.raises(ValueError, match="length"):
        pooled_length(0)


# ------------------------------------------------------------------------------------------------ layers


def test_pool_query_layer_pools_queries_only_and_attends_over_all_keys():
    torch.manual_seed(0)
    layer = PoolQueryLayer(8, 2, 12)
    h = torch.randn(3, 9, 8)
    out = layer(h)
    assert out.shape == (3, 5, 8)
    q = mean_pool(h)
    x = layer.norm_attn(q + layer.attn(q, h))
    torch.testing.assert_close(out, layer.norm_ffn(x + layer.ffn(x)))
    # keys/values are the unpooled sequence: perturbing one of the two states in the LAST window changes
    # every output, including [CLS] and the first window's state
    h2 = h.clone()
    h2[:, 8] += torch.randn(3, 8)
    h2[:, 7] -= h2[:, 8] - h[:, 8]  # same window mean, so the pooled queries are unchanged
    torch.testing.assert_close(mean_pool(h2), q)
    assert (layer(h2) - out).abs()[:, :2].amax() > 1e-4


def test_encoder_lengths_and_decoder_back_to_full_length():
    model = body(block_sizes=(2, 1, 1), n_decoder_layers=2)
    ids = torch.randint(7, (2, 1 + 16))
    last, first = model.encode(ids)
    assert first.shape == (2, 17, 16) and last.shape == (2, 1 + 4, 16) and model.stride == 4
    assert model.layer_lengths(17) == [(17, 17), (17, 17), (9, 17), (5, 9), (17, 17), (17, 17)]
    assert model(ids).shape == (2, 17, 16)
    assert FunnelTagger(model, 3)(ids).shape == (2, 16, 3)
    assert FunnelClassifier(model, 4)(ids).shape == (2, 4)
    standard = body(block_sizes=(3,), n_decoder_layers=0)  # one block = a standard encoder
    assert standard(ids).shape == (2, 17, 16) and standard.stride == 1


def test_decoder_input_is_upsampled_last_block_plus_first_block_residual():
    torch.manual_seed(0)
    model = body(block_sizes=(1, 1), n_decoder_layers=1)
    ids = torch.randint(7, (2, 1 + 7))
    last, first = model.encode(ids)
    captured = {}

    def keep(module, args):
        captured["g"] = args[0]

    model.decoder[0].register_forward_pre_hook(keep)
    model(ids)
    torch.testing.assert_close(captured["g"], upsample(last, 8, 2) + first)
    # gradients reach the first block through the residual and the pooled block through the upsampling
    FunnelTagger(model, 3)(ids).sum().backward()
    for block in model.blocks:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())


def test_classifier_reads_cls_of_last_block_and_skips_the_decoder():
    torch.manual_seed(0)
    model = FunnelClassifier(body(), 3)
    ids = torch.randint(7, (2, 9))
    calls = []
    model.body.decoder[0].register_forward_hook(lambda *a: calls.append(1))
    logits = model(ids)
    assert not calls
    cls = model.body.encode(ids)[0][:, 0]
    torch.testing.assert_close(logits, model.classifier(torch.tanh(model.pooler(cls))))


def test_seeded_construction_and_forward_are_deterministic():
    ids = torch.randint(7, (3, 12), generator=torch.Generator().manual_seed(1))
    outs = []
    for _ in range(2):
        torch.manual_seed(5)
        outs.append(FunnelTagger(body(), 4)(ids))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    c = Config(seq_len=10)
    a, b = (motif_data(20, c, torch.Generator().manual_seed(3)) for _ in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_model_arguments_are_rejected():
    with pytest.raises(ValueError, match="block_sizes"):
        body(block_sizes=())
    with pytest.raises(ValueError, match="divisible"):
        body(n_heads=3)
    with pytest.raises(ValueError, match="n_decoder_layers >= 1"):
        FunnelTagger(body(n_decoder_layers=0), 3)
    with pytest.raises(ValueError, match="ids must be in"):
        body()(torch.full((1, 5), 7))
    with pytest.raises(ValueError, match="sequence length"):
        body()(torch.zeros(1, 41, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        body()(torch.zeros(1, 5))


# ------------------------------------------------------------------------------------------------- FLOPs


def test_layer_flops_on_a_hand_counted_case():
    # t_q = 2, t_k = 4, d = 3, d_ff = 5: Q, O 2·2·9; K, V 2·4·9; QKᵀ and AV 2·2·4·3; FFN 2·2·3·5
    assert attention_layer_flops(2, 4, 3, 5) == 36 + 72 + 48 + 60 == 216


@pytest.mark.parametrize("length", [17, 12])
def test_analytic_flops_equal_torch_flop_counter(length):
    ids = torch.randint(7, (2, length))
    for model in (
        FunnelClassifier(body(block_sizes=(4,), n_decoder_layers=0), 5),
        FunnelClassifier(body(block_sizes=(2, 2, 2)), 5),
        FunnelTagger(body(block_sizes=(2, 1, 1)), 5),
        FunnelTagger(body(block_sizes=(3,), n_decoder_layers=0), 5),
        body(),
    ):
        assert matmul_flops(model, length) == measured_matmul_flops(model, ids)


def test_pooling_saves_flops_and_the_match_picks_the_deepest_affordable_funnel():
    length = 33
    standard = matmul_flops(body(block_sizes=(6,), n_decoder_layers=0), length)
    funnel = matmul_flops(body(block_sizes=(2, 2, 2), n_decoder_layers=0), length)
    assert funnel < standard  # 6 layers, but 4 of them on 17 or 9 states
    c = Config()
    for task in ("classification", "tagging"):
        k, funnel_flops, standard_flops = matched_block_layers(c, task)
        assert funnel_flops <= standard_flops
        from papers.language.funnel_transformer.experiment import build

        assert matmul_flops(build(c, task, "funnel", k + 1), c.seq_len + 1) > standard_flops


# ------------------------------------------------------------------------------------------ data, config


def test_motif_labels_match_a_brute_force_count():
    c = Config(seq_len=12, n_symbols=3, max_count=2)
    data = motif_data(50, c, torch.Generator().manual_seed(0))
    assert data["ids"].shape == (50, 13) and (data["ids"][:, 0] == 0).all()
    for row in range(50):
        x = (data["ids"][row, 1:] - 1).tolist()
        for i in range(12):
            count = sum(x[j - 1] == 0 and x[j] == 1 for j in range(1, i + 1))
            assert data["tags"][row, i] == min(count, 2)
        assert data["label"][row] == data["tags"][row, -1]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("n_blocks", 1, "n_blocks"), ("d_model", 30, "divisible"), ("lr", 0.0, "lr"),
     ("warmup", 500, "warmup"), ("n_symbols", 1, "n_symbols"), ("seq_len", 2, "pools seq_len")],
)  # fmt: skip
def test_bad_config_values_are_rejected(field, value, message):
    overrides = {field: value}
    if field == "seq_len":
        overrides["n_blocks"] = 3
    with pytest.raises(ValueError, match=message):
        Config(**overrides).validate()


def test_smoke_run(run_smoke):
    from papers.language.funnel_transformer import EXPERIMENT

    result, _ = run_smoke(EXPERIMENT)
    assert len(result.checks) == 4 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == ["figures/accuracy.png", "figures/curves.png"]
    m = result.metrics
    for task in ("classification", "tagging"):
        for model in ("standard", "funnel"):
            assert m[f"{task}_{model}_flops_counted_by_torch"] == m[f"{task}_{model}_flops"]
