"""ELECTRA: masking, shared embeddings, sampled replacements, the "equal to original" rule, the loss
positions of the 15 % ablation, no gradient through sampling, fine-tuning hand-off, configs, a smoke run."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from papers.language.bert import BertConfig, BertForSequenceClassification
from papers.language.electra import (
    ElectraDiscriminator,
    ElectraForPreTraining,
    discriminator_loss,
    generator_config,
    mask_positions,
    training_flops,
)
from papers.language.electra.experiment import Config

SPECIAL = [0, 1, 2, 3, 4]
MASK = 4


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


def make(seed: int = 0, **kwargs) -> ElectraForPreTraining:
    torch.manual_seed(seed)
    return ElectraForPreTraining(small_config(), **kwargs)


def batch(n: int = 4, length: int = 10, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 31, (n, length), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP]
    ids[0, -3:] = torch.tensor([3, 0, 0])  # padding in the first row
    return ids, torch.zeros_like(ids), ids != 0


def run(model, ids, types, real, seed: int = 0, **kwargs):
    return model(ids, types, real, mask_id=MASK, special_ids=SPECIAL,
                 generator=torch.Generator().manual_seed(seed), **kwargs)  # fmt: skip


# ----------------------------------------------------------------------------------------- masking


def test_mask_positions_skips_special_and_padding_and_hits_the_rate():
    ids, _, real = batch(64, 12)
    masked, chosen = mask_positions(
        ids,
        mask_id=MASK,
        special_ids=SPECIAL,
        attention_mask=real,
        generator=torch.Generator().manual_seed(0),
    )
    assert not chosen[torch.isin(ids, torch.tensor(SPECIAL))].any()
    assert (masked[chosen] == MASK).all() and torch.equal(masked[~chosen], ids[~chosen])
    rate = chosen.sum() / (~torch.isin(ids, torch.tensor(SPECIAL))).sum()
    assert abs(rate.item() - 0.15) < 0.04


def test_mask_positions_errors():
    ids, _, _ = batch()
    with pytest.raises(ValueError, match="probability"):
        mask_positions(ids, mask_id=MASK, special_ids=SPECIAL, probability=0.0)
    with pytest.raises(ValueError, match="batch, length"):
        mask_positions(ids[0], mask_id=MASK, special_ids=SPECIAL)


# ------------------------------------------------------------------------------------------- model


def test_embeddings_are_shared_and_generator_is_smaller():
    model = make(generator_fraction=0.25)
    assert model.generator.embeddings is model.discriminator.bert.embeddings
    emb = model.discriminator.bert.embeddings.word_embeddings.weight
    assert sum(p is emb for p in model.parameters()) == 1  # one tensor, counted once
    assert model.generator.config.hidden_size == 4 and model.generator.config.intermediate_size == 8
    assert generator_config(small_config(), 0.5).num_attention_heads == 2


def test_corruption_replaces_only_masked_positions_and_labels_follow_equality():
    model = make()
    ids, types, real = batch()
    out = run(model, ids, types, real)
    corrupted, chosen, is_replaced = out["corrupted"], out["chosen"], out["is_replaced"]
    assert chosen.any()
    assert torch.equal(corrupted[~chosen], ids[~chosen])  # untouched outside m
    assert torch.equal(is_replaced, corrupted != ids)  # a sample equal to the original is "original"
    assert not is_replaced[~chosen].any()
    assert out["disc_logits"].shape == ids.shape


def test_generator_that_always_recovers_the_original_gives_no_replacements():
    model = make()
    ids, types, real = batch()

    def oracle(masked, types_, real_):
        return F.one_hot(ids, 31).float() * 1e4  # puts all probability on the original token

    model.generator.forward = oracle
    out = run(model, ids, types, real)
    assert out["chosen"].any() and not out["is_replaced"].any()
    assert torch.equal(out["corrupted"], ids)


def test_replacements_are_sampled_not_argmax():
    model = make().eval()
    ids, types, real = batch(64, 10)
    out = run(model, ids, types, real, seed=0)
    again = run(model, ids, types, real, seed=0)
    assert torch.equal(out["corrupted"], again["corrupted"])  # same seed, same samples
    chosen = out["chosen"]
    logits = model.generator(ids.masked_fill(chosen, MASK), types, real)[chosen]
    top = (out["corrupted"][chosen] == logits.argmax(-1)).float().mean().item()
    # an untrained generator is nearly uniform over 31 tokens: samples rarely hit its argmax
    assert top < 0.3


def test_loss_is_mlm_plus_lambda_disc_and_15_percent_uses_masked_positions_only():
    ids, types, real = batch(8, 10)
    for positions in ("all", "masked"):
        model = make(loss_positions=positions, disc_weight=50.0)
        out = run(model, ids, types, real)
        torch.testing.assert_close(out["loss"], out["mlm_loss"] + 50.0 * out["disc_loss"])
        where = real if positions == "all" else out["chosen"]
        expected = F.binary_cross_entropy_with_logits(
            out["disc_logits"][where], out["is_replaced"][where].float()
        )
        torch.testing.assert_close(out["disc_loss"], expected)
        labels = ids.masked_fill(~out["chosen"], -100)
        gen_logits = model.generator(ids.masked_fill(out["chosen"], MASK), types, real)
        torch.testing.assert_close(
            out["mlm_loss"], F.cross_entropy(gen_logits.flatten(0, 1), labels.flatten())
        )


def test_no_gradient_from_the_discriminator_loss_into_the_generator():
    model = make()
    ids, types, real = batch(8, 10)
    run(model, ids, types, real)["disc_loss"].backward()
    gen_own = [p for n, p in model.generator.named_parameters() if not n.startswith("embeddings")]
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in gen_own)
    assert model.discriminator.out.weight.grad.abs().max() > 0
    model.zero_grad()
    run(model, ids, types, real)["mlm_loss"].backward()
    assert model.generator.transform.weight.grad.abs().max() > 0
    assert all(
        p.grad is None or p.grad.abs().max() == 0 for p in model.discriminator.bert.layers.parameters()
    )


def test_discriminator_loss_analytic_and_shape_error():
    logits = torch.tensor([[0.0, 2.0, -1.0]])
    replaced = torch.tensor([[True, False, False]])
    positions = torch.tensor([[True, True, False]])
    expected = (math.log(2) + math.log(1 + math.exp(2.0))) / 2
    assert discriminator_loss(logits, replaced, positions).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="must match"):
        discriminator_loss(logits, replaced[:, :2], positions)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="loss_positions"):
        make(loss_positions="replaced")
    with pytest.raises(ValueError, match="generator fraction"):
        make(generator_fraction=0.0)
    with pytest.raises(ValueError, match="disc_weight"):
        make(disc_weight=-1.0)


def test_same_seed_same_loss():
    ids, types, real = batch()
    a, b = run(make(3), ids, types, real, seed=5), run(make(3), ids, types, real, seed=5)
    assert a["loss"].item() == b["loss"].item()


def test_a_few_steps_teach_the_discriminator():
    torch.manual_seed(0)
    model = ElectraForPreTraining(small_config(), generator_fraction=0.5)
    ids, types, real = batch(32, 10)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for step in range(40):
        out = run(model, ids, types, real, seed=step)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = first if first is not None else out["disc_loss"].item()
    assert out["disc_loss"].item() < first


def test_discriminator_hands_off_to_bert_fine_tuning(tmp_path):
    model = make().eval()
    model.discriminator.bert.save_pretrained(tmp_path / "disc")
    classifier = BertForSequenceClassification.from_pretrained(tmp_path / "disc", num_labels=3)
    ids, types, real = batch()
    h_disc, _ = model.discriminator.bert(ids, types, real)
    h_cls, _ = classifier.bert(ids, types, real)
    torch.testing.assert_close(h_cls, h_disc)
    assert isinstance(model.discriminator, ElectraDiscriminator)


def test_flops_counter_counts_generator_and_discriminator():
    ids, types, real = batch(8, 10)
    small, big = make(generator_fraction=0.25), make(generator_fraction=1.0)
    f_small = training_flops(lambda: run(small, ids, types, real)["loss"].backward())
    f_big = training_flops(lambda: run(big, ids, types, real)["loss"].backward())
    assert 0 < f_small < f_big


# ---------------------------------------------------------------------------------------- experiment


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("pretrain_steps", 0, "pretrain_steps"),
        ("generator_fraction", 1.5, "generator_fraction"),
        ("disc_weight", 0.0, "disc_weight"),
        ("mask_probability", 1.0, "mask_probability"),
        ("hidden_size", 30, "divisible"),
        ("finetune_lrs", (), "finetune_lrs"),
    ],
)
def test_bad_experiment_config(key, value, message):
    with pytest.raises(ValueError, match=message):
        Config(**{key: value}).validate()


def test_smoke_run(run_smoke):
    from papers.language.electra import EXPERIMENT

    result, _ = run_smoke(EXPERIMENT)
    m = result.metrics
    assert m["mlm_pretrain_flops"] == pytest.approx(m["electra_pretrain_flops"], rel=0.2)  # matched FLOPs
    assert m["electra_flops_per_step"] > m["mlm_flops_per_step"]
    for key in ("mlm_test_accuracy", "electra_test_accuracy", "electra15_test_accuracy"):
        assert 0 <= m[key] <= 1
