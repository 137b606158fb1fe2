"""BERT: embeddings, bidirectional vs causal attention, tied MLM head, pooling, save/load, the
``transformers.BertModel`` equivalence, the downstream labels, configs and a smoke run."""

from __future__ import annotations

import math

import pytest
import torch

from papers.language.bert import (
    BertConfig,
    BertForPreTraining,
    BertForSequenceClassification,
    BertModel,
    mlm_loss,
    next_token_loss,
    to_transformers_state_dict,
)
from papers.language.bert.experiment import Config, grammar_vocab, object_label, pair_batch, single_batch
from papers.language.bert.model import gelu_reference


def small_config(**overrides) -> BertConfig:
    values = dict(
        vocab_size=31,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=32,
        hidden_dropout_prob=0.0,
        max_position_embeddings=12,
        num_labels=3,
    )
    return BertConfig(**{**values, **overrides})


def make(cls=BertModel, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return cls(small_config(**overrides)).eval()


def ids(*shape, seed: int = 1) -> torch.Tensor:
    return torch.randint(5, 31, shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------- encoder


def test_shapes_and_pooler_is_tanh_of_cls():
    model = make()
    x = ids(3, 9)
    h, pooled = model(x)
    assert h.shape == (3, 9, 16) and pooled.shape == (3, 16)
    torch.testing.assert_close(pooled, torch.tanh(model.pooler(h[:, 0])))
    assert pooled.abs().max() < 1


def test_bidirectional_position_depends_on_right_context_causal_does_not():
    x = ids(2, 8)
    y = x.clone()
    y[:, 5:] = ids(2, 3, seed=7)  # change only the tokens right of position 4
    for causal in (False, True):
        model = make(causal=causal)
        hx, _ = model(x)
        hy, _ = model(y)
        left_same = torch.allclose(hx[:, :5], hy[:, :5], atol=1e-6)
        assert left_same == causal  # causal: positions <= 4 unchanged; bidirectional: they change


def test_padding_is_invisible_and_causal_pools_the_last_real_token():
    for causal in (False, True):
        model = make(causal=causal)
        x = ids(2, 6)
        padded = torch.cat([x, torch.zeros(2, 3, dtype=torch.long)], dim=1)
        h, pooled = model(x)
        hp, pooled_p = model(padded)
        torch.testing.assert_close(hp[:, :6], h, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(pooled_p, pooled, atol=1e-5, rtol=1e-5)
        if causal:
            torch.testing.assert_close(pooled, torch.tanh(model.pooler(h[:, -1])))


def test_embeddings_sum_token_position_segment_then_layernorm():
    model = make()
    e = model.embeddings
    x = ids(2, 5)
    types = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]])
    raw = e.word_embeddings(x) + e.position_embeddings(torch.arange(5))[None] + e.token_type_embeddings(types)
    torch.testing.assert_close(e(x, types), e.norm(raw))
    h0, _ = model(x)
    h1, _ = model(x, types)
    assert not torch.allclose(h0, h1)  # segment ids matter


def test_gelu_is_the_erf_form_and_init_follows_bert():
    x = torch.linspace(-4, 4, 101)
    torch.testing.assert_close(torch.nn.functional.gelu(x), gelu_reference(x))
    model = make(hidden_size=64, intermediate_size=256)
    w = model.layers[0].intermediate.weight
    assert abs(w.std().item() - 0.02) < 0.002 and model.layers[0].intermediate.bias.abs().max() == 0
    assert (model.layers[0].output_norm.weight == 1).all()
    assert (model.embeddings.word_embeddings.weight[0] == 0).all()  # padding row


def test_permuting_positions_changes_output_learned_positions():
    model = make()
    x = ids(1, 6)
    h, _ = model(x)
    hp, _ = model(x.flip(1))
    assert not torch.allclose(h.flip(1), hp, atol=1e-4)


def test_same_seed_same_model():
    a, b = make(seed=3), make(seed=3)
    x = ids(2, 7)
    torch.testing.assert_close(a(x)[0], b(x)[0], rtol=0, atol=0)


# ------------------------------------------------------------------------------------ heads and losses


def test_mlm_head_is_tied_to_the_input_embeddings():
    model = make(BertForPreTraining)
    assert model.decoder.weight is model.bert.embeddings.word_embeddings.weight
    logits, nsp = model(ids(2, 7))
    assert logits.shape == (2, 7, 31) and nsp is None
    logits.sum().backward()
    assert model.bert.embeddings.word_embeddings.weight.grad is not None


def test_nsp_head_optional():
    torch.manual_seed(0)
    model = BertForPreTraining(small_config(), next_sentence=True).eval()
    _, nsp = model(ids(4, 7))
    assert nsp.shape == (4, 2)


def test_mlm_loss_counts_only_chosen_positions():
    logits = torch.randn(2, 4, 31)
    labels = torch.full((2, 4), -100)
    labels[0, 1], labels[1, 3] = 7, 9
    expected = -(logits[0, 1].log_softmax(-1)[7] + logits[1, 3].log_softmax(-1)[9]) / 2
    torch.testing.assert_close(mlm_loss(logits, labels), expected)
    with pytest.raises(ValueError, match="do not match"):
        mlm_loss(logits, labels[:, :3])


def test_next_token_loss_shifts_and_skips_padding():
    logits = torch.randn(1, 4, 31)
    x = torch.tensor([[5, 6, 7, 0]])
    real = x != 0
    expected = -(logits[0, 0].log_softmax(-1)[6] + logits[0, 1].log_softmax(-1)[7]) / 2
    torch.testing.assert_close(next_token_loss(logits, x, real), expected)


def test_causal_model_loss_does_not_see_the_future():
    """Gradient of the logit at t with respect to inputs at > t is zero in the causal model."""
    model = make(BertForPreTraining, causal=True)
    x = ids(1, 6)
    emb = model.bert.embeddings
    inputs = emb.word_embeddings(x).detach().requires_grad_(True)
    h = emb.norm(inputs + emb.position_embeddings(torch.arange(6))[None] + emb.token_type_embeddings(x * 0))
    mask = torch.ones(1, 1, 6, 6, dtype=torch.bool).tril()
    for layer in model.bert.layers:
        h = layer(h, mask)
    (h[0, 2] * torch.linspace(-1, 1, 16)).sum().backward()  # a plain sum of a LayerNorm output is 0
    assert inputs.grad[0, 3:].abs().max() == 0 and inputs.grad[0, :3].abs().max() > 0


def test_classifier_trains_all_weights():
    model = make(BertForSequenceClassification).train()
    logits = model(ids(4, 7))
    assert logits.shape == (4, 3)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
    assert all(p.grad is not None for p in model.parameters())


# -------------------------------------------------------------------------------------- save and load


def test_save_load_round_trip_and_fine_tune_start(tmp_path):
    torch.manual_seed(0)
    pre = BertForPreTraining(small_config(), next_sentence=True).eval()
    pre.save_pretrained(tmp_path / "pre")
    back = BertForPreTraining.from_pretrained(tmp_path / "pre")
    x = ids(2, 7)
    torch.testing.assert_close(back(x)[0], pre(x)[0], rtol=0, atol=0)
    torch.testing.assert_close(back(x)[1], pre(x)[1], rtol=0, atol=0)
    assert back.decoder.weight is back.bert.embeddings.word_embeddings.weight  # re-tied
    classifier = BertForSequenceClassification.from_pretrained(tmp_path / "pre", num_labels=5)
    assert classifier(x).shape == (2, 5)
    torch.testing.assert_close(classifier.bert(x)[1], pre.bert(x)[1], rtol=0, atol=0)
    encoder = BertModel.from_pretrained(tmp_path / "pre")
    torch.testing.assert_close(encoder(x)[0], pre.bert(x)[0], rtol=0, atol=0)


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        BertModel.from_pretrained(tmp_path)
    with pytest.raises(TypeError, match="BertConfig"):
        BertModel({"hidden_size": 16})


def test_matches_transformers_bert_model():
    from transformers import BertModel as HFBertModel

    model = make()
    hf_config = model.config.to_transformers()
    hf_config._attn_implementation = "eager"
    hf = HFBertModel(hf_config).eval()
    missing, unexpected = hf.load_state_dict(to_transformers_state_dict(model), strict=False)
    assert not unexpected and all("position_ids" in k or "token_type_ids" in k for k in missing)
    x = ids(3, 9)
    x[0, 6:] = 0
    types = torch.zeros_like(x)
    types[:, 4:] = 1
    h, pooled = model(x, types)
    out = hf(input_ids=x, token_type_ids=types, attention_mask=(x != 0).long())
    torch.testing.assert_close(h[1:], out.last_hidden_state[1:], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(h[0, :6], out.last_hidden_state[0, :6], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(pooled, out.pooler_output, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="causal"):
        small_config(causal=True).to_transformers()


# --------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hidden_size": 18}, "divisible"),
        ({"num_hidden_layers": 0}, "num_hidden_layers"),
        ({"hidden_dropout_prob": 1.0}, "hidden_dropout_prob"),
        ({"pad_token_id": 31}, "pad_token_id"),
    ],
)
def test_bad_config(overrides, message):
    with pytest.raises(ValueError, match=message):
        small_config(**overrides)
    with pytest.raises(ValueError, match="unknown config keys: bogus"):
        BertConfig.from_dict({"bogus": 1})


def test_bad_inputs():
    model = make()
    with pytest.raises(ValueError, match="integer"):
        model(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(ids(1, 13))
    with pytest.raises(ValueError, match="input_ids must be in"):
        model(torch.full((1, 4), 31))
    with pytest.raises(ValueError, match="token_type_ids"):
        model(ids(2, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="token_type_ids must be in"):
        model(ids(2, 5), torch.full((2, 5), 2))


# ------------------------------------------------------------------------------------ data and task


@pytest.mark.parametrize(
    ("sentence", "label"),
    [
        ("the cat sleeps", 0),
        ("the cat near the river sleeps under a house", 0),
        ("a dog sees the old garden", 2),
        ("the house with a river likes a small teacher near the garden", 1),
        ("the teacher finds a bird", 1),
    ],
)
def test_object_label(sentence, label):
    assert object_label(sentence) == label


def test_object_label_needs_a_verb():
    with pytest.raises(ValueError, match="no verb"):
        object_label("the cat")


def test_pair_and_single_batches():
    vocab = grammar_vocab()
    assert len(vocab) == 30 and vocab.tokens[:5] == ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]
    pairs = pair_batch(vocab, ["the cat sleeps", "a dog sings"], 10)
    expected = [vocab.cls_id, *vocab.encode("the cat sleeps"), vocab.sep_id, *vocab.encode("a dog sings"),
                vocab.sep_id, vocab.pad_id]  # fmt: skip
    assert pairs["input_ids"][0].tolist() == expected
    assert pairs["token_type_ids"][0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 0]
    single = single_batch(vocab, ["the cat sees a dog"], 8)
    assert single["labels"].tolist() == [1] and single["attention_mask"][0].sum() == 7


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("seeds", 0, "seeds"),
        ("mask_probability", 0.0, "mask_probability"),
        ("finetune_lrs", (), "finetune_lrs"),
        ("hidden_size", 30, "divisible"),
        ("max_words", 2, "max_words"),
        ("pretrain_sentences", 10, "pretrain_sentences"),
    ],
)
def test_bad_experiment_config(key, value, message):
    with pytest.raises(ValueError, match=message):
        Config(**{key: value}).validate()


def test_smoke_run(run_smoke):
    from papers.language.bert import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    assert len(result.checks) == 3 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == ["figures/finetuning_accuracy.png", "figures/pretraining_losses.png"]
    assert result.metrics["pretrain_mlm_tokens"] == result.metrics["pretrain_causal_tokens"]
    assert (run_dir / "checkpoints" / "pretrain_mlm_seed0" / "model.safetensors").is_file()
