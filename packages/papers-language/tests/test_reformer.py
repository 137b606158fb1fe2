import math

import pytest
import torch
from papers_testing import untimed

from papers.language.reformer import (
    ChunkedFeedForward,
    ReformerLM,
    RevBlock,
    SharedQKAttention,
    full_shared_qk_attention,
    hash_vectors,
    lsh_attention,
    random_rotations,
    reversible_stack,
)

F64 = torch.float64


def _qkv(b=2, h=2, length=32, d=8, dv=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, h, length, d, generator=g, dtype=F64),
        torch.randn(b, h, length, dv, generator=g, dtype=F64),
    )


# ---------- hashing ----------


def test_hash_is_rotation_consistent_scale_invariant_and_antipodal():
    torch.manual_seed(0)
    x, _ = _qkv(length=40, d=6)
    rot = random_rotations(2, 6, 3, 8, dtype=F64)
    buckets = hash_vectors(x, rot, 8)
    assert buckets.shape == (2, 2, 3, 40) and buckets.min() >= 0 and buckets.max() < 8
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=F64))  # an orthogonal change of basis
    assert torch.equal(hash_vectors(x @ q, torch.einsum("ed,hdrk->herk", q.T, rot), 8), buckets)
    assert torch.equal(hash_vectors(3.7 * x, rot, 8), buckets)
    assert torch.equal(hash_vectors(-x, rot, 8), (buckets + 4) % 8)  # argmax over [xR; −xR]


def test_hash_puts_close_vectors_together_more_often_than_far_ones():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 500, 16, dtype=F64)
    near = x + 0.05 * torch.randn_like(x)
    far = torch.randn_like(x)
    rot = random_rotations(1, 16, 1, 8, dtype=F64)
    same_near = (hash_vectors(x, rot, 8) == hash_vectors(near, rot, 8)).float().mean()
    same_far = (hash_vectors(x, rot, 8) == hash_vectors(far, rot, 8)).float().mean()
    assert same_near > 0.85 and same_far < 0.3


def test_hash_rejects_bad_buckets_and_shapes():
    with pytest.raises(ValueError, match="n_buckets must be 1 or an even"):
        random_rotations(2, 4, 1, 3)
    with pytest.raises(ValueError, match="n_hashes"):
        random_rotations(2, 4, 0, 4)
    with pytest.raises(ValueError, match="do not fit"):
        hash_vectors(torch.randn(1, 2, 8, 4), random_rotations(2, 5, 1, 4), 4)
    with pytest.raises(ValueError, match=r"\(batch, heads, length, d_k\)"):
        hash_vectors(torch.randn(8, 4), random_rotations(2, 4, 1, 4), 4)


# ---------- attention ----------


@pytest.mark.parametrize(("chunk", "n_hashes"), [(32, 1), (16, 1), (16, 3)])
def test_lsh_with_one_bucket_equals_full_shared_qk_attention(chunk, n_hashes):
    """One bucket and two chunks: every earlier key is in the window, in every round."""
    qk, v = _qkv()
    rot = random_rotations(2, 8, n_hashes, 1, dtype=F64)
    full = full_shared_qk_attention(qk, v, causal=True)
    assert torch.allclose(lsh_attention(qk, v, rot, n_buckets=1, chunk_size=chunk), full, atol=1e-10)
    if chunk == 32:
        both = full_shared_qk_attention(qk, v, causal=False)
        out = lsh_attention(qk, v, rot, n_buckets=1, chunk_size=chunk, causal=False)
        assert torch.allclose(out, both, atol=1e-10)


def test_lsh_in_one_chunk_is_full_attention_restricted_to_the_bucket():
    qk, v = _qkv(length=16)
    rot = random_rotations(2, 8, 1, 4, dtype=F64)
    out, buckets = lsh_attention(qk, v, rot, n_buckets=4, chunk_size=16, return_buckets=True)
    k = qk / qk.norm(dim=-1, keepdim=True)
    logits = qk @ k.transpose(-1, -2) / math.sqrt(8)
    b = buckets[:, :, 0]
    pos = torch.arange(16)
    allowed = (b[..., :, None] == b[..., None, :]) & (pos[None, :] <= pos[:, None])
    logits = logits.masked_fill(~allowed, -1e9).masked_fill(torch.eye(16, dtype=torch.bool), -1e5)
    assert torch.allclose(out, logits.softmax(-1) @ v, atol=1e-10)


def test_self_attention_only_when_nothing_else():
    qk, v = _qkv(length=8)
    out = full_shared_qk_attention(qk, v, causal=True)
    assert torch.allclose(out[:, :, 0], v[:, :, 0])  # position 0 has only itself
    # with a one-hot value per position, the weight a query puts on itself is ~exp(-1e5) = 0
    eye = torch.eye(8, dtype=F64).expand(2, 2, 8, 8)
    weights = full_shared_qk_attention(qk, eye, causal=True)
    assert weights.diagonal(dim1=-2, dim2=-1)[..., 1:].abs().max() < 1e-12
    assert torch.allclose(weights.sum(-1), torch.ones(2, 2, 8, dtype=F64))


def test_lsh_rounds_are_combined_and_duplicates_not_double_counted():
    """With R identical rounds the output equals one round (weights 1/R, logits − log R)."""
    qk, v = _qkv(length=32)
    one = random_rotations(2, 8, 1, 4, dtype=F64)
    out1 = lsh_attention(qk, v, one, n_buckets=4, chunk_size=8)
    out3 = lsh_attention(qk, v, one.expand(2, 8, 3, 2).contiguous(), n_buckets=4, chunk_size=8)
    assert torch.allclose(out1, out3, atol=1e-10)


def test_causal_masking_holds_for_full_and_lsh():
    torch.manual_seed(0)
    qk, v = _qkv(length=32)
    changed_qk, changed_v = qk.clone(), v.clone()
    changed_qk[:, :, 20:] = torch.randn_like(qk[:, :, 20:])
    changed_v[:, :, 20:] = torch.randn_like(v[:, :, 20:])
    full = full_shared_qk_attention(qk, v)
    assert torch.allclose(full[:, :, :20], full_shared_qk_attention(changed_qk, changed_v)[:, :, :20])
    # LSH: no gradient ever flows from a future position to an earlier output
    rot = random_rotations(2, 8, 2, 4, dtype=F64)
    qk.requires_grad_(True)
    v.requires_grad_(True)
    out = lsh_attention(qk, v, rot, n_buckets=4, chunk_size=8)
    g_qk, g_v = torch.autograd.grad(out[:, :, :20].sum(), (qk, v))
    assert g_qk[:, :, 20:].abs().max() == 0 and g_v[:, :, 20:].abs().max() == 0
    assert g_v[:, :, :20].abs().max() > 0


def test_attention_layer_shapes_and_errors():
    layer = SharedQKAttention(16, 4, mode="lsh", n_hashes=2, n_buckets=4, chunk_size=8)
    x = torch.randn(3, 24, 16)
    assert layer(x).shape == (3, 24, 16)
    rot = layer.sample_rotations()
    assert torch.equal(layer(x, rot), layer(x, rot))
    with pytest.raises(ValueError, match="multiple of chunk_size"):
        layer(torch.randn(3, 20, 16))
    with pytest.raises(ValueError, match="mode must be"):
        SharedQKAttention(16, 4, mode="sparse")
    with pytest.raises(ValueError, match="divisible"):
        SharedQKAttention(15, 4)


def test_chunked_feed_forward_equals_unchunked():
    torch.manual_seed(0)
    ff = ChunkedFeedForward(8, 32, n_chunks=5)
    x = torch.randn(2, 23, 8)
    assert torch.allclose(ff(x), ff.ffn(x), atol=1e-6)
    with pytest.raises(ValueError, match="n_chunks"):
        ChunkedFeedForward(8, 32, n_chunks=0)


# ---------- reversible layers ----------


def _blocks(n, mode="lsh", ff_chunks=3):
    torch.manual_seed(0)
    blocks = [
        RevBlock(16, 2, 32, ff_chunks=ff_chunks, mode=mode, n_hashes=2, n_buckets=4, chunk_size=8)
        for _ in range(n)
    ]
    return [b.double() for b in blocks]


@pytest.mark.parametrize("mode", ["full", "lsh"])
def test_rev_block_inverse_reconstructs_inputs(mode):
    (block,) = _blocks(1, mode)
    x1, x2 = torch.randn(2, 2, 24, 16, dtype=F64)
    rot = block.attention.sample_rotations(dtype=F64)
    with torch.no_grad():
        y1, y2 = block(x1, x2, rot)
        r1, r2 = block.inverse(y1, y2, rot)
    assert (r1 - x1).abs().max() < 1e-5 and (r2 - x2).abs().max() < 1e-5
    assert (r1 - x1).abs().max() < 1e-12  # float64: exact up to round-off
    block.float()
    with torch.no_grad():
        y1, y2 = block(x1.float(), x2.float(), rot.float() if rot is not None else None)
        r1, r2 = block.inverse(y1, y2, rot.float() if rot is not None else None)
    assert (r1 - x1.float()).abs().max() < 1e-5 and (r2 - x2.float()).abs().max() < 1e-5


@pytest.mark.parametrize("mode", ["full", "lsh"])
def test_reversible_gradients_equal_plain_autograd(mode):
    blocks = _blocks(3, mode)
    rots = [b.attention.sample_rotations(dtype=F64) for b in blocks]
    x1, x2 = torch.randn(2, 2, 24, 16, dtype=F64)
    w1, w2 = torch.randn(2, 2, 24, 16, dtype=F64)
    params = [p for b in blocks for p in b.parameters()]
    grads = []
    for reversible in (True, False):
        a1, a2 = x1.clone().requires_grad_(True), x2.clone().requires_grad_(True)
        if reversible:
            y1, y2 = reversible_stack(blocks, a1, a2, rots, ff_chunks=3)
        else:
            y1, y2 = a1, a2
            for b, r in zip(blocks, rots, strict=True):
                y1, y2 = b(y1, y2, r)
        loss = (y1 * w1).sum() + (y2 * w2).sum()
        grads.append(torch.autograd.grad(loss, [a1, a2, *params]))
    for g_rev, g_plain in zip(*grads, strict=True):
        assert torch.allclose(g_rev, g_plain, atol=1e-10)


def test_reversible_stack_gradcheck():
    torch.manual_seed(0)
    blocks = [RevBlock(8, 2, 16, ff_chunks=2, mode="full").double() for _ in range(2)]
    x1, x2 = (0.5 * torch.randn(2, 1, 6, 8, dtype=F64)).unbind(0)
    x1.requires_grad_(True)
    x2.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b: reversible_stack(blocks, a, b, [None, None], ff_chunks=2), (x1, x2), fast_mode=True
    )


def test_reversible_model_saves_activations_flat_in_depth():
    from papers.language.reformer.experiment import activation_peak, duplication_batch

    ids = duplication_batch(2, 32, 16, torch.Generator().manual_seed(0))
    peaks = {}
    for depth in (1, 4):
        torch.manual_seed(0)
        model = ReformerLM(
            16,
            32,
            d_model=16,
            n_heads=2,
            d_ff=32,
            n_layers=depth,
            n_hashes=2,
            n_buckets=4,
            chunk_size=8,
            ff_chunks=2,
        )
        for reversible in (True, False):
            model.reversible = reversible
            peaks[depth, reversible] = activation_peak(model, ids)[0]
    assert peaks[1, True] == peaks[4, True] > 0
    assert peaks[4, False] > 3 * peaks[1, False] / 2 and peaks[4, False] > peaks[4, True]


# ---------- model ----------


def test_model_shapes_determinism_and_errors():
    def make():
        torch.manual_seed(0)
        return ReformerLM(10, 32, d_model=16, n_heads=2, d_ff=32, n_hashes=2, n_buckets=4, chunk_size=8)

    ids = torch.randint(10, (3, 32))
    torch.manual_seed(1)
    a = make()(ids)
    torch.manual_seed(1)
    assert a.shape == (3, 32, 10) and torch.equal(a, make()(ids))
    with pytest.raises(ValueError, match="integer"):
        make()(torch.randn(3, 32))
    with pytest.raises(ValueError, match="exceeds max_len"):
        make()(torch.randint(10, (3, 40)))
    with pytest.raises(ValueError, match="n_layers"):
        ReformerLM(10, 32, n_layers=0)


def test_duplication_batch_is_0w0w():
    from papers.language.reformer.experiment import duplication_batch

    ids = duplication_batch(5, 12, 7, torch.Generator().manual_seed(0))
    assert ids.shape == (5, 12) and (ids[:, 0] == 0).all() and (ids[:, 6] == 0).all()
    assert torch.equal(ids[:, 1:6], ids[:, 7:]) and ids[:, 1:6].min() >= 1 and ids.max() < 7
    with pytest.raises(ValueError, match="even"):
        duplication_batch(5, 11, 7, torch.Generator())


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("steps", 0),
        ("seq_len", 63),
        ("chunk_size", 7),
        ("n_buckets", 3),
        ("train_hashes", (1,)),
        ("memory_depths", (4, 2)),
        ("lr", 0.0),
        ("threads", -1),
        ("vocab_size", 2),
    ],
)
def test_config_validation(key, value):
    from papers.language.reformer.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.language.reformer import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert untimed(result.metrics) == untimed(again.metrics)
    assert len(result.checks) == 6 and all(math.isfinite(c.measured) for c in result.checks)
    assert (
        result.metrics["reversible_memory_growth_ratio"] == 1.0 < result.metrics["plain_memory_growth_ratio"]
    )
    assert sorted(result.figures) == [
        f"figures/{n}.png" for n in ("accuracy_vs_hashes", "memory_vs_depth", "training")
    ]
    stages = {p.stem for p in (run_dir / "stages").glob("*.json")}
    assert stages == {"train_full", "train_lsh1", "train_lsh2", "memory", "gradients"}
