"""NeRF (Mildenhall et al. 2020, Sec. 4–5): positional encoding, the radiance-field MLP, volume rendering
and hierarchical sampling.

Positional encoding (Eq. 4), applied to each coordinate of p separately:

    γ(p) = (sin(2^0 π p), cos(2^0 π p), …, sin(2^{L−1} π p), cos(2^{L−1} π p))

(L = 10 for x and L = 4 for the direction d in the paper; like the official code the raw input is
prepended, so L = 0 is the "no positional encoding" ablation that feeds x and d unchanged).

The MLP F_Θ: (γ(x), γ(d)) → (σ, c): ``depth`` ReLU layers of ``width`` on γ(x) with γ(x) concatenated
again after layer ``skip``, a linear output σ (ReLU-rectified so σ ≥ 0; optionally softplus(raw − 1)
as in mip-NeRF, which cannot get stuck at σ = 0 with no gradient) and a feature vector, which with γ(d)
passes one ReLU layer of width/2 and a sigmoid to c (the paper: depth 8, width 256, skip after 4).

Volume rendering (Eq. 3) of N samples t_1 < … < t_N along r(t) = o + t d, δ_i = t_{i+1} − t_i
(δ_N = 1e10, as in the official code):

    Ĉ(r) = Σ_i T_i (1 − exp(−σ_i δ_i)) c_i,        T_i = exp(−Σ_{j<i} σ_j δ_j)

with weights w_i = T_i (1 − exp(−σ_i δ_i)); Σ_i w_i = 1 − T_{N+1} ≤ 1 and a background colour b is
added as Ĉ + T_{N+1} b (the paper's synthetic scenes: white).

Sampling (Eq. 2 and Sec. 5.2): N_c stratified samples t_i ~ U[t_n + (i−1)/N_c (t_f − t_n), t_n + i/N_c
(t_f − t_n)] for the coarse network; N_f more drawn by inverse transform sampling from the piecewise-
constant pdf ŵ_i = w_i / Σ_j w_j of the coarse weights; the fine network is evaluated on all N_c + N_f
sorted samples. Loss (Eq. 6): Σ_r ‖Ĉ_c(r) − C(r)‖² + ‖Ĉ_f(r) − C(r)‖².
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "NeRF",
    "NeRFMLP",
    "compositing_weights",
    "encoded_dim",
    "positional_encoding",
    "psnr",
    "sample_pdf",
    "stratified_samples",
    "volume_render",
]


def encoded_dim(dim: int, n_freqs: int, include_input: bool = True) -> int:
    """Size of γ for a ``dim``-vector: dim · (2 L + [include_input])."""
    return dim * (2 * n_freqs + int(include_input))


def positional_encoding(x: Tensor, n_freqs: int, include_input: bool = True) -> Tensor:
    """γ(x) of Eq. 4 for ``x`` of shape ``(..., dim)``: ``(..., dim · (2 L + [include_input]))``.

    Laid out as [x, sin(2^0 π x), cos(2^0 π x), …, sin(2^{L−1} π x), cos(2^{L−1} π x)], each block
    ``dim`` wide.
    """
    if n_freqs < 0:
        raise ValueError(f"n_freqs must be >= 0, got {n_freqs}")
    if n_freqs == 0 and not include_input:
        raise ValueError("positional_encoding: n_freqs = 0 without the input encodes nothing")
    parts = [x] if include_input else []
    if n_freqs:
        freqs = math.pi * 2.0 ** torch.arange(n_freqs, dtype=x.dtype, device=x.device)
        angles = x[..., None, :] * freqs[:, None]  # (..., L, dim)
        both = torch.stack([torch.sin(angles), torch.cos(angles)], dim=-2)  # (..., L, 2, dim)
        parts.append(both.flatten(-3))
    return torch.cat(parts, dim=-1)


# σ = act(raw): ReLU in the paper; softplus(raw − 1) (mip-NeRF, Barron et al. 2021) cannot die at σ = 0
def shifted_softplus(raw: Tensor) -> Tensor:
    return nn.functional.softplus(raw - 1.0)


DENSITY_ACTIVATIONS = {"relu": torch.relu, "softplus": shifted_softplus}


class NeRFMLP(nn.Module):
    """F_Θ(x, d) → (σ, rgb) of Fig. 7 at a configurable size (module docstring)."""

    def __init__(
        self,
        *,
        pos_freqs: int = 10,
        dir_freqs: int = 4,
        width: int = 256,
        depth: int = 8,
        skip: int = 4,
        use_viewdirs: bool = True,
        density_activation: str = "relu",
    ):
        super().__init__()
        if density_activation not in DENSITY_ACTIVATIONS:
            raise ValueError(
                f"density_activation must be one of {sorted(DENSITY_ACTIVATIONS)}, got {density_activation!r}"
            )
        if width < 2 or depth < 1:
            raise ValueError(f"width must be >= 2 and depth >= 1, got {width} and {depth}")
        if not 0 <= skip <= depth:
            raise ValueError(f"skip must be in [0, depth] (0: none), got {skip}")
        if pos_freqs < 0 or dir_freqs < 0:
            raise ValueError(f"pos_freqs and dir_freqs must be >= 0, got {pos_freqs} and {dir_freqs}")
        self.pos_freqs, self.dir_freqs, self.skip, self.use_viewdirs = (
            pos_freqs,
            dir_freqs,
            skip,
            use_viewdirs,
        )
        self.density_activation = DENSITY_ACTIVATIONS[density_activation]
        pos_dim, dir_dim = encoded_dim(3, pos_freqs), encoded_dim(3, dir_freqs)
        layers = []
        for k in range(depth):
            fan_in = pos_dim if k == 0 else width + (pos_dim if k == skip and skip > 0 else 0)
            layers.append(nn.Linear(fan_in, width))
        self.layers = nn.ModuleList(layers)
        self.sigma = nn.Linear(width, 1)
        if use_viewdirs:
            self.feature = nn.Linear(width, width)
            self.view = nn.Linear(width + dir_dim, width // 2)
            self.rgb = nn.Linear(width // 2, 3)
        else:
            self.rgb = nn.Linear(width, 3)

    def forward(self, x: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
        """Points ``x`` and unit directions ``d``, both ``(..., 3)`` → σ ``(...)`` ≥ 0, rgb ``(..., 3)``."""
        if x.shape[-1] != 3 or d.shape != x.shape:
            raise ValueError(
                f"x and d must both have shape (..., 3), got {tuple(x.shape)} and {tuple(d.shape)}"
            )
        gx = positional_encoding(x, self.pos_freqs)
        h = gx
        for k, layer in enumerate(self.layers):
            if k == self.skip and k > 0:
                h = torch.cat([h, gx], dim=-1)
            h = torch.relu(layer(h))
        sigma = self.density_activation(self.sigma(h)).squeeze(-1)
        if self.use_viewdirs:
            gd = positional_encoding(d, self.dir_freqs)
            h = torch.relu(self.view(torch.cat([self.feature(h), gd], dim=-1)))
        return sigma, torch.sigmoid(self.rgb(h))


def stratified_samples(
    near: float,
    far: float,
    n_rays: int,
    n_samples: int,
    *,
    perturb: bool = True,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Depths ``(n_rays, n_samples)``: one uniform draw in each of ``n_samples`` equal bins of [near, far]
    (Eq. 2); with ``perturb=False`` the bins' midpoints."""
    if not far > near or n_samples < 1:
        raise ValueError(f"need far > near and n_samples >= 1, got near={near}, far={far}, n={n_samples}")
    edges = torch.linspace(near, far, n_samples + 1, dtype=dtype)
    lower, width = edges[:-1], edges[1:] - edges[:-1]
    u = (
        torch.rand(n_rays, n_samples, generator=generator, dtype=dtype)
        if perturb
        else torch.full((n_rays, n_samples), 0.5, dtype=dtype)
    )
    return lower + u * width


def sample_pdf(
    bins: Tensor,
    weights: Tensor,
    n_samples: int,
    *,
    deterministic: bool = False,
    generator: torch.Generator | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Inverse transform sampling of the piecewise-constant pdf with ``weights (..., B)`` on the bins with
    edges ``bins (..., B + 1)`` (Sec. 5.2): ``(..., n_samples)`` depths. ``eps`` is added to every weight
    (official code) so an all-zero ray samples uniformly; ``deterministic`` uses evenly spaced u."""
    if bins.shape[:-1] != weights.shape[:-1] or bins.shape[-1] != weights.shape[-1] + 1:
        raise ValueError(
            f"bins (..., B + 1) and weights (..., B) disagree: {tuple(bins.shape)} and {tuple(weights.shape)}"
        )
    if (weights < 0).any():
        raise ValueError("sample_pdf: weights must be non-negative")
    weights = weights + eps
    pdf = weights / weights.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[..., :1]), torch.cumsum(pdf, -1)], -1)  # (..., B + 1)
    cdf[..., -1] = 1.0
    shape = (*cdf.shape[:-1], n_samples)
    if deterministic:
        u = torch.linspace(0.0, 1.0, n_samples + 2, dtype=cdf.dtype, device=cdf.device)[1:-1].expand(shape)
    else:
        u = torch.rand(shape, generator=generator, dtype=cdf.dtype).to(cdf.device)
    u = u.contiguous()
    above = torch.searchsorted(cdf.detach(), u, right=True).clamp(1, cdf.shape[-1] - 1)
    below = above - 1
    cdf_lo, cdf_hi = cdf.gather(-1, below), cdf.gather(-1, above)
    bin_lo, bin_hi = bins.gather(-1, below), bins.gather(-1, above)
    span = cdf_hi - cdf_lo
    frac = (u - cdf_lo) / torch.where(span > 0, span, torch.ones_like(span))
    return bin_lo + frac * (bin_hi - bin_lo)


def compositing_weights(sigma: Tensor, deltas: Tensor) -> tuple[Tensor, Tensor]:
    """Weights w_i = T_i (1 − exp(−σ_i δ_i)) ``(..., N)`` and transmittances T_1 … T_{N+1} ``(..., N + 1)``,
    T_i = exp(−Σ_{j<i} σ_j δ_j) (Eq. 3), from densities and interval lengths of shape ``(..., N)``."""
    if sigma.shape != deltas.shape:
        raise ValueError(
            f"sigma and deltas must have the same shape, got {tuple(sigma.shape)} and {tuple(deltas.shape)}"
        )
    optical = sigma * deltas
    depth = torch.cat([torch.zeros_like(optical[..., :1]), torch.cumsum(optical, -1)], -1)
    transmittance = torch.exp(-depth)
    weights = transmittance[..., :-1] * (1.0 - torch.exp(-optical))
    return weights, transmittance


def volume_render(
    sigma: Tensor,
    rgb: Tensor,
    t: Tensor,
    *,
    background: Tensor | None = None,
    last_delta: float = 1e10,
    direction_norm: Tensor | None = None,
) -> dict[str, Tensor]:
    """Eq. 3 for samples at depths ``t (..., N)`` with densities ``(..., N)`` and colours ``(..., N, 3)``:
    colour ``(..., 3)``, expected depth, accumulated opacity Σ w_i and the weights. δ_i = t_{i+1} − t_i,
    times |d| if ``direction_norm`` is given, δ_N = ``last_delta``."""
    if rgb.shape != (*sigma.shape, 3) or t.shape != sigma.shape:
        raise ValueError(
            f"need sigma (..., N), rgb (..., N, 3), t (..., N); got {tuple(sigma.shape)}, "
            f"{tuple(rgb.shape)}, {tuple(t.shape)}"
        )
    deltas = torch.cat([t[..., 1:] - t[..., :-1], torch.full_like(t[..., :1], last_delta)], -1)
    if direction_norm is not None:
        deltas = deltas * direction_norm[..., None]
    weights, transmittance = compositing_weights(sigma, deltas)
    colour = (weights[..., None] * rgb).sum(-2)
    if background is not None:
        colour = colour + transmittance[..., -1:] * background
    return {"rgb": colour, "depth": (weights * t).sum(-1), "acc": weights.sum(-1), "weights": weights}


class NeRF(nn.Module):
    """A coarse and (if ``n_fine > 0``) a fine :class:`NeRFMLP` with the sampling of Sec. 5.2.

    ``forward(origins, directions)`` on unit-norm rays ``(R, 3)`` returns ``{"coarse": ..., "fine": ...}``,
    each the output of :func:`volume_render`. With ``n_fine = 0`` only the coarse network exists.
    """

    def __init__(
        self,
        *,
        near: float,
        far: float,
        n_coarse: int = 64,
        n_fine: int = 128,
        background: tuple[float, float, float] | None = (1.0, 1.0, 1.0),
        **mlp_kwargs,
    ):
        super().__init__()
        if not far > near or n_coarse < 1 or n_fine < 0:
            raise ValueError(
                f"need far > near, n_coarse >= 1, n_fine >= 0; got {near}, {far}, {n_coarse}, {n_fine}"
            )
        self.near, self.far, self.n_coarse, self.n_fine = near, far, n_coarse, n_fine
        self.coarse = NeRFMLP(**mlp_kwargs)
        self.fine = NeRFMLP(**mlp_kwargs) if n_fine > 0 else None
        self.register_buffer("background", None if background is None else torch.tensor(background))

    def _render(self, mlp: NeRFMLP, origins: Tensor, directions: Tensor, t: Tensor) -> dict[str, Tensor]:
        points = origins[:, None, :] + t[..., None] * directions[:, None, :]
        sigma, rgb = mlp(points, directions[:, None, :].expand_as(points))
        return volume_render(sigma, rgb, t, background=self.background)

    def forward(
        self,
        origins: Tensor,
        directions: Tensor,
        *,
        perturb: bool = True,
        generator: torch.Generator | None = None,
    ) -> dict[str, dict[str, Tensor]]:
        if origins.ndim != 2 or origins.shape[-1] != 3 or directions.shape != origins.shape:
            raise ValueError(
                f"origins and directions must have shape (R, 3), got {tuple(origins.shape)} and "
                f"{tuple(directions.shape)}"
            )
        t_coarse = stratified_samples(
            self.near,
            self.far,
            len(origins),
            self.n_coarse,
            perturb=perturb,
            generator=generator,
            dtype=origins.dtype,
        )
        out = {"coarse": self._render(self.coarse, origins, directions, t_coarse)}
        if self.fine is not None:
            mids = 0.5 * (t_coarse[:, 1:] + t_coarse[:, :-1])
            bins = torch.cat([t_coarse[:, :1], mids, t_coarse[:, -1:]], -1)  # edges of the coarse intervals
            t_new = sample_pdf(
                bins,
                out["coarse"]["weights"].detach(),
                self.n_fine,
                deterministic=not perturb,
                generator=generator,
            )
            t_fine = torch.sort(torch.cat([t_coarse, t_new.detach()], -1), -1).values
            out["fine"] = self._render(self.fine, origins, directions, t_fine)
        return out


def psnr(predicted: Tensor, target: Tensor) -> float:
    """Peak signal-to-noise ratio −10 log10(MSE) of images in [0, 1]."""
    mse = (predicted - target).pow(2).mean().item()
    return math.inf if mse == 0 else -10.0 * math.log10(mse)
