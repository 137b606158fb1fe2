"""Switch Transformer: capacity and top-1 routing, balancing loss, selective precision, gradients, LM."""

from __future__ import annotations

import math

import pytest
import torch

from papers.language.switch_transformer import (
    SwitchFFN,
    SwitchRouter,
    SwitchTransformerLM,
    expert_capacity,
    load_balancing_loss,
    route_top1,
)
from papers.language.switch_transformer.experiment import Config, ffn_flops_per_token
from papers.language.transformer import TransformerConfig


def lm_config(**overrides) -> TransformerConfig:
    values = dict(vocab_size=11, d_model=16, n_heads=2, d_ff=24, n_decoder_layers=2, dropout=0.0, max_len=16)
    return TransformerConfig(**{**values, "pre_ln": True, **overrides})


def one_hot_probs(experts: list[int], n: int, high: float = 0.7) -> torch.Tensor:
    """Router probabilities with ``high`` on each token's expert and the rest spread evenly."""
    probs = torch.full((len(experts), n), (1 - high) / (n - 1))
    probs[torch.arange(len(experts)), torch.tensor(experts)] = high
    return probs


# ---------------------------------------------------------------------------------- capacity and routing


def test_expert_capacity_is_tokens_over_experts_times_capacity_factor():
    assert expert_capacity(1024, 8, 1.0) == 128
    assert expert_capacity(1024, 8, 1.25) == 160
    assert expert_capacity(10, 4, 1.0) == 3  # ceil(2.5)
    assert expert_capacity(2, 8, 0.5) == 1  # never below one slot
    with pytest.raises(ValueError, match="capacity_factor"):
        expert_capacity(8, 4, 0.0)


def test_routing_drops_exactly_the_overflow_tokens_in_token_order():
    experts = [0, 1, 0, 0, 2, 1, 0, 1, 1, 3]
    index, gate, kept = route_top1(one_hot_probs(experts, 4), capacity=2)
    assert index.tolist() == experts
    torch.testing.assert_close(gate, torch.full((10,), 0.7))
    # expert 0 keeps tokens 0 and 2 (drops 3 and 6); expert 1 keeps 1 and 5 (drops 7 and 8)
    assert kept.tolist() == [True, True, True, False, True, True, False, False, False, True]
    assert route_top1(one_hot_probs(experts, 4), capacity=10)[2].all()


def test_switch_layer_output_is_gate_times_expert_and_zero_for_dropped_tokens():
    torch.manual_seed(0)
    layer = SwitchFFN(8, 12, 3, capacity_factor=1.0)
    x = torch.randn(2, 6, 8)
    y = layer(x)
    tokens = x.reshape(-1, 8)
    probs = layer.router(tokens)
    index, gate, kept = route_top1(probs, expert_capacity(12, 3, 1.0))
    for t in range(12):
        expected = gate[t] * layer.expert(int(index[t]), tokens[t : t + 1])[0] if kept[t] else torch.zeros(8)
        torch.testing.assert_close(y.reshape(-1, 8)[t], expected)
    assert layer.last_stats["dropped"] == pytest.approx(1 - kept.float().mean().item())
    assert layer.last_stats["capacity"] == 4


def test_eval_capacity_factor_applies_in_eval_mode_only():
    layer = SwitchFFN(8, 12, 4, capacity_factor=1.0, eval_capacity_factor=2.0)
    x = torch.randn(1, 16, 8)
    layer(x)
    assert layer.last_stats["capacity"] == 4
    layer.eval()
    layer(x)
    assert layer.last_stats["capacity"] == 8


# ------------------------------------------------------------------------------------- balancing loss


def test_balancing_loss_is_one_at_uniform_routing_and_n_when_collapsed():
    n = 4
    probs = one_hot_probs([0, 1, 2, 3] * 3, n)  # f_i = P_i = 1/N
    index = probs.argmax(-1)
    torch.testing.assert_close(load_balancing_loss(probs, index), torch.tensor(1.0))
    alpha = 1e-2
    assert (alpha * load_balancing_loss(probs, index)).item() == pytest.approx(alpha)
    collapsed = one_hot_probs([2] * 12, n, high=1.0 - 1e-6 * (n - 1))
    assert load_balancing_loss(collapsed, collapsed.argmax(-1)).item() == pytest.approx(n, rel=1e-4)


def test_balancing_loss_at_soft_routing_is_minimised_by_uniform():
    """With f = P (the differentiable relaxation) N Σ P_i² >= 1, equality only at P uniform; and the
    gradient reaches the probabilities only through P_i (f is a count)."""
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        p = torch.rand(5, generator=g).softmax(0)
        assert 5 * (p * p).sum() >= 1 - 1e-6
    logits = torch.randn(32, 4, generator=g, requires_grad=True)
    probs = logits.softmax(-1)
    loss = load_balancing_loss(probs, probs.argmax(-1))
    loss.backward()
    f = torch.bincount(probs.argmax(-1), minlength=4).float() / 32
    manual = logits.detach().clone().requires_grad_(True)
    (4 * (f * manual.softmax(-1).mean(0)).sum()).backward()
    torch.testing.assert_close(logits.grad, manual.grad)


def test_balancing_loss_gradient_pushes_probability_off_the_overloaded_expert():
    logits = torch.zeros(8, 2)
    logits[:, 0] = 1.0  # every token prefers expert 0
    logits.requires_grad_(True)
    probs = logits.softmax(-1)
    load_balancing_loss(probs, probs.argmax(-1)).backward()
    assert (logits.grad[:, 0] > 0).all() and (logits.grad[:, 1] < 0).all()  # descent lowers p_0


# ----------------------------------------------------------------------------- precision and gradients


def test_router_is_float32_under_a_bfloat16_model():
    torch.manual_seed(0)
    layer = SwitchFFN(16, 32, 4).to(torch.bfloat16)
    x = torch.randn(3, 5, 16).to(torch.bfloat16)
    probs = layer.router(x.reshape(-1, 16))
    assert probs.dtype == torch.float32
    reference = (x.reshape(-1, 16).double() @ layer.router.weight.double().T).softmax(-1)
    torch.testing.assert_close(probs.double(), reference, atol=1e-6, rtol=1e-5)
    y = layer(x)
    assert y.dtype == torch.bfloat16 and y.shape == x.shape and torch.isfinite(y.float()).all()
    assert layer.last_aux_loss.dtype == torch.float32


def test_gradients_reach_the_router_through_the_gate_without_the_aux_loss():
    torch.manual_seed(0)
    layer = SwitchFFN(6, 8, 3, capacity_factor=3.0).double()
    x = torch.randn(10, 6, dtype=torch.float64)
    layer(x).pow(2).sum().backward()
    assert layer.router.weight.grad is not None and layer.router.weight.grad.abs().sum() > 0

    weight = layer.router.weight.detach().clone().requires_grad_(True)

    def output(w):  # a small perturbation of W_r keeps every argmax: the only path to W_r is p_i(x)
        return torch.func.functional_call(layer, {"router.weight": w}, (x,))

    assert torch.autograd.gradcheck(output, (weight,), eps=1e-6, atol=1e-5)


def test_expert_dropout_is_inside_the_experts_only():
    torch.manual_seed(0)
    layer = SwitchFFN(8, 64, 2, capacity_factor=2.0, expert_dropout=0.5)
    x = torch.randn(4, 8)
    layer.eval()
    a, b = layer(x), layer(x)
    torch.testing.assert_close(a, b)
    layer.train()
    assert not torch.allclose(layer(x), layer(x))


# --------------------------------------------------------------------------------------------- the LM


def test_switch_lm_shapes_aux_loss_parameters_and_equal_flops():
    torch.manual_seed(0)
    dense = SwitchTransformerLM(lm_config(), n_experts=0)
    torch.manual_seed(0)
    sparse = SwitchTransformerLM(lm_config(), n_experts=4)
    ids = torch.randint(0, 11, (3, 16))
    assert sparse(ids).shape == dense(ids).shape == (3, 16, 11)
    assert len(sparse.switch_layers()) == 2 and not dense.switch_layers()
    assert dense.aux_loss().item() == 0.0 and sparse.aux_loss().item() >= 0.0
    assert len(sparse.routing_stats()) == 2
    ffn = 16 * 24 + 24 + 24 * 16 + 16  # w_1, b_1, w_2, b_2 of one FFN of width 24
    extra = 2 * (3 * ffn + 4 * 16)  # per layer: three more experts and a router
    assert sparse.num_parameters() - dense.num_parameters() == extra
    assert ffn_flops_per_token(sparse) == ffn_flops_per_token(dense) + 2 * 16 * 4
    every_other = SwitchTransformerLM(lm_config(n_decoder_layers=4), n_experts=4, expert_every=2)
    assert [hasattr(layer.ffn, "router") for layer in every_other.decoder] == [False, True, False, True]


def test_switch_lm_is_deterministic_under_a_seed_and_learns():
    def train(seed):
        torch.manual_seed(seed)
        model = SwitchTransformerLM(lm_config(), n_experts=4, capacity_factor=2.0)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        ids = torch.arange(16).remainder(11).repeat(4, 1)  # a cyclic sequence: easy to learn
        losses = []
        for _ in range(40):
            logits = model(ids[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
            optimizer.zero_grad()
            (loss + 1e-2 * model.aux_loss()).backward()
            optimizer.step()
            losses.append(loss.item())
        return losses

    first, second = train(3), train(3)
    assert first == second
    assert first[-1] < 0.5 * first[0] and math.isfinite(first[-1])


def test_bad_inputs_and_configs_raise_clear_errors():
    with pytest.raises(ValueError, match="n_experts must be 0"):
        SwitchTransformerLM(lm_config(), n_experts=1)
    with pytest.raises(ValueError, match="expert_every"):
        SwitchTransformerLM(lm_config(), n_experts=4, expert_every=0)
    with pytest.raises(ValueError, match="last dimension 8"):
        SwitchFFN(8, 12, 2)(torch.randn(3, 7))
    with pytest.raises(ValueError, match="expert_dropout"):
        SwitchFFN(8, 12, 2, expert_dropout=1.0)
    with pytest.raises(ValueError, match="probs must be"):
        route_top1(torch.rand(4), capacity=1)
    with pytest.raises(ValueError, match="n_experts must be >= 2"):
        Config(n_experts=1).validate()
    with pytest.raises(ValueError, match="capacity_factor must be > 0"):
        Config(capacity_factor=0).validate()
    with pytest.raises(ValueError, match="aux_alpha"):
        Config(aux_alpha=-1).validate()
    with pytest.raises(ValueError, match="divisible"):
        Config(d_model=30, n_heads=4).validate()
    assert SwitchRouter(4, 3)(torch.randn(2, 4)).sum(-1).allclose(torch.ones(2))


def test_smoke_run(run_smoke):
    from papers.language.switch_transformer import EXPERIMENT

    result, _ = run_smoke(EXPERIMENT)
    assert len(result.checks) == 4 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == [
        f"figures/{n}.png" for n in ("capacity_factor", "load_histograms", "loss_curves")
    ]
    assert result.metrics["switch_ffn_flops_per_token"] - result.metrics["dense_ffn_flops_per_token"] == (
        4 * 16  # smoke: one layer, d_model 16, 4 experts: the router's multiply-adds only
    )
