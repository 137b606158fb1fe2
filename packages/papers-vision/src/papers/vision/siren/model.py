"""SIREN and its baselines as coordinate networks, with the derivative operators (Sitzmann et al. 2020).

A SIREN maps coordinates ``x`` (``(..., in_features)``) through sine layers and a linear last layer:

    φ_1(x) = sin(ω0 (W_1 x + b_1))                      first layer, W_1, b_1 ~ U(−1/n, 1/n)
    φ_i(h) = sin(ω0 (W_i h + b_i))                      hidden layers, W_i, b_i ~ U(−√(6/n)/ω0, √(6/n)/ω0)
    Φ(x)   = W_L h + b_L                                 linear last layer, same uniform law as hidden

with ``n`` the fan-in of the layer and ω0 = 30 (Sec. 3.2). With this initialisation the input
``ω0 (W h + b)`` of every hidden sine stays close to N(0, 1) at any depth: ``ω0 W`` has variance 2/n
and ``sin`` of a wide preactivation has second moment 1/2, so their product summed over n inputs has
variance ≈ 1 (the paper's Theorem 1.8, tested). The biases are drawn like the weights (a choice: the
paper's analysis has no bias and its code keeps PyTorch's default bias.

Baselines, the same width and depth:

    ReLU MLP      h ← max(0, W h + b), Kaiming-normal weights (fan-in), linear last layer
    ReLU + PE     the ReLU MLP on γ(x) = [x, sin(2^k π x), cos(2^k π x)]_{k<L} (NeRF's positional
                  encoding, the paper's "ReLU P.E."), L by the paper code's Nyquist rule for the grid

``gradient`` and ``laplacian`` differentiate any of these networks with autograd, keeping the graph, so
they can sit inside a loss (Poisson reconstruction supervises ∇Φ only). The derivative of a SIREN is
again a SIREN-like sum of phase-shifted sines (cos = shifted sin); that of a ReLU MLP is piecewise
constant, so its Laplacian vanishes almost everywhere.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

ACTIVATIONS = ("sine", "relu", "relu_pe")


def _check_coords(coords: Tensor, in_features: int) -> None:
    if not isinstance(coords, Tensor) or not coords.is_floating_point():
        raise ValueError(f"coords must be a floating torch.Tensor, got {type(coords).__name__}")
    if coords.dim() < 1 or coords.shape[-1] != in_features:
        raise ValueError(f"coords must have shape (..., {in_features}), got {tuple(coords.shape)}")


def siren_bound(fan_in: int, omega0: float, *, first: bool) -> float:
    """The half-width of the uniform initialisation: 1/n for the first layer, √(6/n)/ω0 after it."""
    return 1.0 / fan_in if first else math.sqrt(6.0 / fan_in) / omega0


class SineLayer(nn.Module):
    """``sin(ω0 (W x + b))`` with the paper's uniform initialisation (``first`` picks the 1/n bound)."""

    def __init__(self, in_features: int, out_features: int, *, omega0: float = 30.0, first: bool = False):
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"features must be >= 1, got {in_features} and {out_features}")
        if not omega0 > 0:
            raise ValueError(f"omega0 must be > 0, got {omega0}")
        self.omega0, self.first = float(omega0), first
        self.linear = nn.Linear(in_features, out_features)
        self.bound = siren_bound(in_features, self.omega0, first=first)
        with torch.no_grad():
            self.linear.weight.uniform_(-self.bound, self.bound)
            self.linear.bias.uniform_(-self.bound, self.bound)

    def preactivation(self, x: Tensor) -> Tensor:
        """``ω0 (W x + b)``, the argument of the sine."""
        return self.omega0 * self.linear(x)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.preactivation(x))


class Siren(nn.Module):
    """Coordinates ``(..., in_features)`` → values ``(..., out_features)``.

    ``hidden_layers`` sine layers of width ``hidden`` follow the first sine layer, then a linear layer
    (``hidden_layers=3`` is the paper's 5-layer image SIREN: 2 → 256 → 256 → 256 → 256 → 1).
    """

    def __init__(
        self,
        in_features: int = 2,
        out_features: int = 1,
        *,
        hidden: int = 256,
        hidden_layers: int = 3,
        first_omega0: float = 30.0,
        hidden_omega0: float = 30.0,
    ):
        super().__init__()
        if hidden_layers < 0:
            raise ValueError(f"hidden_layers must be >= 0, got {hidden_layers}")
        self.in_features = in_features
        layers = [SineLayer(in_features, hidden, omega0=first_omega0, first=True)]
        layers += [SineLayer(hidden, hidden, omega0=hidden_omega0) for _ in range(hidden_layers)]
        self.layers = nn.ModuleList(layers)
        self.last = nn.Linear(hidden, out_features)
        bound = siren_bound(hidden, hidden_omega0, first=False)
        with torch.no_grad():
            self.last.weight.uniform_(-bound, bound)
            self.last.bias.uniform_(-bound, bound)

    def preactivations(self, coords: Tensor) -> list[Tensor]:
        """The argument ``ω0 (W h + b)`` of every sine, first layer first."""
        _check_coords(coords, self.in_features)
        out, h = [], coords
        for layer in self.layers:
            z = layer.preactivation(h)
            out.append(z)
            h = torch.sin(z)
        return out

    def forward(self, coords: Tensor) -> Tensor:
        _check_coords(coords, self.in_features)
        h = coords
        for layer in self.layers:
            h = layer(h)
        return self.last(h)


class PositionalEncoding(nn.Module):
    """γ(x) = [x, sin(2^k π x), cos(2^k π x) for k = 0 … L − 1], per coordinate (NeRF, the paper's P.E.)."""

    def __init__(self, in_features: int = 2, frequencies: int = 6):
        super().__init__()
        if frequencies < 0:
            raise ValueError(f"frequencies must be >= 0, got {frequencies}")
        self.in_features, self.frequencies = in_features, frequencies
        self.out_features = in_features * (1 + 2 * frequencies)

    def forward(self, coords: Tensor) -> Tensor:
        _check_coords(coords, self.in_features)
        scales = math.pi * 2.0 ** torch.arange(self.frequencies, dtype=coords.dtype, device=coords.device)
        angles = (coords[..., None, :] * scales[:, None]).flatten(-2)  # (..., L · d), frequency-major
        return torch.cat([coords, torch.sin(angles), torch.cos(angles)], dim=-1)


def nyquist_frequencies(samples: int) -> int:
    """The number of P.E. frequencies the paper's code uses for ``samples`` grid points on [−1, 1]:
    ``floor(log2(samples / 4))`` (its ``get_num_frequencies_nyquist``)."""
    if samples < 4:
        raise ValueError(f"samples must be >= 4, got {samples}")
    return int(math.floor(math.log2(samples / 4)))


class ReluMLP(nn.Module):
    """The ReLU baseline, optionally on the positional encoding γ(x) (``pe_frequencies > 0``).

    The same shape as :class:`Siren`: ``1 + hidden_layers`` ReLU layers of width ``hidden`` and a
    linear last layer; Kaiming-normal (fan-in) weights and zero biases, as in the paper's code.
    """

    def __init__(
        self,
        in_features: int = 2,
        out_features: int = 1,
        *,
        hidden: int = 256,
        hidden_layers: int = 3,
        pe_frequencies: int = 0,
    ):
        super().__init__()
        if hidden_layers < 0 or hidden < 1:
            raise ValueError(f"hidden must be >= 1 and hidden_layers >= 0, got {hidden}, {hidden_layers}")
        self.in_features = in_features
        self.encoding = PositionalEncoding(in_features, pe_frequencies) if pe_frequencies > 0 else None
        width_in = self.encoding.out_features if self.encoding is not None else in_features
        sizes = [width_in] + [hidden] * (hidden_layers + 1)
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(hidden, out_features))
        self.net = nn.Sequential(*layers)
        for module in self.net:
            if isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu", mode="fan_in")
                nn.init.zeros_(module.bias)

    def forward(self, coords: Tensor) -> Tensor:
        _check_coords(coords, self.in_features)
        return self.net(self.encoding(coords) if self.encoding is not None else coords)


def make_network(
    activation: str,
    *,
    hidden: int = 256,
    hidden_layers: int = 3,
    omega0: float = 30.0,
    pe_frequencies: int = 6,
    in_features: int = 2,
    out_features: int = 1,
) -> nn.Module:
    """``"sine"`` (SIREN), ``"relu"`` or ``"relu_pe"`` (ReLU on γ(x) with ``pe_frequencies``)."""
    if activation == "sine":
        return Siren(
            in_features,
            out_features,
            hidden=hidden,
            hidden_layers=hidden_layers,
            first_omega0=omega0,
            hidden_omega0=omega0,
        )
    if activation == "relu":
        return ReluMLP(in_features, out_features, hidden=hidden, hidden_layers=hidden_layers)
    if activation == "relu_pe":
        if pe_frequencies < 1:
            raise ValueError(f"relu_pe needs pe_frequencies >= 1, got {pe_frequencies}")
        return ReluMLP(
            in_features,
            out_features,
            hidden=hidden,
            hidden_layers=hidden_layers,
            pe_frequencies=pe_frequencies,
        )
    raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")


def gradient(outputs: Tensor, coords: Tensor) -> Tensor:
    """∇_x of a scalar field: ``outputs`` ``(..., 1)`` computed from ``coords`` ``(..., d)`` → ``(..., d)``.

    The graph is kept (``create_graph=True``), so the result can be differentiated again or trained on.
    """
    if outputs.shape[-1] != 1 or outputs.shape[:-1] != coords.shape[:-1]:
        raise ValueError(f"outputs must have shape {(*coords.shape[:-1], 1)}, got {tuple(outputs.shape)}")
    if not coords.requires_grad:
        raise ValueError("coords must require grad (coords.requires_grad_()) before the forward pass")
    (grad,) = torch.autograd.grad(outputs, coords, torch.ones_like(outputs), create_graph=True)
    return grad


def laplacian(outputs: Tensor, coords: Tensor) -> Tensor:
    """Δ = Σ_k ∂²Φ/∂x_k² of a scalar field, ``(..., 1)``, with the graph kept."""
    grad = gradient(outputs, coords)
    total = torch.zeros_like(outputs)
    for k in range(coords.shape[-1]):
        (second,) = torch.autograd.grad(
            grad[..., k], coords, torch.ones_like(grad[..., k]), create_graph=True
        )
        total = total + second[..., k : k + 1]
    return total


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
