"""Transformer: attention and masks, positional encoding, loss, schedule, save/load, configs, smoke run."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from papers.language.transformer import (
    LSTMSeq2Seq,
    MultiHeadAttention,
    Transformer,
    TransformerConfig,
    TransformerLM,
    label_smoothed_loss,
    make_optimizer,
    noam_lr,
    scaled_dot_product_attention,
    sinusoidal_positional_encoding,
)
from papers.language.transformer.experiment import BOS, EOS, IGNORE, OFFSET, PAD, Config, seq2seq_data


def small_config(**overrides) -> TransformerConfig:
    values = dict(
        vocab_size=13,
        d_model=16,
        n_heads=4,
        d_ff=32,
        n_encoder_layers=2,
        n_decoder_layers=2,
        dropout=0.0,
        max_len=24,
    )
    return TransformerConfig(**{**values, **overrides})


def model(cls=Transformer, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return cls(small_config(**overrides)).eval()


def ids(*shape, low: int = OFFSET, high: int = 13, seed: int = 1) -> torch.Tensor:
    return torch.randint(low, high, shape, generator=torch.Generator().manual_seed(seed))


# -------------------------------------------------------------------------------------------- attention


def test_attention_rows_sum_to_one_and_masked_keys_get_zero_weight():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 5, 8, generator=g) for _ in range(3))
    mask = torch.rand(3, 2, 5, 5, generator=g) > 0.4
    mask[..., 0] = True  # every query may attend somewhere
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, 5))
    assert (weights[~mask] == 0).all() and (weights[mask] > 0).all()
    torch.testing.assert_close(out, weights @ v)
    # unmasked: the plain formula
    _, full = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(full, (q @ k.transpose(-1, -2) / math.sqrt(8)).softmax(-1))


def test_attention_with_no_allowed_key_gives_zero_weights_and_finite_gradients():
    q, k, v = (torch.randn(1, 1, 2, 4, requires_grad=True) for _ in range(3))
    mask = torch.tensor([[True, False], [False, False]])
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert (weights[0, 0, 1] == 0).all() and (out[0, 0, 1] == 0).all()
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_attention_gradcheck():
    g = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(1, 2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3)
    )
    mask = torch.ones(3, 3, dtype=torch.bool).tril()
    assert torch.autograd.gradcheck(lambda a, b, c: scaled_dot_product_attention(a, b, c, mask)[0], (q, k, v))


def test_multi_head_attention_checks_heads():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)


def test_decoder_lm_is_causal():
    lm = model(TransformerLM)
    x = ids(2, 12)
    t = 6
    y = x.clone()
    y[:, t + 1 :] = ids(2, 12 - t - 1, seed=9)
    with torch.no_grad():
        a, b = lm(x), lm(y)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1])
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


def test_encoder_decoder_is_causal_in_the_target():
    net = model()
    src, tgt = ids(2, 7), ids(2, 9, seed=2)
    t = 4
    other = tgt.clone()
    other[:, t + 1 :] = ids(2, 9 - t - 1, seed=5)
    with torch.no_grad():
        a, b = net(src, tgt), net(src, other)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1])
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


def test_padding_does_not_change_outputs():
    net = model()
    src, tgt = ids(2, 6), ids(2, 5, seed=2)
    padded_src = F.pad(src, (0, 4), value=PAD)
    padded_tgt = F.pad(tgt, (0, 3), value=PAD)
    with torch.no_grad():
        a = net(src, tgt)
        b = net(padded_src, padded_tgt)[:, :5]
        memory, mask = net.encode(padded_src)
        net.set_keep_attention(True)
        net(padded_src, padded_tgt)
    torch.testing.assert_close(a, b)
    assert mask.shape == (2, 1, 1, 10) and not mask[..., 6:].any()
    for layer in net.encoder:
        assert (layer.self_attn.last_weights[..., 6:] == 0).all()
    for layer in net.decoder:
        assert (layer.cross_attn.last_weights[..., 6:] == 0).all()
        assert (layer.self_attn.last_weights[..., 5:] == 0).all()
        assert torch.equal(
            layer.self_attn.last_weights[0, 0, :5, :5] > 0, torch.ones(5, 5, dtype=torch.bool).tril()
        )


# ---------------------------------------------------------------------------------- positional encoding


def test_sinusoidal_encoding_matches_the_formula():
    pe = sinusoidal_positional_encoding(50, 12)
    assert pe.shape == (50, 12)
    for pos in (0, 1, 7, 49):
        for i in range(6):
            angle = pos / 10000 ** (2 * i / 12)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    assert sinusoidal_positional_encoding(5, 7).shape == (5, 7)  # odd width: the last column is a sine


@pytest.mark.parametrize("k", [1, 5, 17])
def test_shifted_encoding_is_a_fixed_rotation_of_the_encoding(k):
    d = 16
    pe = sinusoidal_positional_encoding(64 + k, d).double()
    rotation = torch.zeros(d, d, dtype=torch.float64)
    for i in range(d // 2):
        w = 1 / 10000 ** (2 * i / d)
        c, s = math.cos(k * w), math.sin(k * w)
        # [sin((p+k)w), cos((p+k)w)] = [[c, s], [-s, c]] @ [sin(pw), cos(pw)]
        rotation[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor([[c, s], [-s, c]], dtype=torch.float64)
    torch.testing.assert_close(pe[:64] @ rotation.T, pe[k : 64 + k], atol=1e-6, rtol=0)
    # the map depends on k only (not on pos) and is orthogonal: a rotation per frequency
    torch.testing.assert_close(rotation @ rotation.T, torch.eye(d, dtype=torch.float64))


# ------------------------------------------------------------------------------------- loss and schedule


def test_label_smoothed_loss_matches_the_formula_and_reduces_to_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, 11, generator=g)
    targets = torch.randint(0, 11, (4, 6), generator=g)
    targets[0, :2] = IGNORE
    keep = targets != IGNORE
    eps = 0.1
    q = torch.full((int(keep.sum()), 11), eps / 11)
    q[torch.arange(len(q)), targets[keep]] += 1 - eps
    expected = -(q * logits[keep].log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(label_smoothed_loss(logits, targets, eps), expected)
    torch.testing.assert_close(
        label_smoothed_loss(logits, targets, eps),
        F.cross_entropy(logits.flatten(0, 1), targets.flatten(), label_smoothing=eps),
    )
    torch.testing.assert_close(
        label_smoothed_loss(logits, targets, 0.0), F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    )
    with pytest.raises(ValueError, match="epsilon"):
        label_smoothed_loss(logits, targets, 1.0)
    with pytest.raises(ValueError, match="do not match"):
        label_smoothed_loss(logits, targets[:, :3])


def test_label_smoothing_minimum_is_the_smoothed_distribution():
    # the loss is minimised by p = q, not by a one-hot p: confident predictions are penalised
    eps, v = 0.1, 5
    target = torch.tensor([2])
    q = torch.full((1, v), eps / v)
    q[0, 2] += 1 - eps
    at_q = label_smoothed_loss(q.log(), target, eps)
    sharper = label_smoothed_loss(torch.tensor([[0.0, 0.0, 8.0, 0.0, 0.0]]), target, eps)
    assert at_q < sharper


def test_schedule_peaks_at_warmup_and_follows_the_formula():
    d, warmup = 64, 50
    lrs = [noam_lr(step, d, warmup) for step in range(1, 4 * warmup)]
    assert max(range(len(lrs)), key=lrs.__getitem__) + 1 == warmup
    assert lrs[warmup - 1] == pytest.approx(d**-0.5 * warmup**-0.5)
    assert noam_lr(10, d, warmup) == pytest.approx(d**-0.5 * 10 * warmup**-1.5)
    assert noam_lr(400, d, warmup) == pytest.approx(d**-0.5 * 400**-0.5)
    net = model()
    optimizer, scheduler = make_optimizer(net, d_model=d, warmup=warmup, factor=2.0)
    assert optimizer.defaults["betas"] == (0.9, 0.98) and optimizer.defaults["eps"] == 1e-9
    seen = []
    for _ in range(3):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([2 * noam_lr(s, d, warmup) for s in (1, 2, 3)])
    with pytest.raises(ValueError, match="step and warmup"):
        noam_lr(0, d, warmup)


# --------------------------------------------------------------------------------------- model details


def test_post_ln_blocks_end_normalised_and_pre_ln_differs():
    net = model()
    captured = []
    net.encoder[0].register_forward_hook(lambda module, args, out: captured.append(out))
    with torch.no_grad():
        net(ids(2, 6), ids(2, 4))
    out = captured[0]
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 6), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(2, 6), atol=1e-3, rtol=0)
    pre = model(pre_ln=True)
    assert hasattr(pre, "encoder_norm") and pre.num_parameters() > net.num_parameters()


def test_shared_embeddings_tie_input_and_output():
    shared, separate = model(), model(share_embeddings=False)
    c = small_config()
    assert separate.num_parameters() - shared.num_parameters() == 2 * c.vocab_size * c.d_model
    src, tgt = ids(1, 5), ids(1, 4)
    memory, mask = shared.encode(src)
    hidden = []
    shared.decoder[-1].register_forward_hook(lambda module, args, out: hidden.append(out))
    logits = shared.decode(tgt, memory, mask)
    torch.testing.assert_close(logits, hidden[0] @ shared.embed.weight.T)


def test_greedy_decoding_agrees_with_teacher_forcing():
    net = model(seed=3)
    src = ids(3, 6)
    out = net.greedy_decode(src, bos_id=BOS, eos_id=EOS, max_new_tokens=8)
    assert out.shape[0] == 3 and out.shape[1] <= 8
    tgt_in = torch.cat([torch.full((3, 1), BOS), out[:, :-1]], 1)
    with torch.no_grad():
        teacher = net(src, tgt_in).argmax(-1)
    for row in range(3):  # up to and including the first EOS the two agree
        stop = (out[row] == EOS).nonzero()
        end = int(stop[0]) + 1 if len(stop) else out.shape[1]
        assert torch.equal(teacher[row, :end], out[row, :end])
        assert (out[row, end:] == PAD).all()


def test_save_pretrained_round_trip(tmp_path):
    for cls in (Transformer, TransformerLM):
        net = model(cls, seed=4, pre_ln=cls is TransformerLM)
        net.save_pretrained(tmp_path / cls.__name__)
        config = json.loads((tmp_path / cls.__name__ / "config.json").read_text())
        assert config["model_type"] == cls.model_type and config["d_model"] == 16
        assert (tmp_path / cls.__name__ / "model.safetensors").stat().st_size > 0
        back = cls.from_pretrained(tmp_path / cls.__name__)
        assert back.config == net.config and not back.training
        with torch.no_grad():
            args = (ids(2, 7), ids(2, 5)) if cls is Transformer else (ids(2, 7),)
            assert torch.equal(net(*args), back(*args))
    with pytest.raises(ValueError, match="not 'transformer-lm'"):
        TransformerLM.from_pretrained(tmp_path / "Transformer")
    with pytest.raises(FileNotFoundError, match="config.json"):
        Transformer.from_pretrained(tmp_path / "missing")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"d_model": 18, "n_heads": 4}, "divisible"),
        ({"dropout": 1.0}, "dropout"),
        ({"pad_id": 13}, "pad_id"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"n_decoder_layers": 0}, "n_decoder_layers"),
        ({"n_encoder_layers": -1}, "n_encoder_layers"),
        ({"layer_norm_eps": 0.0}, "layer_norm_eps"),
    ],
)
def test_bad_model_config_is_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        small_config(**overrides)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="n_encoder_layers >= 1"):
        Transformer(small_config(n_encoder_layers=0))
    with pytest.raises(ValueError, match="unknown config keys"):
        TransformerConfig.from_dict({"vocab_size": 5, "d_modle": 8})
    with pytest.raises(TypeError, match="TransformerConfig"):
        TransformerLM({"vocab_size": 5})
    lm = model(TransformerLM)
    with pytest.raises(ValueError, match="exceeds max_len"):
        lm(ids(1, 30))
    with pytest.raises(ValueError, match=r"ids must be in \[0, 13\)"):
        lm(torch.tensor([[1, 13]]))
    with pytest.raises(ValueError, match="integer"):
        lm(torch.zeros(4))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("tasks", ("copy", "rotate"), "tasks"),
        ("tasks", ("copy",), "reverse"),
        ("min_len", 9, "min_len"),
        ("n_heads", 5, "divisible"),
        ("label_smoothing", 1.0, "label_smoothing"),
        ("seq_steps", 0, "seq_steps"),
        ("lstm_lr", 0.0, "lstm_lr"),
        ("threads", -1, "threads"),
    ],
)
def test_bad_experiment_config_is_rejected(key, value, message):
    config = Config(**{key: value, **({"max_len": 8} if key == "min_len" else {})})
    with pytest.raises(ValueError, match=message):
        config.validate()


# --------------------------------------------------------------------------------- data, training, runs


def test_seq2seq_data_layout():
    config = Config(min_len=3, max_len=6, num_symbols=5)
    data = seq2seq_data("reverse", 50, config, torch.Generator().manual_seed(0))
    for src, tgt_in, tgt_out in zip(data["src"], data["tgt_in"], data["tgt_out"], strict=True):
        n = int((src >= OFFSET).sum())
        assert 3 <= n <= 6 and src[n] == EOS and (src[n + 1 :] == PAD).all()
        assert (
            torch.equal(tgt_out[:n], src[:n].flip(0))
            and tgt_out[n] == EOS
            and (tgt_out[n + 1 :] == IGNORE).all()
        )
        assert tgt_in[0] == BOS and torch.equal(tgt_in[1 : n + 1], tgt_out[:n])


def test_training_is_deterministic_and_learns():
    def train(seed: int) -> list[float]:
        torch.manual_seed(seed)
        net = Transformer(small_config())
        optimizer, scheduler = make_optimizer(net, d_model=16, warmup=10, factor=2.0)
        data = seq2seq_data(
            "copy", 64, Config(min_len=3, max_len=5, num_symbols=10), torch.Generator().manual_seed(0)
        )
        losses = []
        for _ in range(30):
            loss = label_smoothed_loss(net(data["src"], data["tgt_in"]), data["tgt_out"], 0.1, IGNORE)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        return losses

    first, again = train(0), train(0)
    assert first == again and first[-1] < first[0] - 0.5


def test_lstm_baseline_shapes_and_decoding():
    torch.manual_seed(0)
    lstm = LSTMSeq2Seq(13, 8, pad_id=PAD)
    src, tgt = ids(2, 6), ids(2, 4)
    assert lstm(src, tgt).shape == (2, 4, 13)
    out = lstm.greedy_decode(src, bos_id=BOS, eos_id=EOS, max_new_tokens=5)
    assert out.shape[0] == 2 and out.shape[1] <= 5


def test_smoke_run(run_smoke):
    from papers.language.transformer import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    metrics = result.metrics
    assert len(result.checks) == 6 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == [
        f"figures/{n}.png" for n in ("attention_reverse", "lm_curves", "seq2seq_curves")
    ]
    assert (
        abs(metrics["seq2seq_lstm_params"] - metrics["seq2seq_transformer_params"])
        < 0.1 * metrics["seq2seq_transformer_params"]
    )
    assert (run_dir / "checkpoints" / "reverse_transformer" / "model.safetensors").is_file()
    stages = {p.stem for p in (run_dir / "stages").glob("*.json")}
    assert stages == {"seq2seq_copy", "seq2seq_reverse", "seq2seq_sort", "attention_reverse", "char_lm"}


def test_self_attention_without_positions_is_permutation_equivariant():
    """Catalogue 003:1218:1: without positional encoding, permuting the inputs permutes the outputs."""
    torch.manual_seed(0)
    attention = MultiHeadAttention(16, 4).double()
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    perm = torch.randperm(7)
    assert torch.allclose(attention(x, x)[:, perm], attention(x[:, perm], x[:, perm]), atol=1e-12)


def test_self_attention_with_constant_queries_and_keys_is_deep_sets_mean_pooling():
    """Catalogue 003:1218:1: W_Q = W_K = 0 gives uniform weights, so every output is the mean of
    the value projections: Deep Sets' ρ(mean φ(x)) with φ = W_V, ρ = W_O (rows identical)."""
    torch.manual_seed(1)
    attention = MultiHeadAttention(16, 4).double()
    with torch.no_grad():
        for layer in (attention.w_q, attention.w_k):
            layer.weight.zero_()
            layer.bias.zero_()
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    pooled = attention.w_o(attention.w_v(x).mean(dim=1, keepdim=True)).expand(-1, 5, -1)
    assert torch.allclose(attention(x, x), pooled, atol=1e-12)
