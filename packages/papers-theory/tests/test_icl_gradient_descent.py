"""In-context learning by GD: the Prop. 1 construction is one GD step exactly; the LSA layer's invariants."""

from __future__ import annotations

import math

import pytest
import torch

from papers.core.errors import PapersError
from papers.core.runner import RunContext
from papers.theory.icl_gradient_descent import (
    EXPERIMENT,
    LinearSelfAttention,
    compare,
    gd_predict,
    gd_weights,
    least_squares_predict,
    line_search,
    make_tokens,
    sample_tasks,
    sensitivity,
)
from papers.theory.icl_gradient_descent.experiment import Config, train

F64 = torch.float64


def tasks(n=64, n_context=7, dim=5, seed=0, dtype=F64):
    return sample_tasks(n, n_context, dim, torch.Generator().manual_seed(seed), dtype=dtype)


def test_construction_is_exactly_one_gd_step_from_zero():
    t = tasks()
    for lr in (0.3, 1.7):
        layer = LinearSelfAttention.gd_construction(5, lr, n_context=7)
        ours = layer.predict(make_tokens(t["x"], t["y"], t["x_query"]))
        gd = gd_predict(t["x"], t["y"], t["x_query"], lr)
        assert (ours - gd).abs().max() < 1e-13 * gd.abs().max()
        assert not torch.allclose(ours, gd_predict(t["x"], t["y"], t["x_query"], 1.01 * lr))


def test_construction_from_nonzero_w0_moves_every_token_by_minus_delta_w_x():
    """Prop. 1 for any W_0: every token gets (0, −ΔW x_j); a query from (x_q, −W_0 x_q) reads W_1 x_q."""
    t, lr, n = tasks(n=16), 0.8, 7
    w0 = torch.randn(5, dtype=F64, generator=torch.Generator().manual_seed(3))
    delta = -lr / n * torch.einsum("bn,bnd->bd", torch.einsum("bnd,d->bn", t["x"], w0) - t["y"], t["x"])
    tokens = make_tokens(t["x"], t["y"], t["x_query"])
    tokens[:, -1, -1] = -t["x_query"] @ w0
    layer = LinearSelfAttention.gd_construction(5, lr, n_context=n, w0=w0)
    out = layer(tokens)
    all_x = torch.cat([t["x"], t["x_query"][:, None]], dim=1)
    expected = tokens.clone()
    expected[..., -1] -= torch.einsum("bnd,bd->bn", all_x, delta)
    assert torch.allclose(out, expected, atol=1e-13)
    one_step = t["x_query"] @ w0 + (delta * t["x_query"]).sum(-1)
    assert torch.allclose(layer.predict(tokens), one_step, atol=1e-13)


def test_shapes_and_the_query_only_prediction_matches_the_full_layer():
    torch.manual_seed(0)
    layer = LinearSelfAttention(6, init_std=0.3)
    t = tasks(n=9, n_context=4, dim=5, dtype=torch.float32)
    tokens = make_tokens(t["x"], t["y"], t["x_query"])
    assert tokens.shape == (9, 5, 6) and torch.equal(tokens[:, -1, -1], torch.zeros(9))
    assert torch.equal(tokens[:, :-1, :-1], t["x"]) and torch.equal(tokens[:, :-1, -1], t["y"])
    out = layer(tokens)
    assert out.shape == tokens.shape
    prediction = layer.predict(tokens)
    assert prediction.shape == (9,)
    assert torch.allclose(prediction, -out[:, -1, -1], atol=1e-6)


def test_permuting_the_context_permutes_context_outputs_and_keeps_the_prediction():
    torch.manual_seed(0)
    layer = LinearSelfAttention(6, init_std=0.3).double()
    t = tasks(n=8, n_context=6, dim=5)
    tokens = make_tokens(t["x"], t["y"], t["x_query"])
    order = torch.randperm(6, generator=torch.Generator().manual_seed(1))
    permuted = torch.cat([tokens[:, order], tokens[:, -1:]], dim=1)
    assert torch.allclose(layer.predict(permuted), layer.predict(tokens), atol=1e-12)
    assert torch.allclose(layer(permuted)[:, :-1], layer(tokens)[:, order], atol=1e-12)
    assert torch.allclose(layer(permuted)[:, -1], layer(tokens)[:, -1], atol=1e-12)


def test_gd_converges_to_least_squares_and_its_sensitivity_is_its_weights():
    t = tasks(n=32, n_context=12, dim=4)
    lr = 1.0
    ls = least_squares_predict(t["x"], t["y"], t["x_query"])
    assert torch.allclose(ls, t["y_query"], atol=1e-10)  # noiseless and N > d: the task is recovered
    assert torch.allclose(gd_predict(t["x"], t["y"], t["x_query"], lr, steps=3000), ls, atol=1e-6)
    grad = sensitivity(lambda xq: gd_predict(t["x"], t["y"], xq, lr, steps=2), t["x_query"])
    assert torch.allclose(grad, gd_weights(t["x"], t["y"], lr, steps=2), atol=1e-12)


def test_line_search_finds_the_closed_form_step_of_one_gd_step():
    """The one-step loss is quadratic in η: its minimiser is E[s y_q] / E[s²] with s = ŷ(η = 1)."""
    t = tasks(n=2000, n_context=10, dim=10)
    s = gd_predict(t["x"], t["y"], t["x_query"], 1.0)
    exact = ((s * t["y_query"]).sum() / (s * s).sum()).item()
    def loss(lr):
        return (gd_predict(t["x"], t["y"], t["x_query"], lr) - t["y_query"]).pow(2).mean().item()

    found = line_search(loss, 1e-3, 1e2)
    assert abs(found - exact) < 1e-6 * exact
    with pytest.raises(ValueError, match="low < high"):
        line_search(lambda lr: lr, 1.0, 0.5)


def test_compare_measures():
    pred = torch.randn(50, dtype=F64)
    sens = torch.randn(50, 3, dtype=F64)
    same = compare(pred, pred, sens, sens)
    assert same["prediction_cosine"] == pytest.approx(1) and same["model_cosine"] == pytest.approx(1)
    assert same["preds_diff"] == 0 and same["model_diff"] == 0
    scaled = compare(pred, 2 * pred, sens, -sens)
    assert scaled["prediction_cosine"] == pytest.approx(1) and scaled["model_cosine"] == pytest.approx(-1)
    assert scaled["preds_diff"] == pytest.approx(pred.pow(2).mean().sqrt().item())


def test_training_is_deterministic_given_the_seed(tmp_path):
    config = EXPERIMENT.make_config("smoke")
    config.steps, config.eval_every = 10, 10
    monitor = sample_tasks(50, config.n_context, config.input_dim, torch.Generator().manual_seed(5))
    lrs = {"gd1": 0.5, "gd2": 0.4}

    def weights(seed, folder):
        return train(config, RunContext(tmp_path / folder, seed=seed, progress=False), lrs, monitor)

    first, again, other = weights(0, "a"), weights(0, "b"), weights(1, "c")
    assert first == again
    assert first["weights"] != other["weights"]
    assert len(first["history"]) == 2


def test_bad_input_gives_clear_errors():
    t = tasks(n=4, n_context=3, dim=2)
    with pytest.raises(ValueError, match="x_query"):
        make_tokens(t["x"], t["y"], t["x_query"][:, :1])
    with pytest.raises(ValueError, match="y"):
        make_tokens(t["x"], t["y"][:, :2], t["x_query"])
    layer = LinearSelfAttention(3)
    with pytest.raises(ValueError, match="tokens"):
        layer(torch.zeros(4, 5, 4))
    with pytest.raises(ValueError, match="tokens"):
        layer.predict(torch.zeros(4, 1, 3))
    with pytest.raises(ValueError, match="token_dim"):
        LinearSelfAttention(1)
    with pytest.raises(PapersError, match="unknown preset"):
        EXPERIMENT.make_config("huge")


@pytest.mark.parametrize(("key", "value"), [("steps", 0), ("n_context", 0), ("lr", 0.0), ("init_std", -1.0),
                                            ("lr_search_high", 1e-4), ("input_scales", (0.5, 2.0)),
                                            ("threads", -1)])
def test_config_validation(key, value):
    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_smoke_run(run_smoke):
    result, run_dir = run_smoke(EXPERIMENT)
    metrics = result.metrics
    assert metrics["gd1_lr"] > 0 and metrics["gd2_lr"] > 0
    assert metrics["construction_max_abs_error"] < 1e-12
    assert metrics["least_squares_loss"] < 1e-6 < metrics["gd1_loss"]
    assert len(result.checks) == 6 and all(math.isfinite(c.measured) for c in result.checks)
    assert result.checks[-1].passed  # the exact construction holds at any budget
    assert sorted(result.figures) == [f"figures/{n}.png" for n in ("input_scale", "training", "weights")]
    assert {p.stem for p in (run_dir / "stages").glob("*.json")} == {"line_search", "train", "evaluate"}
