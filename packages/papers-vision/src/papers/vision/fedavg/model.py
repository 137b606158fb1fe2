"""Federated Averaging (McMahan et al. 2017, Algorithm 1) with simulated clients in one process.

The model is the paper's "2NN" (a multilayer perceptron with two hidden ReLU layers of 200 units),
written as a pure function of its parameters so that the ``m`` clients of a round are trained at once:
every parameter has a leading client axis, ``(m, d_in, d_out)`` weights and ``(m, 1, d_out)`` biases,
and the layers are batched matrix products. Client k has ``n_k`` examples; one round is

    S_t  ← max(round(C K), 1) clients drawn without replacement
    w^k  ← ClientUpdate(k, w_t)     E epochs over its data in minibatches of B (B = None: B = ∞, the
                                    whole local data set), each step  w ← w − η ∇ℓ(w; b)
    w_{t+1} ← Σ_{k ∈ S_t} (n_k / m_t) w^k,     m_t = Σ_{k ∈ S_t} n_k

so a client takes u_k = E ⌈n_k / B⌉ local steps. FedSGD is E = 1, B = ∞: every client takes one
full-batch gradient step from w_t, and the weighted average of the client models is one gradient step
with the n_k-weighted average of the client gradients, the full-batch gradient on the union of their data.

Data splits over K clients (Sec. 3): ``iid_split`` shuffles and deals the examples out in K near-equal
parts; ``pathological_non_iid_split`` sorts by label, cuts 2K shards and gives every client 2 shards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

Params = list[Tensor]  # [W1, b1, W2, b2, ...], W (…, d_in, d_out), b (…, 1, d_out)


# ----------------------------------------------------------------------------------------------- model
def init_mlp(
    sizes: Sequence[int], *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
) -> Params:
    """Parameters of an MLP with layer widths ``sizes`` (``nn.Linear``'s uniform ±1/√fan_in init)."""
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes must list >= 2 positive layer widths, got {list(sizes)}")
    params: Params = []
    for d_in, d_out in zip(sizes[:-1], sizes[1:], strict=True):
        bound = 1.0 / math.sqrt(d_in)
        params.append((torch.rand(d_in, d_out, generator=generator, dtype=dtype) * 2 - 1) * bound)
        params.append((torch.rand(1, d_out, generator=generator, dtype=dtype) * 2 - 1) * bound)
    return params


def mlp_forward(params: Params, x: Tensor) -> Tensor:
    """Logits of ``x`` (…, N, d_in); a leading client axis on the parameters and ``x`` is batched."""
    h = x
    for i in range(0, len(params), 2):
        h = torch.matmul(h, params[i]) + params[i + 1]
        if i + 2 < len(params):
            h = torch.relu(h)
    return h


def accuracy(params: Params, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return (mlp_forward(params, x).argmax(-1) == y).double().mean().item()


def stack_params(params: Params, m: int) -> Params:
    """``m`` copies of the global parameters along a new leading client axis."""
    return [p.unsqueeze(0).expand(m, *p.shape).clone() for p in params]


def weighted_average(client_params: Params, weights: Tensor) -> Params:
    """Σ_k (w_k / Σ w) θ_k over the leading client axis: the server's aggregation, with weights n_k."""
    weights = torch.as_tensor(weights, dtype=client_params[0].dtype)
    if weights.dim() != 1 or len(weights) != len(client_params[0]):
        raise ValueError(
            f"need one weight per client ({len(client_params[0])}), got shape {tuple(weights.shape)}"
        )
    if (weights < 0).any() or not weights.sum() > 0:
        raise ValueError("client weights must be >= 0 with a positive sum")
    share = weights / weights.sum()
    return [torch.einsum("k,k...->...", share, p) for p in client_params]


# ------------------------------------------------------------------------------------------ data splits
def iid_split(count: int, num_clients: int, *, generator: torch.Generator | None = None) -> list[Tensor]:
    """Shuffle ``range(count)`` and deal it into ``num_clients`` parts of near-equal size (sorted)."""
    if not 1 <= num_clients <= count:
        raise ValueError(f"num_clients must be in [1, {count}], got {num_clients}")
    order = torch.randperm(count, generator=generator)
    return [part.sort().values for part in torch.tensor_split(order, num_clients)]


def pathological_non_iid_split(
    labels: Tensor, num_clients: int, *, shards_per_client: int = 2, generator: torch.Generator | None = None
) -> list[Tensor]:
    """Sort by label, cut ``shards_per_client · K`` shards, give each client ``shards_per_client`` at random.

    The shards are cut inside each label's block (each label gets a number of near-equal shards
    proportional to its size), so no shard straddles two labels and a client sees at most
    ``shards_per_client`` labels; with balanced labels this is the paper's cut of the sorted list.
    """
    if labels.dim() != 1:
        raise ValueError(f"labels must have shape (N,), got {tuple(labels.shape)}")
    if shards_per_client < 1:
        raise ValueError(f"shards_per_client must be >= 1, got {shards_per_client}")
    num_shards = shards_per_client * num_clients
    classes, sizes = torch.unique(labels, return_counts=True)
    if num_clients < 1 or num_shards < len(classes) or num_shards > len(labels):
        raise ValueError(
            f"num_clients * shards_per_client = {num_shards} shards must be in "
            f"[{len(classes)} (one per label), {len(labels)} (one per example)]"
        )
    # shards per label: at least one each, the rest by largest remainder of the proportional share
    share = sizes.double() * (num_shards - len(classes)) / len(labels)
    per_class = 1 + share.floor().long()
    remainder = num_shards - int(per_class.sum())
    per_class[torch.argsort(share - share.floor(), descending=True, stable=True)[:remainder]] += 1
    order = torch.argsort(labels, stable=True)
    shards = []
    for block, count in zip(torch.split(order, sizes.tolist()), per_class.tolist(), strict=True):
        shards.extend(torch.tensor_split(block, min(count, len(block))))
    while len(shards) < num_shards:  # only when a tiny label has fewer examples than its shard count
        largest = max(range(len(shards)), key=lambda i: len(shards[i]))
        shards[largest : largest + 1] = list(torch.tensor_split(shards[largest], 2))
    deal = torch.randperm(num_shards, generator=generator).view(num_clients, shards_per_client)
    return [torch.cat([shards[i] for i in row.tolist()]).sort().values for row in deal]


def sample_clients(num_clients: int, fraction: float, *, generator: torch.Generator | None = None) -> Tensor:
    """The sorted ids of ``max(round(C K), 1)`` clients drawn without replacement."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"client fraction C must be in [0, 1], got {fraction}")
    m = max(round(fraction * num_clients), 1)
    return torch.randperm(num_clients, generator=generator)[:m].sort().values


# --------------------------------------------------------------------------------------- client update
def pad_clients(x: Tensor, y: Tensor, parts: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Per-client data padded to the largest client: ``(K, n_max, d)``, ``(K, n_max)`` and counts ``n_k``."""
    counts = torch.tensor([len(p) for p in parts])
    if counts.min() < 1:
        raise ValueError("every client needs at least one example")
    n_max = int(counts.max())
    xs = x.new_zeros(len(parts), n_max, *x.shape[1:])
    ys = y.new_zeros(len(parts), n_max)
    for k, part in enumerate(parts):
        xs[k, : len(part)], ys[k, : len(part)] = x[part], y[part]
    return xs, ys, counts


def local_batches(
    counts: Tensor, epochs: int, batch_size: int | None, *, generator: torch.Generator | None = None
) -> Tensor:
    """Local example indices ``(m, U, B_max)``, ``-1`` where empty: client k's E epochs of shuffled
    minibatches of B (the last of an epoch smaller), u_k = E ⌈n_k / B⌉ steps, U = max u_k."""
    if epochs < 1:
        raise ValueError(f"epochs E must be >= 1, got {epochs}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch size B must be >= 1 or None (B = ∞), got {batch_size}")
    sizes = [n if batch_size is None else min(batch_size, n) for n in counts.tolist()]
    steps = [epochs * math.ceil(n / b) for n, b in zip(counts.tolist(), sizes, strict=True)]
    index = torch.full((len(sizes), max(steps), max(sizes)), -1, dtype=torch.long)
    for k, (n, b, u) in enumerate(zip(counts.tolist(), sizes, steps, strict=True)):
        perms = torch.argsort(torch.rand(epochs, n, generator=generator), dim=1)  # one permutation per epoch
        padded = torch.full((epochs, (u // epochs) * b), -1, dtype=torch.long)
        padded[:, :n] = perms
        index[k, :u, :b] = padded.view(u, b)
    return index


def mlp_gradients(params: Params, x: Tensor, y: Tensor, weight: Tensor) -> Params:
    """∇_θ Σ_i weight_i · CE(f(θ; x_i), y_i) by explicit backpropagation through the MLP.

    ``x`` (…, N, d_in), ``y`` and ``weight`` (…, N), batched over a leading client axis like the
    parameters. With weight_i = 1/|b| on a minibatch b (0 on padding) it is the gradient of the mean loss;
    the tests check it against autograd. Written out because it avoids the autograd graph on every one of
    the many tiny local steps (the simulation's bottleneck):

        δ_L = (softmax(z_L) − onehot(y)) · weight,   ∂W_l = a_{l−1}ᵀ δ_l,   ∂b_l = Σ_i δ_l,
        δ_{l−1} = (δ_l W_lᵀ) ⊙ [z_{l−1} > 0]
    """
    activations = [x]
    h = x
    for i in range(0, len(params), 2):
        h = torch.matmul(h, params[i]) + params[i + 1]
        if i + 2 < len(params):
            h = torch.relu(h)
            activations.append(h)
    delta = torch.softmax(h, dim=-1)
    delta = delta - F.one_hot(y, delta.shape[-1]).to(delta.dtype)
    delta = delta * weight.unsqueeze(-1)
    grads: Params = [torch.empty(0)] * len(params)
    for layer in range(len(params) // 2 - 1, -1, -1):
        a = activations[layer]
        grads[2 * layer] = torch.matmul(a.transpose(-1, -2), delta)
        grads[2 * layer + 1] = delta.sum(-2, keepdim=True)
        if layer:
            delta = torch.matmul(delta, params[2 * layer].transpose(-1, -2)) * (a > 0)
    return grads


def client_update(params: Params, xs: Tensor, ys: Tensor, batch_index: Tensor, *, lr: float) -> Params:
    """Minibatch SGD for m clients at once from their own parameters (leading client axis).

    ``xs`` (m, n_max, d), ``ys`` (m, n_max), ``batch_index`` (m, U, B_max) from :func:`local_batches`.
    At step t client k takes ``w ← w − η ∇ mean_{i ∈ b_kt} CE(f(w; x_i), y_i)``; a client whose steps are
    over (an empty batch) has a zero gradient and stays put.
    """
    if not lr > 0:
        raise ValueError(f"learning rate must be > 0, got {lr}")
    m = len(xs)
    rows = torch.arange(m)[:, None]
    params = [p.clone() for p in params]
    with torch.no_grad():
        for t in range(batch_index.shape[1]):
            ids = batch_index[:, t]
            mask = (ids >= 0).to(xs.dtype)
            safe = ids.clamp(min=0)
            weight = mask / mask.sum(1, keepdim=True).clamp(min=1)
            grads = mlp_gradients(params, xs[rows, safe], ys[rows, safe], weight)
            for p, g in zip(params, grads, strict=True):
                p.sub_(lr * g)
    return params


def federated_round(
    global_params: Params,
    xs: Tensor,
    ys: Tensor,
    counts: Tensor,
    selected: Tensor,
    *,
    epochs: int,
    batch_size: int | None,
    lr: float,
    generator: torch.Generator | None = None,
) -> Params:
    """One round of FederatedAveraging for the clients ``selected`` (ids into the padded client data)."""
    n_sel = counts[selected]
    index = local_batches(n_sel, epochs, batch_size, generator=generator)
    local = client_update(
        stack_params(global_params, len(selected)), xs[selected], ys[selected], index, lr=lr
    )
    return weighted_average(local, n_sel.to(local[0].dtype))


def federated_training(
    params: Params,
    x: Tensor,
    y: Tensor,
    parts: Sequence[Tensor],
    *,
    rounds: int,
    fraction: float,
    epochs: int,
    batch_size: int | None,
    lr: float,
    seed: int = 0,
    evaluate=None,
    stop=None,
) -> tuple[Params, list]:
    """``rounds`` rounds of Algorithm 1 from ``params``; ``evaluate(params)`` after each round is recorded
    and ``stop(history)`` (optional) ends training early. Client draws and batches come from ``seed``."""
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    xs, ys, counts = pad_clients(x, y, parts)
    generator = torch.Generator().manual_seed(seed)
    history = []
    for _ in range(rounds):
        selected = sample_clients(len(parts), fraction, generator=generator)
        params = federated_round(
            params, xs, ys, counts, selected, epochs=epochs, batch_size=batch_size, lr=lr, generator=generator
        )
        if evaluate is not None:
            history.append(evaluate(params))
            if stop is not None and stop(history):
                break
    return params, history
