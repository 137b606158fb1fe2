"""DDPM: the noise schedule, forward process, posterior, four parameterisations, losses and the sampler.

Time steps are 1-based as in the paper: t ∈ {1, …, T}, with ᾱ_0 = 1. Every schedule array has T + 1
entries, entry 0 standing for t = 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from papers.core.errors import PapersError

PARAMETERISATIONS = ("eps", "x0", "mu", "v")
"""What the network outputs: noise ε, clean sample x₀, posterior mean μ̃, or v = √ᾱ ε − √(1−ᾱ) x₀."""
WEIGHTINGS = ("simple", "eps", "vlb")
"""Loss weightings: plain MSE on the network's own target, L_simple in ε-space, or the variational bound."""

Parameterisation = Literal["eps", "x0", "mu", "v"]
Weighting = Literal["simple", "eps", "vlb"]
Denoise = Callable[[Tensor, Tensor], Tensor]


def linear_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02,
                 reference_steps: int = 1000) -> Tensor:
    """The paper's linear schedule β_1 … β_T (float64), stretched to T steps.

    β_t = (reference_steps / T) · linspace(beta_start, beta_end, T): with T = reference_steps it is the
    paper's 1e-4 → 0.02 over 1000 steps; fewer steps take proportionally larger β so that Σ β_t ≈ 10
    stays what it is at T = 1000 and x_T is pure noise (ᾱ_T = 4e-5 at T = 1000, 2e-5 at T = 100).
    """
    if timesteps < 2:
        raise ValueError(f"timesteps must be >= 2, got {timesteps}")
    scale = reference_steps / timesteps
    betas = torch.linspace(beta_start * scale, beta_end * scale, timesteps, dtype=torch.float64)
    if not (0 < betas.min() and betas.max() < 1):
        raise ValueError(f"β must lie in (0, 1); with T = {timesteps} it spans [{betas.min():.3g}, "
                         f"{betas.max():.3g}] (use more timesteps)")
    return betas


class Diffusion:
    """The Gaussian diffusion of Ho et al. (2020) for a given schedule β_1 … β_T.

    ``reverse_variance`` is σ_t² of the reverse steps p(x_{t−1}|x_t) = N(μ_θ, σ_t² I): ``"beta"`` for
    σ_t² = β_t (the paper's choice), ``"posterior"`` for σ_t² = β̃_t (which the paper found similar).
    """

    def __init__(self, betas: Tensor, reverse_variance: Literal["beta", "posterior"] = "beta"):
        if betas.ndim != 1 or len(betas) < 2:
            raise ValueError(f"betas must be a 1-D tensor of at least 2 values, "
                             f"got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("every β_t must lie in (0, 1)")
        if reverse_variance not in ("beta", "posterior"):
            raise ValueError(f"reverse_variance must be 'beta' or 'posterior', got {reverse_variance!r}")
        self.T = len(betas)
        self.betas = torch.cat([betas.new_zeros(1), betas.double()])                 # β_t, β_0 = 0
        self.alphas = 1 - self.betas                                                  # α_t = 1 − β_t
        self.alpha_bars = torch.cumprod(self.alphas, 0)                               # ᾱ_t = Π_{s≤t} α_s
        previous = torch.cat([self.alpha_bars.new_ones(1), self.alpha_bars[:-1]])     # ᾱ_{t−1}
        self.posterior_variance = (1 - previous) / (1 - self.alpha_bars).clamp_min(1e-300) * self.betas
        self.posterior_x0_coef = previous.sqrt() * self.betas / (1 - self.alpha_bars).clamp_min(1e-300)
        self.posterior_xt_coef = self.alphas.sqrt() * (1 - previous) / (1 - self.alpha_bars).clamp_min(1e-300)
        self.reverse_variance = reverse_variance
        self.sigmas2 = self.betas if reverse_variance == "beta" else self.posterior_variance

    # ---------------------------------------------------------------- indexing

    def at(self, values: Tensor, t: Tensor, like: Tensor) -> Tensor:
        """values[t] shaped to broadcast against ``like`` ([B, 1, …]) in its dtype and device."""
        if t.dtype not in (torch.int32, torch.int64) or t.ndim != 1 or len(t) != len(like):
            raise ValueError(f"t must be a 1-D integer tensor with one step per sample ({len(like)}), "
                             f"got {t.dtype} of shape {tuple(t.shape)}")
        if len(t) and (int(t.min()) < 1 or int(t.max()) > self.T):
            raise ValueError(f"time steps must lie in 1..{self.T}, got {int(t.min())}..{int(t.max())}")
        out = values.to(like.device)[t.to(like.device)].to(like.dtype)
        return out.view(-1, *([1] * (like.ndim - 1)))

    # ---------------------------------------------------------------- forward process and posterior

    def q_mean_var(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I): mean and (per-sample) variance."""
        alpha_bar = self.at(self.alpha_bars, t, x0)
        return alpha_bar.sqrt() * x0, 1 - alpha_bar

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε."""
        if noise.shape != x0.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} differs from x0 shape {tuple(x0.shape)}")
        mean, var = self.q_mean_var(x0, t)
        return mean + var.sqrt() * noise

    def posterior_mean_var(self, x0: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """q(x_{t−1} | x_t, x_0) = N(μ̃_t, β̃_t I) with
        μ̃_t = √ᾱ_{t−1} β_t / (1 − ᾱ_t) · x_0 + √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · x_t,
        β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t."""
        mean = self.at(self.posterior_x0_coef, t, x0) * x0 + self.at(self.posterior_xt_coef, t, x_t) * x_t
        return mean, self.at(self.posterior_variance, t, x0)

    # ---------------------------------------------------------------- parameterisations

    def to_x0_eps(self, kind: Parameterisation, value: Tensor, x_t: Tensor,
                  t: Tensor) -> tuple[Tensor, Tensor]:
        """(x_0, ε) that a prediction ``value`` of type ``kind`` stands for, given x_t = √ᾱ x_0 + √(1−ᾱ) ε."""
        a, s = self.at(self.alpha_bars, t, x_t).sqrt(), self.at(1 - self.alpha_bars, t, x_t).sqrt()
        if kind == "eps":
            return (x_t - s * value) / a, value
        if kind == "x0":
            x0 = value
        elif kind == "mu":  # μ̃ = c_0 x_0 + c_t x_t, c_0 > 0 for t ≥ 1
            c_0, c_t = self.at(self.posterior_x0_coef, t, x_t), self.at(self.posterior_xt_coef, t, x_t)
            x0 = (value - c_t * x_t) / c_0
        elif kind == "v":   # x_0 = √ᾱ x_t − √(1−ᾱ) v,  ε = √(1−ᾱ) x_t + √ᾱ v
            return a * x_t - s * value, s * x_t + a * value
        else:
            raise ValueError(f"unknown parameterisation {kind!r}; choose from {', '.join(PARAMETERISATIONS)}")
        return x0, (x_t - a * x0) / s

    def from_x0_eps(self, kind: Parameterisation, x0: Tensor, eps: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """The prediction of type ``kind`` that (x_0, ε) stand for at (x_t, t)."""
        if kind == "eps":
            return eps
        if kind == "x0":
            return x0
        if kind == "mu":
            return self.posterior_mean_var(x0, x_t, t)[0]
        if kind == "v":
            a, s = self.at(self.alpha_bars, t, x_t).sqrt(), self.at(1 - self.alpha_bars, t, x_t).sqrt()
            return a * eps - s * x0
        raise ValueError(f"unknown parameterisation {kind!r}; choose from {', '.join(PARAMETERISATIONS)}")

    def convert(self, value: Tensor, x_t: Tensor, t: Tensor, source: Parameterisation,
                target: Parameterisation) -> Tensor:
        """Re-express a prediction: e.g. ``convert(eps_hat, x_t, t, "eps", "mu")``."""
        return self.from_x0_eps(target, *self.to_x0_eps(source, value, x_t, t), x_t, t)

    def error_scale(self, kind: Parameterisation, t: Tensor, like: Tensor) -> Tensor:
        """k_t with (prediction error of type ``kind``) = k_t · (ε-prediction error) at fixed x_t:
        k = 1 (ε), −√(1−ᾱ)/√ᾱ (x_0), −β/(√α √(1−ᾱ)) (μ̃), 1/√ᾱ (v)."""
        scales = {
            "eps": torch.ones_like(self.alpha_bars),
            "x0": -((1 - self.alpha_bars) / self.alpha_bars).sqrt(),
            "mu": -self.betas / (self.alphas * (1 - self.alpha_bars).clamp_min(1e-300)).sqrt(),
            "v": 1 / self.alpha_bars.sqrt(),
        }
        if kind not in scales:
            raise ValueError(f"unknown parameterisation {kind!r}; choose from {', '.join(PARAMETERISATIONS)}")
        return self.at(scales[kind], t, like)

    # ---------------------------------------------------------------- training

    def loss_weight(self, kind: Parameterisation, weighting: Weighting, t: Tensor, like: Tensor) -> Tensor:
        """w_t multiplying ‖prediction − target‖² of type ``kind``:

        - ``simple``: w = 1, plain MSE on the network's own target (L_simple when kind = "eps");
        - ``eps``: w = 1/k_t², the same objective as L_simple, ‖ε − ε̂‖², whatever the network outputs;
        - ``vlb``: w = (k_μ/k)² / (2σ_t²), the bound's term L_{t−1} = ‖μ̃_t − μ_θ‖² / (2σ_t²) up to a
          constant (at t = 1, μ̃_1 = x_0 and it is the decoder term −log N(x_0; μ_θ, σ_1²)).
        """
        if weighting == "simple":
            return torch.ones_like(self.at(self.betas, t, like))
        k = self.error_scale(kind, t, like)
        if weighting == "eps":
            return 1 / k**2
        if weighting == "vlb":
            return (self.error_scale("mu", t, like) / k) ** 2 / (2 * self.at(self.sigmas2, t, like))
        raise ValueError(f"unknown weighting {weighting!r}; choose from {', '.join(WEIGHTINGS)}")

    def loss(self, model: Denoise, x0: Tensor, kind: Parameterisation, weighting: Weighting = "simple",
             generator: torch.Generator | None = None) -> Tensor:
        """E_{t ~ U{1..T}, ε ~ N(0, I)} w_t ‖f_θ(x_t, t) − f_t‖², f the target of type ``kind``.

        The squared norm is summed over a sample's dimensions and averaged over the batch. With
        kind = "eps", weighting = "simple" this is the paper's L_simple (Algorithm 1).
        """
        if x0.ndim < 2:
            raise ValueError(f"x0 must be a batch [B, ...], got shape {tuple(x0.shape)}")
        t = torch.randint(1, self.T + 1, (len(x0),), generator=generator).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        x_t = self.q_sample(x0, t, noise)
        target = self.from_x0_eps(kind, x0, noise, x_t, t)
        error = (model(x_t, t) - target).pow(2).flatten(1).sum(1)
        return (self.loss_weight(kind, weighting, t, x0).flatten() * error).mean()

    # ---------------------------------------------------------------- sampling

    def p_mean(self, kind: Parameterisation, output: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """μ_θ(x_t, t) = μ̃_t(x_t, x̂_0); for ε it is (x_t − β_t/√(1−ᾱ_t) ε̂)/√α_t (paper eq. 11)."""
        if kind == "mu":
            return output
        return self.convert(output, x_t, t, kind, "mu")

    @torch.no_grad()
    def sample(self, model: Denoise, n: int, kind: Parameterisation, dim: int = 2,
               generator: torch.Generator | None = None, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> Tensor:
        """Ancestral sampling (Algorithm 2): x_T ~ N(0, I); x_{t−1} = μ_θ(x_t, t) + σ_t z, z ~ N(0, I)
        for t > 1 and z = 0 at t = 1. ``model(x_t, t)`` predicts a quantity of type ``kind``."""
        if kind not in PARAMETERISATIONS:
            raise ValueError(f"unknown parameterisation {kind!r}; choose from {', '.join(PARAMETERISATIONS)}")
        if n < 1 or dim < 1:
            raise ValueError(f"need n >= 1 and dim >= 1, got n={n}, dim={dim}")
        x = torch.randn(n, dim, generator=generator, dtype=dtype).to(device)
        for step in range(self.T, 0, -1):
            t = torch.full((n,), step, dtype=torch.long, device=device)
            mean = self.p_mean(kind, model(x, t), x, t)
            if step > 1:
                z = torch.randn(n, dim, generator=generator, dtype=dtype).to(device)
                x = mean + self.at(self.sigmas2, t, x).sqrt() * z
            else:
                x = mean
            if not bool(torch.isfinite(x).all()):
                raise PapersError(f"sampling diverged (non-finite values) at step t = {step}")
        return x


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """The Transformer's sinusoidal position embedding of the step t: [sin(t ω_i), cos(t ω_i)],
    ω_i = max_period^(−i / (dim/2)), i = 0 … dim/2 − 1."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], dim=1)


class Denoiser(nn.Module):
    """A small MLP f_θ(x_t, t) on the sample and a sinusoidal embedding of its time step:

        h_0 = [x_t, sinusoid(t · time_scale)],   h_k = SiLU(W_k h_{k−1} + b_k),   f = W_out h_L + b_out

    A plain (non-residual) MLP, so that what it predicts is set by the parameterisation alone.
    ``time_scale`` maps the step onto the 1000-step clock of the paper's embedding (1000 / T).
    """

    def __init__(self, dim: int = 2, hidden: int = 128, layers: int = 3, time_dim: int = 32,
                 time_scale: float = 1.0):
        super().__init__()
        if dim < 1 or hidden < 1 or layers < 1 or time_dim < 2 or time_dim % 2:
            raise ValueError(f"need dim, hidden, layers >= 1 and an even time_dim >= 2, got {dim}, {hidden}, "
                             f"{layers}, {time_dim}")
        self.dim, self.time_dim, self.time_scale = dim, time_dim, time_scale
        widths = [dim + time_dim] + [hidden] * layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must be [batch, {self.dim}], got shape {tuple(x.shape)}")
        if t.shape != (len(x),):
            raise ValueError(f"t must be [batch] = [{len(x)}], got shape {tuple(t.shape)}")
        h = torch.cat([x, timestep_embedding(t * self.time_scale, self.time_dim).to(x.dtype)], dim=1)
        for layer in self.layers:
            h = F.silu(layer(h))
        return self.out(h)
