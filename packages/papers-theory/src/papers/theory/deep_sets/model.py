"""Sum decomposition f(X) = ρ(Σ_{x∈X} φ(x)), the permutation-equivariant layer, and the power-sum map.

Sets are batched as ``x [B, M, d]`` with an optional boolean ``mask [B, M]`` (True = a real element):
padded slots never contribute to a pooled value, so a padded set gives the output of the unpadded one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

POOLS = ("sum", "mean", "max")


def check_set_batch(x: Tensor, mask: Tensor | None) -> Tensor:
    """Validate ``x [B, M, d]`` and ``mask [B, M]``; returns the mask (all True when None)."""
    if x.dim() != 3:
        raise ValueError(f"sets must be a [batch, set size, features] tensor, got shape {tuple(x.shape)}")
    if mask is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    if mask.shape != x.shape[:2] or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor of shape {tuple(x.shape[:2])}, "
                         f"got {mask.dtype} {tuple(mask.shape)}")
    return mask


def pool(x: Tensor, mask: Tensor, how: str) -> Tensor:
    """Σ, mean or max over the set axis of ``x [B, M, k]``, over the elements where ``mask`` is True."""
    keep = mask.unsqueeze(-1)
    if how == "sum":
        return (x * keep).sum(1)
    if how == "mean":
        return (x * keep).sum(1) / keep.sum(1).clamp(min=1)
    if how == "max":
        return x.masked_fill(~keep, -math.inf).amax(1)
    raise ValueError(f"unknown pooling {how!r}; choose from {POOLS}")


def mlp(sizes: list[int], activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """Linear layers of ``sizes`` with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class DeepSets(nn.Module):
    """Invariant model f(X) = ρ(pool_{x∈X} φ(x)), with φ and ρ MLPs (Zaheer et al., Thm. 2).

    ``latent_dim`` is the width N of Σ φ(x), the quantity Wagstaff et al. relate to the set size.
    ``rho_hidden=()`` makes ρ one linear map.
    """

    def __init__(self, in_dim: int, out_dim: int = 1, *, latent_dim: int = 64,
                 phi_hidden: tuple[int, ...] = (64,), rho_hidden: tuple[int, ...] = (64,),
                 pooling: str = "sum", activation: type[nn.Module] = nn.Tanh):
        super().__init__()
        if pooling not in POOLS:
            raise ValueError(f"unknown pooling {pooling!r}; choose from {POOLS}")
        self.pooling = pooling
        self.phi = mlp([in_dim, *phi_hidden, latent_dim], activation)
        self.rho = mlp([latent_dim, *rho_hidden, out_dim], activation)

    def embed(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """The pooled latent pool_{x∈X} φ(x): [B, latent_dim]."""
        mask = check_set_batch(x, mask)
        return pool(self.phi(x), mask, self.pooling)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.rho(self.embed(x, mask))


class PermEquivariant(nn.Module):
    """Permutation-equivariant layer (Zaheer et al., Lemma 3 and Sec. 3):

        f(X) = X Λ + 1 pool(X) Γ + 1 bᵀ,      X ∈ R^{M×d_in},  Λ, Γ ∈ R^{d_in×d_out}

    With one channel and sum pooling this is Θx with Θ = λI + γ11ᵀ; the paper's practical variants
    pool by max (``x Λ − 1 maxpool(x) Γ``, sign absorbed in Γ) or by mean. No nonlinearity here.
    """

    def __init__(self, in_dim: int, out_dim: int, pooling: str = "max"):
        super().__init__()
        if pooling not in POOLS:
            raise ValueError(f"unknown pooling {pooling!r}; choose from {POOLS}")
        self.pooling = pooling
        self.lam = nn.Linear(in_dim, out_dim)
        self.gamma = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        mask = check_set_batch(x, mask)
        out = self.lam(x) + self.gamma(pool(x, mask, self.pooling)).unsqueeze(1)
        return out * mask.unsqueeze(-1)


class EquivariantNet(nn.Module):
    """A stack of ``PermEquivariant`` layers with tanh: one score per element, [B, M].

    ``interaction=False`` zeroes and freezes every Γ: the same network applied to each element alone,
    which cannot see the rest of the set (the contrast for outlier detection).
    """

    def __init__(self, in_dim: int, hidden: tuple[int, ...] = (64, 64), pooling: str = "max",
                 interaction: bool = True):
        super().__init__()
        sizes = [in_dim, *hidden, 1]
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.layers = nn.ModuleList(PermEquivariant(a, b, pooling) for a, b in pairs)
        if not interaction:
            for layer in self.layers:
                nn.init.zeros_(layer.gamma.weight)
                layer.gamma.weight.requires_grad_(False)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        mask = check_set_batch(x, mask)
        for i, layer in enumerate(self.layers):
            x = layer(x, mask)
            if i < len(self.layers) - 1:
                x = torch.tanh(x) * mask.unsqueeze(-1)
        return x.squeeze(-1).masked_fill(~mask, -math.inf)


class SetGRU(nn.Module):
    """The paper's recurrent baseline: a GRU reads the elements in order, a linear head its last state."""

    def __init__(self, in_dim: int, out_dim: int = 1, hidden: int = 64):
        super().__init__()
        self.gru = nn.GRU(in_dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, out_dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        mask = check_set_batch(x, mask)
        states, _ = self.gru(x)
        last = mask.sum(1).clamp(min=1) - 1  # padding sits at the end of each set
        return self.head(states[torch.arange(len(x)), last])


class ConcatMLP(nn.Module):
    """Baseline: an MLP on the set flattened in its given order, zero-padded to ``max_size`` elements."""

    def __init__(self, in_dim: int, max_size: int, out_dim: int = 1, hidden: tuple[int, ...] = (128, 128)):
        super().__init__()
        self.max_size = max_size
        self.net = mlp([in_dim * max_size, *hidden, out_dim], nn.ReLU)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        mask = check_set_batch(x, mask)
        if x.shape[1] > self.max_size:
            raise ValueError(f"ConcatMLP takes sets of at most {self.max_size} elements, got {x.shape[1]}")
        x = x * mask.unsqueeze(-1)
        x = nn.functional.pad(x, (0, 0, 0, self.max_size - x.shape[1]))
        return self.net(x.flatten(1))


# ---------- the constructive sum decomposition: power sums and Newton's identities ----------


def power_sums(x: Tensor, degree: int, mask: Tensor | None = None) -> Tensor:
    """Σ_{x∈X} φ(x) with φ(x) = (x, x², …, x^degree), for sets of scalars ``x [B, M]``: [B, degree]."""
    if x.dim() != 2:
        raise ValueError(f"power_sums takes sets of scalars [batch, set size], got shape {tuple(x.shape)}")
    mask = check_set_batch(x.unsqueeze(-1), mask)
    powers = x.unsqueeze(-1) ** torch.arange(1, degree + 1, dtype=x.dtype, device=x.device)
    return pool(powers, mask, "sum")


def elementary_symmetric(p: Tensor) -> Tensor:
    """e_1 … e_K from the power sums p_1 … p_K ([B, K]) by Newton's identities:

        k e_k = Σ_{i=1}^{k} (−1)^{i−1} e_{k−i} p_i,      e_0 = 1.
    """
    e = [torch.ones_like(p[:, 0])]
    for k in range(1, p.shape[1] + 1):
        e.append(sum((-1) ** (i - 1) * e[k - i] * p[:, i - 1] for i in range(1, k + 1)) / k)
    return torch.stack(e[1:], dim=1)


def set_from_power_sums(p: Tensor) -> Tensor:
    """The sorted set of M reals whose power sums are ``p [B, M]`` (the decoder ρ of Wagstaff et al.'s
    N = M construction): the roots of Π(t − x_i) = t^M − e_1 t^{M−1} + e_2 t^{M−2} − …, found as the
    eigenvalues of its companion matrix."""
    e = elementary_symmetric(p)
    batch, m = e.shape
    signs = (-1.0) ** torch.arange(m, dtype=p.dtype)  # −(−1)^k for k = 1 … M
    companion = torch.zeros(batch, m, m, dtype=p.dtype)
    companion[:, 0, :] = signs * e  # first row: coefficients of t^{M−1} … t^0, negated
    companion[:, 1:, :-1] = torch.eye(m - 1, dtype=p.dtype)
    roots = torch.linalg.eigvals(companion)
    return roots.real.sort(dim=1).values
