"""Sparse Transformer: the factorised masks, gathered attention, the model, config errors, smoke run."""

from __future__ import annotations

import math

import pytest
import torch

from papers.language.sparse_transformer import (
    SparseTransformerLM,
    attended_pairs,
    default_stride,
    fixed_pattern,
    gathered_attention,
    mask_to_index,
    pattern_masks,
    reach_within,
    strided_pattern,
)
from papers.language.transformer.model import scaled_dot_product_attention


def causal(n: int) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool).tril()


# ------------------------------------------------------------------------------------------------ masks


def test_strided_sets_match_the_definitions():
    n, l = 30, 5
    a1, a2 = strided_pattern(n, l)
    for i in range(n):
        assert set(a1[i].nonzero().flatten().tolist()) == {j for j in range(n) if i - l < j <= i}
        assert set(a2[i].nonzero().flatten().tolist()) == {j for j in range(i + 1) if (i - j) % l == 0}
    assert int(a1.sum(1).max()) == l and int(a2.sum(1).max()) == math.ceil(n / l)


def test_fixed_sets_match_the_definitions():
    n, l, c = 30, 6, 2
    a1, a2 = fixed_pattern(n, l, c)
    for i in range(n):
        assert set(a1[i].nonzero().flatten().tolist()) == {j for j in range(i + 1) if j // l == i // l}
        assert set(a2[i].nonzero().flatten().tolist()) == {j for j in range(i + 1) if j % l >= l - c}
    assert int(a1.sum(1).max()) == l


@pytest.mark.parametrize("pattern", ["dense", "strided", "fixed"])
@pytest.mark.parametrize("combine", ["interleaved", "merged", "heads"])
def test_masks_are_causal_and_keep_the_diagonal(pattern, combine):
    masks = pattern_masks(pattern, 37, 3, summary=2, combine=combine, n_heads=4)
    assert masks.dtype == torch.bool and masks.shape[-2:] == (37, 37)
    assert not (masks & ~causal(37)).any()  # never a future key
    empty = ~masks.any(-1)  # (layers, heads, n): queries with no key at all
    if pattern == "fixed" and combine != "merged":
        # only in fixed A(2), before the first summary column (l = 7, c = 2): queries 0..4
        a2 = masks[1] if combine == "interleaved" else masks[:, -1]
        assert torch.equal((~a2.any(-1)).nonzero()[:, -1].unique(), torch.arange(5))
        assert not empty[0 if combine == "interleaved" else (slice(None), 0)].any()
    else:
        assert not empty.any()  # every query attends at least to itself


@pytest.mark.parametrize("n", [16, 64, 100, 256])
@pytest.mark.parametrize("pattern", ["strided", "fixed"])
@pytest.mark.parametrize("combine", ["interleaved", "merged", "heads"])
def test_two_layers_connect_every_causal_pair_and_one_does_not(n, pattern, combine):
    masks = pattern_masks(pattern, n, 2, summary=1, combine=combine, n_heads=2)
    reach = reach_within(masks)
    assert torch.equal(reach, causal(n))
    assert not torch.equal(reach_within(masks[:1]), causal(n))


def test_reach_of_a_local_window_grows_one_window_per_layer():
    a1, _ = strided_pattern(20, 4)
    stack = a1.expand(3, 20, 20)
    assert torch.equal(reach_within(stack), causal(20) & ~causal(20).tril(-10))  # i − j ≤ 3 · 3
    with pytest.raises(ValueError, match="layers"):
        reach_within(a1)


def test_pair_counts_follow_n_sqrt_n():
    for n in (64, 256, 1024):
        l = default_stride(n)
        assert l == math.isqrt(n)
        a1, a2 = strided_pattern(n, l)
        # Σ_i min(i + 1, l) and Σ_i (⌊i / l⌋ + 1); their union counts the diagonal once
        assert attended_pairs(a1) == sum(min(i + 1, l) for i in range(n))
        assert attended_pairs(a2) == sum(i // l + 1 for i in range(n))
        assert attended_pairs(a1 | a2) == attended_pairs(a1) + attended_pairs(a2) - n
        assert attended_pairs(a1 | a2) < 2 * n * math.sqrt(n) < attended_pairs(causal(n))
    assert default_stride(1) == 1 and default_stride(65) == 9


def test_pattern_errors():
    with pytest.raises(ValueError, match="pattern"):
        pattern_masks("banded", 8, 1)
    with pytest.raises(ValueError, match="combine"):
        pattern_masks("strided", 8, 1, combine="sum")
    with pytest.raises(ValueError, match="even"):
        pattern_masks("strided", 8, 1, combine="heads", n_heads=3)
    with pytest.raises(ValueError, match="summary"):
        fixed_pattern(8, 4, 5)
    with pytest.raises(ValueError, match="stride"):
        strided_pattern(8, 0)
    with pytest.raises(ValueError, match="length"):
        strided_pattern(0, 2)


# ------------------------------------------------------------------------------------- gathered kernel


@pytest.mark.parametrize("pattern", ["dense", "strided", "fixed"])
def test_gathered_attention_equals_masked_dense(pattern):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 50, 8, generator=g) for _ in range(3))
    mask = pattern_masks(pattern, 50, 1, summary=2)[0, 0]
    index, valid = mask_to_index(mask, chunk=7)
    assert index.shape[1] == int(mask.sum(1).max()) and torch.equal(valid.sum(1), mask.sum(1))
    assert mask.gather(1, index)[valid].all()  # the listed keys are allowed, distinct and ascending
    assert (index[:, 1:] > index[:, :-1])[valid[:, 1:]].all()
    torch.testing.assert_close(
        gathered_attention(q, k, v, index, valid), scaled_dot_product_attention(q, k, v, mask)[0]
    )


def test_masked_attention_with_a_full_mask_is_dense_attention():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 12, 4, generator=g) for _ in range(3))
    full = torch.ones(12, 12, dtype=torch.bool)
    dense = (q @ k.transpose(-1, -2) / 2).softmax(-1) @ v
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, full)[0], dense)
    torch.testing.assert_close(gathered_attention(q, k, v, *mask_to_index(full)), dense)


def test_gathered_attention_gradcheck_and_shape_errors():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 6, 3, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    index, valid = mask_to_index(strided_pattern(6, 2)[1])
    assert torch.autograd.gradcheck(lambda a, b, c: gathered_attention(a, b, c, index, valid), (q, k, v))
    with pytest.raises(ValueError, match="match"):
        gathered_attention(q[:, :5], k, v, index, valid)
    with pytest.raises(ValueError, match="mask"):
        mask_to_index(torch.ones(3, 4, dtype=torch.bool))


# ------------------------------------------------------------------------------------------------ model


def small(pattern: str = "strided", seed: int = 0, **kw) -> SparseTransformerLM:
    torch.manual_seed(seed)
    kw = {"d_model": 16, "n_heads": 2, "n_layers": 2, "stride": 4, "summary": 1, **kw}
    return SparseTransformerLM(11, 16, pattern=pattern, **kw).eval()


def ids(*shape, seed: int = 3) -> torch.Tensor:
    return torch.randint(0, 11, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("pattern", ["dense", "strided", "fixed"])
def test_model_is_causal(pattern):
    model, x = small(pattern), ids(2, 16)
    y = x.clone()
    y[:, 9:] = ids(2, 7, seed=8)
    with torch.no_grad():
        a, b = model(x), model(y)
    assert a.shape == (2, 16, 11)
    torch.testing.assert_close(a[:, :9], b[:, :9])
    assert not torch.allclose(a[:, 9:], b[:, 9:])


def test_sparse_model_ignores_keys_outside_the_pattern_in_one_layer():
    # one strided layer (interleaved → A(1) only, window 4): the output at 10 does not see position 5
    model, x = small("strided", n_layers=1, combine="interleaved"), ids(1, 16)
    y = x.clone()
    y[0, 5] = (x[0, 5] + 1) % 11
    with torch.no_grad():
        a, b = model(x), model(y)
    torch.testing.assert_close(a[0, 10], b[0, 10])
    assert not torch.allclose(a[0, 6], b[0, 6])
    dense = small("dense", n_layers=1)
    with torch.no_grad():
        assert not torch.allclose(dense(x)[0, 10], dense(y)[0, 10])


def test_a_full_pattern_model_equals_the_dense_model():
    # stride ≥ n makes A(1) the whole causal set: the strided model is the dense model, weights shared
    dense, strided = small("dense"), small("strided", stride=16)
    strided.load_state_dict(dense.state_dict())
    x = ids(3, 16)
    with torch.no_grad():
        torch.testing.assert_close(strided(x), dense(x))


def test_init_scales_the_output_projections():
    deep, shallow = small(n_layers=8), small(n_layers=1)

    def std(model, name):
        return torch.cat(
            [getattr(b, name[0]).__getattr__(name[1]).weight.flatten() for b in model.blocks]
        ).std()

    for name in (("attn", "w_o"), ("ff", "w_2")):
        ratio = (std(shallow, name) / std(deep, name)).item()
        assert ratio == pytest.approx(math.sqrt(8 * 2) / math.sqrt(2), rel=0.25)
    assert deep.embed.weight.std().item() == pytest.approx(0.125 / 4, rel=0.2)


def test_recompute_gives_the_same_gradients():
    x = ids(2, 16)
    grads = []
    for flag in (False, True):
        model = small(recompute=flag).train()
        model(x).square().mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_image_positions_and_input_errors():
    torch.manual_seed(0)
    model = SparseTransformerLM(18, 64, d_model=16, n_heads=2, stride=8, image_shape=(8, 8), out_vocab=17)
    assert len(model.pos) == 2 and model(ids(2, 20).clamp(max=17)).shape == (2, 20, 17)
    with pytest.raises(ValueError, match="exceeds"):
        model(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"\[0, 18\)"):
        model(torch.full((1, 4), 18))
    with pytest.raises(ValueError, match="divisible"):
        SparseTransformerLM(5, 8, d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="image_shape"):
        SparseTransformerLM(5, 64, d_model=8, n_heads=2, image_shape=(4, 4))


def test_same_seed_same_model():
    x = ids(1, 16)
    with torch.no_grad():
        torch.testing.assert_close(small(seed=4)(x), small(seed=4)(x))
        assert not torch.allclose(small(seed=4)(x), small(seed=5)(x))


# ------------------------------------------------------------------------------------------- experiment


def test_config_errors():
    from papers.language.sparse_transformer.experiment import Config

    for bad, match in (
        ({"patterns": ("strided", "fixed")}, "patterns"),
        ({"summary": 9}, "summary"),
        ({"steps": 0}, "steps"),
        ({"combine": "sum"}, "combine"),
        ({"d_model": 30, "n_heads": 4}, "divisible"),
        ({"timing_lengths": ()}, "timing_lengths"),
    ):
        with pytest.raises(ValueError, match=match):
            Config(**bad).validate()
    Config().validate()


def test_digits_data_and_shift():
    from papers.language.sparse_transformer.experiment import BOS, digit_sequences, shift_right

    train, test = digit_sequences()
    assert train.shape == (1500, 64) and test.shape == (297, 64)
    assert 0 <= int(train.min()) and int(train.max()) == 16
    x = shift_right(train[:2])
    assert (x[:, 0] == BOS).all() and torch.equal(x[:, 1:], train[:2, :-1])


def test_smoke_run(run_smoke):
    from papers.language.sparse_transformer import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    m = result.metrics
    assert m["dense_pairs_per_layer_n64"] == 64 * 65 // 2 > m["strided_pairs_per_layer_n64"]
    assert m["dense_pairs_exponent"] == pytest.approx(2.0, abs=0.02)
    assert m["gathered_vs_masked_max_abs_diff"] < 1e-5
    assert len(result.checks) == 7 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == [f"figures/{n}.png" for n in ("cost", "curves", "masks", "samples")]
    stages = {p.stem for p in (run_dir / "stages").glob("*.json")}
    assert {"cost_and_reach", "kernel_timing", "train_dense_seed0", "train_strided_seed0"} <= stages
