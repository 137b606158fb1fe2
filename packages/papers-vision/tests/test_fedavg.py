import math

import pytest
import torch
import torch.nn.functional as F
from papers_testing import untimed

from papers.vision.fedavg import (
    client_update,
    federated_round,
    federated_training,
    iid_split,
    init_mlp,
    local_batches,
    mlp_forward,
    mlp_gradients,
    pad_clients,
    pathological_non_iid_split,
    sample_clients,
    stack_params,
    weighted_average,
)

F64 = torch.float64


def _problem(n=60, d=5, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=F64)
    y = torch.randint(0, classes, (n,), generator=g)
    params = init_mlp([d, 7, 6, classes], generator=g, dtype=F64)
    return x, y, params


def _mean_loss(params, x, y):
    return F.cross_entropy(mlp_forward(params, x), y)


def test_explicit_gradients_match_autograd_batched_over_clients():
    x, y, params = _problem()
    stacked = stack_params(params, 3)
    with torch.no_grad():  # different parameters per client
        for p in stacked:
            p += 0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    xs, ys = x.view(3, 20, -1), y.view(3, 20)
    weight = torch.ones(3, 20, dtype=F64)
    weight[1, 15:] = 0.0  # client 1 uses only 15 examples
    weight = weight / weight.sum(1, keepdim=True)
    grads = mlp_gradients(stacked, xs, ys, weight)
    for k, n in enumerate((20, 15, 20)):
        own = [p[k].clone().requires_grad_(True) for p in stacked]
        expected = torch.autograd.grad(_mean_loss(own, xs[k, :n], ys[k, :n]), own)
        for g, e in zip(grads, expected, strict=True):
            assert torch.allclose(g[k], e, rtol=0, atol=1e-13)


def test_one_client_fedsgd_is_full_batch_gradient_descent():
    x, y, params = _problem()
    lr, rounds = 0.3, 6
    fed, _ = federated_training(
        params, x, y, [torch.arange(len(y))], rounds=rounds, fraction=1.0, epochs=1, batch_size=None, lr=lr
    )
    w = [p.clone().requires_grad_(True) for p in params]
    for _ in range(rounds):
        grads = torch.autograd.grad(_mean_loss(w, x, y), w)
        w = [(p - lr * g).detach().requires_grad_(True) for p, g in zip(w, grads, strict=True)]
    for a, b in zip(fed, w, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-13)


def test_fedsgd_over_clients_is_a_full_batch_step_on_their_union():
    x, y, params = _problem(n=90)
    parts = [torch.arange(0, 13), torch.arange(13, 50), torch.arange(50, 90)]  # unequal n_k
    xs, ys, counts = pad_clients(x, y, parts)
    lr = 0.5
    new = federated_round(params, xs, ys, counts, torch.arange(3), epochs=1, batch_size=None, lr=lr)
    w = [p.clone().requires_grad_(True) for p in params]
    grads = torch.autograd.grad(_mean_loss(w, x, y), w)  # the union of the three clients
    for a, p, g in zip(new, params, grads, strict=True):
        assert torch.allclose(a, p - lr * g, rtol=0, atol=1e-13)
    # only two of them chosen: the step on the union of those two
    sub = federated_round(params, xs, ys, counts, torch.tensor([0, 2]), epochs=1, batch_size=None, lr=lr)
    union = torch.cat([parts[0], parts[2]])
    grads = torch.autograd.grad(_mean_loss(w, x[union], y[union]), w)
    for a, p, g in zip(sub, params, grads, strict=True):
        assert torch.allclose(a, p - lr * g, rtol=0, atol=1e-13)


def test_weighted_average_by_client_sizes_hand_case():
    theta = [torch.tensor([[1.0, 2.0], [3.0, 6.0], [0.0, -4.0]], dtype=F64)]  # 3 clients, 2 numbers
    avg = weighted_average(theta, torch.tensor([1.0, 2.0, 1.0]))
    assert torch.equal(avg[0], torch.tensor([(1 + 6 + 0) / 4, (2 + 12 - 4) / 4], dtype=F64))
    assert torch.equal(weighted_average(theta, torch.tensor([0.0, 5.0, 0.0]))[0], theta[0][1])
    with pytest.raises(ValueError, match="one weight per client"):
        weighted_average(theta, torch.ones(2))
    with pytest.raises(ValueError, match="positive sum"):
        weighted_average(theta, torch.zeros(3))


def test_local_sgd_matches_a_plain_loop_for_each_client():
    x, y, params = _problem(n=50)
    parts = [torch.arange(0, 23), torch.arange(23, 50)]
    xs, ys, counts = pad_clients(x, y, parts)
    index = local_batches(counts, 3, 10, generator=torch.Generator().manual_seed(4))
    assert index.shape == (2, 9, 10)  # u_k = E ceil(n_k / B) = 3 * 3 for both
    updated = client_update(stack_params(params, 2), xs, ys, index, lr=0.2)
    for k in range(2):
        w = [p.clone().requires_grad_(True) for p in params]
        seen = []
        for step in index[k]:
            batch = step[step >= 0]
            seen.append(batch)
            grads = torch.autograd.grad(_mean_loss(w, xs[k, batch], ys[k, batch]), w)
            w = [(p - 0.2 * g).detach().requires_grad_(True) for p, g in zip(w, grads, strict=True)]
        for a, b in zip(updated, w, strict=True):
            assert torch.allclose(a[k], b, rtol=0, atol=1e-12)
        for epoch in range(3):  # every epoch is a permutation of the client's examples
            assert torch.equal(
                torch.cat(seen[3 * epoch : 3 * epoch + 3]).sort().values, torch.arange(counts[k])
            )


def test_local_batches_steps_and_infinite_batch():
    counts = torch.tensor([29, 7])
    index = local_batches(counts, 2, None)
    assert index.shape == (2, 2, 29)  # B = inf: one full-batch step per epoch
    assert (index[1, :, 7:] == -1).all() and (index[1, :, :7] >= 0).all()
    index = local_batches(counts, 5, 10)
    assert index.shape == (2, 15, 10)
    assert (index[1, 5:] == -1).all()  # 7 examples, B = min(10, 7): 5 steps, then idle
    with pytest.raises(ValueError, match="epochs"):
        local_batches(counts, 0, 10)
    with pytest.raises(ValueError, match="batch size"):
        local_batches(counts, 1, 0)


def test_splits_partition_the_data_and_non_iid_has_at_most_two_labels():
    labels = torch.arange(10).repeat_interleave(torch.tensor([50, 61, 47, 55, 52, 49, 58, 53, 51, 54]))
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    for parts in (
        iid_split(len(labels), 50, generator=torch.Generator().manual_seed(1)),
        pathological_non_iid_split(labels, 50, generator=torch.Generator().manual_seed(1)),
    ):
        assert len(parts) == 50
        everything = torch.cat(parts)
        assert len(everything) == len(labels) and torch.equal(
            everything.sort().values, torch.arange(len(labels))
        )
        sizes = [len(p) for p in parts]
        assert max(sizes) - min(sizes) <= 4
    assert all(len(torch.unique(labels[p])) <= 2 for p in parts)
    assert sum(len(torch.unique(labels[p])) for p in parts) > 60  # most clients see two digits
    assert all(
        len(torch.unique(labels[p])) <= 1 for p in pathological_non_iid_split(labels, 20, shards_per_client=1)
    )
    again = pathological_non_iid_split(labels, 50, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(parts, again, strict=True))
    with pytest.raises(ValueError, match="shards"):
        pathological_non_iid_split(labels, 4)  # 8 shards < 10 labels
    with pytest.raises(ValueError, match="num_clients"):
        iid_split(5, 6)


def test_client_sampling_size_and_seed():
    draw = lambda c, seed: sample_clients(50, c, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert len(draw(0.1, 0)) == 5 and len(draw(1.0, 0)) == 50
    assert len(draw(0.0, 0)) == 1 and len(draw(0.001, 0)) == 1  # max(C K, 1)
    chosen = draw(0.2, 3)
    assert len(set(chosen.tolist())) == 10 and chosen.min() >= 0 and chosen.max() < 50
    assert torch.equal(chosen, draw(0.2, 3)) and not torch.equal(chosen, draw(0.2, 4))
    with pytest.raises(ValueError, match="fraction"):
        sample_clients(50, 1.5)


def test_training_is_seeded_and_learns():
    x, y, params = _problem(n=120)
    y = (x[:, 0] > 0).long()  # a learnable rule
    parts = iid_split(len(y), 6, generator=torch.Generator().manual_seed(0))
    kwargs = dict(rounds=8, fraction=0.5, epochs=2, batch_size=5, lr=0.2)
    a, hist = federated_training(
        params, x, y, parts, seed=3, evaluate=lambda p: _mean_loss(p, x, y).item(), **kwargs
    )
    b, _ = federated_training(params, x, y, parts, seed=3, **kwargs)
    c, _ = federated_training(params, x, y, parts, seed=4, **kwargs)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a, c, strict=True))
    assert len(hist) == 8 and hist[-1] < 0.5 * _mean_loss(params, x, y).item()
    with pytest.raises(ValueError, match="learning rate"):
        federated_training(params, x, y, parts, rounds=1, fraction=0.5, epochs=1, batch_size=None, lr=0.0)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("num_clients", 0),
        ("client_fraction", 1.5),
        ("epochs", (5,)),
        ("batch_sizes", (10,)),
        ("lrs", (0.1, -1.0)),
        ("target_accuracy", 1.0),
        ("max_rounds", 0),
        ("threads", -1),
    ],
)
def test_config_validation(key, value):
    from papers.vision.fedavg.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.vision.fedavg import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert untimed(result.metrics) == untimed(again.metrics)
    assert len(result.checks) == 7 and all(not math.isnan(c.measured) for c in result.checks)
    assert result.metrics["non_iid_max_labels_per_client"] <= 2
    assert result.figures == ["figures/accuracy_vs_rounds.png"]
    assert sorted(p.name for p in (run_dir / "stages").glob("*.json")) == ["iid.json", "non_iid.json"]
