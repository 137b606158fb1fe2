"""Sixteen heads: head masks (exact identity and exact removal), importance = finite differences, pruning
orders, the data, statistics, configs and a smoke run."""

from __future__ import annotations

import json
import math

import pytest
import torch

from papers.language.sixteen_heads import (
    HeadMaskedAttention,
    HeadMasks,
    head_importance,
    mask_without,
    normalize_by_layer,
    pruning_order,
    sequence_losses,
)
from papers.language.sixteen_heads.experiment import (
    BOS,
    EOS,
    IGNORE,
    OFFSET,
    PAD,
    Config,
    exact_correct,
    greedy_correct,
    mcnemar_drop_p,
    spearman,
    splits,
    symbol_map,
)
from papers.language.transformer import Transformer, TransformerConfig, TransformerLM


def tiny(seed: int = 0, dtype=torch.float32, **overrides) -> Transformer:
    values = dict(vocab_size=11, d_model=16, n_heads=4, d_ff=32, n_encoder_layers=2, n_decoder_layers=2,
                  dropout=0.0, max_len=12)  # fmt: skip
    torch.manual_seed(seed)
    return Transformer(TransformerConfig(**{**values, **overrides})).to(dtype).eval()


def batch(n: int = 5, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(OFFSET, 11, (n, 6), generator=g)
    src[0, 4:] = PAD  # a padded example
    tgt_in = torch.randint(OFFSET, 11, (n, 5), generator=g)
    tgt_out = torch.randint(OFFSET, 11, (n, 5), generator=g)
    tgt_out[1, 3:] = IGNORE
    return src, tgt_in, tgt_out


def loss_fn(model, src, tgt_in, tgt_out):
    return sequence_losses(model, src, tgt_in, tgt_out, IGNORE)


# ------------------------------------------------------------------------------------------------ masks


def test_all_ones_mask_is_exactly_the_unmasked_model():
    plain = tiny()
    src, tgt_in, _ = batch()
    expected = plain(src, tgt_in)
    wrapped = tiny()
    masks = HeadMasks(wrapped)
    assert masks.shape == (6, 4)
    assert [layer.name for layer in masks.layers] == [
        "enc_self.0", "enc_self.1", "dec_self.0", "dec_self.1", "enc_dec.0", "enc_dec.1",
    ]  # fmt: skip
    assert torch.equal(wrapped(src, tgt_in), expected)  # no gating
    masks.set(masks.ones())
    assert torch.equal(wrapped(src, tgt_in), expected)  # gates of 1: bit-identical
    masks.set(torch.ones(6, src.shape[0], 4))  # per-example gates of 1
    assert torch.equal(wrapped(src, tgt_in), expected)
    masks.clear()
    assert torch.equal(wrapped(src, tgt_in), expected)
    assert wrapped.state_dict().keys() == plain.state_dict().keys()


def test_zero_mask_removes_a_head_exactly():
    src, tgt_in, _ = batch()
    model = tiny()
    masks = HeadMasks(model)
    layer, head, d_k = 4, 2, 4  # an encoder-decoder head
    masks.set(mask_without(masks.shape, [(layer, head)]))
    masked = model(src, tgt_in)
    # the same model with that head's value projection zeroed: its output is exactly 0
    reference = tiny()
    ref_masks = HeadMasks(reference)
    w_v = ref_masks.modules[layer].w_v
    with torch.no_grad():
        w_v.weight[head * d_k : (head + 1) * d_k] = 0.0
        w_v.bias[head * d_k : (head + 1) * d_k] = 0.0
    torch.testing.assert_close(masked, reference(src, tgt_in), rtol=0, atol=1e-6)
    # and the masked head's own parameters no longer matter at all
    with torch.no_grad():
        module = masks.modules[layer]
        for w in (module.w_q, module.w_k, module.w_v):
            w.weight[head * d_k : (head + 1) * d_k] += 3.0
    assert torch.equal(model(src, tgt_in), masked)
    masks.clear()
    assert not torch.allclose(model(src, tgt_in), masked)


def test_masked_attention_bad_mask_shape_and_bad_model():
    attention = HeadMaskedAttention(16, 4)
    x = torch.randn(2, 3, 16)
    attention.head_mask = torch.ones(3)
    with pytest.raises(ValueError, match="head_mask must have shape"):
        attention(x, x)
    attention.head_mask = torch.ones(5, 4)
    with pytest.raises(ValueError, match="head_mask must have shape"):
        attention(x, x)
    masks = HeadMasks(tiny())
    with pytest.raises(ValueError, match="mask must have shape"):
        masks.set(torch.ones(5, 4))
    with pytest.raises(ValueError, match="kind must be one of"):
        masks.layer_indices("cross")
    lm = TransformerLM(TransformerConfig(vocab_size=11, d_model=16, n_heads=4, d_ff=32, n_decoder_layers=1))
    with pytest.raises(TypeError, match="encoder-decoder Transformer"):
        HeadMasks(lm)


def test_head_masks_twice_reuses_the_masked_modules():
    model = tiny()
    first = HeadMasks(model)
    second = HeadMasks(model)
    assert all(a is b for a, b in zip(first.modules, second.modules, strict=True))


# ------------------------------------------------------------------------------------------- importance


def test_importance_equals_finite_differences_of_the_mask():
    model = tiny(dtype=torch.float64)
    masks = HeadMasks(model)
    src, tgt_in, tgt_out = batch(4)
    scores = head_importance(masks, [(src, tgt_in, tgt_out)], loss_fn, normalize=False)
    eps = 1e-6
    expected = torch.zeros(masks.shape, dtype=torch.float64)
    for i in range(masks.shape[0]):
        for h in range(masks.shape[1]):
            up, down = masks.ones().double(), masks.ones().double()
            up[i, h] += eps
            down[i, h] -= eps
            masks.set(up)
            plus = loss_fn(model, src, tgt_in, tgt_out)
            masks.set(down)
            minus = loss_fn(model, src, tgt_in, tgt_out)
            expected[i, h] = ((plus - minus) / (2 * eps)).abs().mean()  # E_x |dL(x)/dxi|
    masks.clear()
    torch.testing.assert_close(scores.double(), expected, rtol=1e-4, atol=1e-7)
    # the absolute value is per example: never below |mean gradient| of the batch loss
    batch_scores = torch.zeros(masks.shape)
    gates = masks.ones().requires_grad_(True)
    masks.set(gates)
    loss_fn(model, src, tgt_in, tgt_out).mean().backward()
    batch_scores = gates.grad.abs().float()
    assert (scores >= batch_scores - 1e-6).all() and (scores > batch_scores + 1e-6).any()


def test_importance_is_head_output_dot_its_gradient():
    model = tiny(dtype=torch.float64)
    masks = HeadMasks(model)
    src, tgt_in, tgt_out = (t[:1] for t in batch(2))
    scores = head_importance(masks, [(src, tgt_in, tgt_out)], loss_fn, normalize=False)
    masks.clear()
    for module in masks.modules:
        module.keep_head_output = True
    loss = loss_fn(model, src, tgt_in, tgt_out).sum()
    outputs = [module.last_head_output for module in masks.modules]
    grads = torch.autograd.grad(loss, outputs)
    manual = torch.stack([(o * g).sum(dim=(0, 2, 3)).abs() for o, g in zip(outputs, grads, strict=True)])
    torch.testing.assert_close(scores.double(), manual, rtol=1e-5, atol=1e-9)


def test_importance_normalisation_restores_the_base_mask_and_checks_inputs():
    model = tiny()
    masks = HeadMasks(model)
    data = batch(3)
    base = mask_without(masks.shape, [(0, 1)])
    scores = head_importance(masks, [data], loss_fn, base_mask=base)
    torch.testing.assert_close(scores.norm(dim=1), torch.ones(6))
    assert torch.equal(masks.modules[0].head_mask, base[0])
    with pytest.raises(ValueError, match="base_mask must have shape"):
        head_importance(masks, [data], loss_fn, base_mask=torch.ones(2, 2))
    with pytest.raises(ValueError, match="at least one example"):
        head_importance(masks, [], loss_fn)
    with pytest.raises(ValueError, match="per-example losses"):
        head_importance(masks, [data], lambda *a: loss_fn(*a).sum())
    with pytest.raises(ValueError, match="n_layers, n_heads"):
        normalize_by_layer(torch.ones(3))
    torch.testing.assert_close(normalize_by_layer(torch.tensor([[3.0, 4.0], [0.0, 0.0]])),
                               torch.tensor([[0.6, 0.8], [0.0, 0.0]]))  # fmt: skip


def test_pruning_order_is_ascending_and_respects_alive_and_layers():
    scores = torch.tensor([[0.3, 0.1, 0.9], [0.2, 0.1, 0.5]])
    assert pruning_order(scores) == [(0, 1), (1, 1), (1, 0), (0, 0), (1, 2), (0, 2)]
    alive = torch.tensor([[1, 0, 1], [1, 1, 1]])
    assert pruning_order(scores, alive) == [(1, 1), (1, 0), (0, 0), (1, 2), (0, 2)]
    assert pruning_order(scores, layers=[1]) == [(1, 1), (1, 0), (1, 2)]
    assert mask_without((2, 3), [(1, 2)]).tolist() == [[1, 1, 1], [1, 1, 0]]
    with pytest.raises(ValueError, match="n_layers, n_heads"):
        pruning_order(torch.ones(4))


# ------------------------------------------------------------------------------------- data, statistics


def test_translation_data_is_mapped_reversal_and_deterministic():
    config = Config(n_train=50, n_dev=10, n_test=10)
    data = splits(config, seed=3)
    mapping = symbol_map(config, 3)
    assert sorted(mapping.tolist()) == list(range(OFFSET, OFFSET + config.num_symbols))
    assert (mapping != torch.arange(OFFSET, OFFSET + config.num_symbols)).any()
    src, tgt_in, tgt_out = data["train"]["src"], data["train"]["tgt_in"], data["train"]["tgt_out"]
    for b in range(len(src)):
        length = int((src[b] != PAD).sum()) - 1
        assert config.min_len <= length <= config.max_len and src[b, length] == EOS
        expected = mapping[src[b, :length].flip(0) - OFFSET]
        assert torch.equal(tgt_out[b, :length], expected) and tgt_out[b, length] == EOS
        assert torch.equal(tgt_in[b, 1 : length + 1], expected)
    again = splits(config, seed=3)
    assert all(torch.equal(data["test"][k], again["test"][k]) for k in data["test"])
    assert not torch.equal(data["dev"]["src"], data["test"]["src"])


def test_teacher_forced_exactness_equals_greedy_decoding():
    model = tiny(seed=4)
    src = batch(8)[0]
    pred = model.greedy_decode(src, bos_id=BOS, eos_id=EOS, max_new_tokens=5)
    tgt_out = pred.clone()
    after_eos = (pred == EOS).long().cumsum(1) - (pred == EOS).long() > 0
    tgt_out[after_eos] = IGNORE
    tgt_in = torch.cat([torch.full((len(src), 1), BOS), pred[:, :-1]], 1)
    data = {"src": src, "tgt_in": tgt_in, "tgt_out": tgt_out}
    assert exact_correct(model, data).all() and greedy_correct(model, data).all()
    wrong = tgt_out.clone()
    wrong[3, 0] = OFFSET + (int(wrong[3, 0]) - OFFSET + 1) % 8 if wrong[3, 0] >= OFFSET else OFFSET
    data["tgt_out"] = wrong
    expected = torch.ones(len(src), dtype=torch.bool)
    expected[3] = False
    assert torch.equal(exact_correct(model, data), expected)


def test_mcnemar_and_spearman():
    base = torch.tensor([True] * 10)
    other = base.clone()
    other[:3] = False
    assert mcnemar_drop_p(base, other) == pytest.approx(1 / 8)
    assert mcnemar_drop_p(base, base) == 1.0
    assert mcnemar_drop_p(~base, base) == 1.0  # an improvement is never a significant drop
    with pytest.raises(ValueError, match="differ"):
        mcnemar_drop_p(base, base[:3])
    assert spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("steps", 0, "steps must be >= 1"),
        ("min_len", 9, "min_len <= max_len"),
        ("n_heads", 5, "divisible"),
        ("prune_step", 0.0, "prune_step"),
        ("significance", 1.5, "significance"),
        ("dropout", 1.0, "dropout"),
        ("peak_lr", 0.0, "peak_lr"),
    ],
)
def test_config_rejects_bad_values(key, value, match):
    with pytest.raises(ValueError, match=match):
        Config(**{key: value}).validate()


# ----------------------------------------------------------------------------------------------- smoke


def test_smoke_run_is_deterministic(run_smoke):
    from papers.language.sixteen_heads import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)

    def untimed(metrics):  # NaN (a constant drop pattern has no rank correlation) compares equal as text
        return json.dumps({k: v for k, v in metrics.items() if not k.endswith("time_s")}, sort_keys=True)

    assert untimed(result.metrics) == untimed(again.metrics)
    assert len(result.checks) == 5 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == [
        f"figures/{n}.png" for n in ("head_ablation", "pruning_curves", "training")
    ]
    assert {p.stem for p in (run_dir / "stages").glob("*.json")} == {"train", "ablations", "pruning"}
    fractions = result.metrics["pruning_fractions"]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert result.metrics["pruning_importance_accuracy"][0] == result.metrics["test_accuracy"]
