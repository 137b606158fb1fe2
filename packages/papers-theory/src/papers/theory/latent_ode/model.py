"""Latent ODE with an ODE-RNN recognition network, and the GRU-with-Δt baseline.

Recognition network (ODE-RNN, Rubanova et al. 2019, Alg. 1), run backwards over t_N > … > t_1 ≥ t_0:

    h = 0 at t_N
    h ← ODESolve(f_h, h, t_{i+1} → t_i)          between observations: the hidden state follows an ODE
    h ← GRU(x_i, h)   where x_i is observed       (unobserved points leave h alone)
    [μ, log σ²] = W h(t_0) + b,     q(z_0 | x) = N(μ, diag σ²)

Generative model (latent ODE, Chen et al. 2018, Sec. 5):

    z_0 = μ + σ ⊙ ε,  ε ~ N(0, I)                                    (reparametrisation)
    z(t_1), …, z(t_M) = ODESolve(f_z, z_0, t_0, t_1, …, t_M)          any times t_0 ≤ t_1 < … < t_M
    p(x(t) | z(t)) = N(g(z(t)), σ_x² I)
    ELBO = Σ_{observed i} log N(x_i | g(z(t_i)), σ_x² I) − KL(q(z_0 | x) ‖ N(0, I))
    KL   = ½ Σ_j (μ_j² + σ_j² − log σ_j² − 1)

Baseline (Chen et al. 2018, Sec. 5.1): a GRU whose input is the observation and the time to the next one,
h_i = GRU([x_i, t_{i+1} − t_i], h_{i−1}), x̂(t_{i+1}) = W h_i + b.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from papers.theory.neural_ode import NFECounter, odeint, odeint_adjoint

__all__ = [
    "AutonomousField",
    "DeltaTGRU",
    "LatentODE",
    "ODERNNEncoder",
    "gaussian_kl",
    "gaussian_log_likelihood",
    "sample_posterior",
]


def _mlp(dim_in: int, hidden: int, dim_out: int, activation: type[nn.Module]) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, hidden), activation(), nn.Linear(hidden, dim_out))


def _check_times(times: Tensor, name: str) -> None:
    """A 1-D, finite, strictly increasing sequence of times (batched: strictly increasing in every row)."""
    if not isinstance(times, Tensor) or not torch.is_floating_point(times) or times.numel() == 0:
        raise ValueError(f"{name} must be a non-empty floating-point tensor of times")
    if not bool(torch.isfinite(times).all()):
        raise ValueError(f"{name} must be finite")
    if times.shape[-1] > 1 and not bool((times.diff(dim=-1) > 0).all()):
        raise ValueError(f"{name} must be strictly increasing, got {times.tolist()}")


def _check_values(values: Tensor, batch_times: tuple[int, ...], obs_dim: int, name: str) -> None:
    """``values`` of shape ``[B, T, obs_dim]`` whose leading dimensions match ``batch_times`` = (B, T)."""
    if values.dim() != 3 or values.shape[-1] != obs_dim:
        raise ValueError(f"{name}: values must have shape [batch, time, {obs_dim}], "
                         f"got {tuple(values.shape)}")
    for got, want, what in zip(values.shape[:2], batch_times, ("batch", "time"), strict=True):
        if want is not None and got != want:
            raise ValueError(f"{name}: values have {got} {what} entries, the times {want}")


class AutonomousField(nn.Module):
    """``dy/dt = W₂ σ(W₁ y + b₁) + b₂``: a one-hidden-layer MLP vector field that ignores ``t``."""

    def __init__(self, dim: int, hidden: int, activation: type[nn.Module] = nn.Tanh):
        super().__init__()
        self.net = _mlp(dim, hidden, dim, activation)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.net(y)


class ODERNNEncoder(nn.Module):
    """``q(z_0 | x)`` by an ODE-RNN run backwards in time; returns ``(μ, log σ²)`` at ``t_0``.

    Between grid times the hidden state follows ``dh/dt = f_h(h)``, solved by ``odeint`` (one Euler step
    per interval by default, as the recognition ODE in Rubanova et al.; any method of ``odeint``).
    At every time where ``mask`` is true it is updated by a GRU cell; elsewhere it is left alone, and it
    stays 0 until a sequence's last observation. So a batch of sequences sampled at different times can
    share one grid (the union of their times) and each is encoded as if alone.
    """

    def __init__(self, obs_dim: int = 2, latent_dim: int = 4, hidden: int = 25, ode_hidden: int = 25, *,
                 method: str = "euler", rtol: float = 1e-3, atol: float = 1e-4, options: dict | None = None):
        super().__init__()
        self.obs_dim, self.hidden = obs_dim, hidden
        self.dynamics = AutonomousField(hidden, ode_hidden, nn.Tanh)
        self.gru = nn.GRUCell(obs_dim, hidden)
        self.to_posterior = nn.Linear(hidden, 2 * latent_dim)
        self.method, self.rtol, self.atol, self.options = method, rtol, atol, options

    def evolve(self, h: Tensor, t_from: Tensor, t_to: Tensor) -> Tensor:
        """``h(t_to)`` from ``h(t_from)`` under ``dh/dt = f_h(h)`` (``t_to < t_from`` runs backwards)."""
        t = torch.stack([t_from, t_to]).to(h)
        return odeint(self.dynamics, h, t, rtol=self.rtol, atol=self.atol, method=self.method,
                      options=self.options)[-1]

    def forward(self, times: Tensor, values: Tensor, mask: Tensor | None = None,
                t0: float | None = None) -> tuple[Tensor, Tensor]:
        """``times [T]`` strictly increasing, ``values [B, T, obs_dim]``, ``mask [B, T]`` (None: all seen).

        The state is carried from ``times[-1]`` back to ``t0`` (default ``times[0]``); values where the
        mask is false are never read.
        """
        _check_times(times, "ODERNNEncoder: times")
        if times.dim() != 1:
            raise ValueError(f"ODERNNEncoder: times must be 1-D (one grid for the batch), "
                             f"got {tuple(times.shape)}")
        _check_values(values, (None, len(times)), self.obs_dim, "ODERNNEncoder")
        if mask is not None:
            if mask.shape != values.shape[:2]:
                raise ValueError(f"ODERNNEncoder: mask must have shape {tuple(values.shape[:2])}, "
                                 f"got {tuple(mask.shape)}")
            mask = mask.bool()
            values = values.masked_fill(~mask[..., None], 0.0)
        t0 = float(times[0]) if t0 is None else float(t0)
        if t0 > float(times[0]):
            raise ValueError(f"ODERNNEncoder: t0={t0} must not be after the first time {float(times[0])}")
        h = values.new_zeros(values.shape[0], self.hidden)
        started = torch.zeros(values.shape[0], 1, dtype=torch.bool, device=values.device)
        for i in reversed(range(len(times))):
            if i < len(times) - 1:
                h = self.evolve(h, times[i + 1], times[i])
                if mask is not None:  # h = 0 until a sequence's own last observation
                    h = torch.where(started, h, 0.0)
            updated = self.gru(values[:, i], h)
            if mask is None:
                h = updated
            else:
                h = torch.where(mask[:, i, None], updated, h)
                started = started | mask[:, i, None]
        if t0 < float(times[0]):
            h = self.evolve(h, times[0], torch.tensor(t0))
        mean, logvar = self.to_posterior(h).chunk(2, dim=-1)
        return mean, logvar


def gaussian_kl(mean: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ (μ² + σ² − log σ² − 1)``, summed over the last dimension."""
    return 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1.0).sum(dim=-1)


def gaussian_log_likelihood(x: Tensor, mean: Tensor, std: float, mask: Tensor | None = None) -> Tensor:
    """``Σ log N(x | mean, std² I)`` over the observed points (``mask [B, T]``) and coordinates: ``[B]``."""
    log_density = -0.5 * (((x - mean) / std).pow(2) + math.log(2 * math.pi * std**2))
    if mask is not None:
        log_density = log_density * mask[..., None].to(log_density)
    return log_density.flatten(1).sum(dim=1)


def sample_posterior(mean: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Reparametrised sample ``z = μ + σ ⊙ ε``, ``ε ~ N(0, I)``: differentiable in ``μ`` and ``log σ²``."""
    noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
    return mean + (0.5 * logvar).exp() * noise


class LatentODE(nn.Module):
    """ODE-RNN encoder → ``z_0`` → latent ODE ``dz/dt = f_z(z)`` → decoder ``g``; a VAE over trajectories.

    Defaults follow Chen et al. (Sec. 5.1): a 4-dimensional latent, 25 recognition units, one hidden layer
    of 20 units in the latent dynamics and in the decoder. The latent ODE is solved by dopri5 (``odeint``,
    or ``odeint_adjoint`` with ``adjoint=True``); ``nfe`` counts the evaluations of ``f_z``.
    """

    def __init__(self, obs_dim: int = 2, latent_dim: int = 4, *, encoder_hidden: int = 25,
                 encoder_ode_hidden: int = 25, dynamics_hidden: int = 20, decoder_hidden: int = 20,
                 obs_std: float = 0.1, encoder_method: str = "euler", rtol: float = 1e-3, atol: float = 1e-4,
                 adjoint: bool = False):
        super().__init__()
        if not obs_std > 0:
            raise ValueError(f"obs_std must be > 0, got {obs_std}")
        self.obs_dim, self.latent_dim, self.obs_std = obs_dim, latent_dim, obs_std
        self.encoder = ODERNNEncoder(obs_dim, latent_dim, encoder_hidden, encoder_ode_hidden,
                                     method=encoder_method, rtol=rtol, atol=atol)
        self.dynamics = NFECounter(AutonomousField(latent_dim, dynamics_hidden, nn.ELU))
        self.decoder = _mlp(latent_dim, decoder_hidden, obs_dim, nn.ReLU)
        self.rtol, self.atol, self.adjoint = rtol, atol, adjoint

    @property
    def nfe(self) -> int:
        return self.dynamics.nfe

    def latent_trajectory(self, z0: Tensor, times: Tensor, t0: float = 0.0) -> Tensor:
        """``z(t)`` at ``times [M]`` (strictly increasing, ``≥ t0``) from ``z(t0) = z0 [B, L]``: ``[B, M, L]``
        (``t0`` is prepended to the solver's grid when ``times[0] > t0``)."""
        _check_times(times, "LatentODE: times")
        if times.dim() != 1:
            raise ValueError(f"LatentODE: times must be 1-D, got shape {tuple(times.shape)}")
        if z0.dim() != 2 or z0.shape[1] != self.latent_dim:
            raise ValueError(f"LatentODE: z0 must have shape [batch, {self.latent_dim}], "
                             f"got {tuple(z0.shape)}")
        if float(times[0]) < t0:
            raise ValueError(f"LatentODE: times must start at or after t0={t0}, got {float(times[0])}")
        prepend = float(times[0]) > t0
        grid = torch.cat([times.new_tensor([t0]), times]) if prepend else times
        solve = odeint_adjoint if self.adjoint else odeint
        zs = solve(self.dynamics, z0, grid.to(z0), rtol=self.rtol, atol=self.atol, method="dopri5")
        return (zs[1:] if prepend else zs).transpose(0, 1)

    def decode(self, z0: Tensor, times: Tensor, t0: float = 0.0) -> Tensor:
        """Mean of ``p(x(t) | z(t))`` at ``times [M]``: ``[B, M, obs_dim]``."""
        return self.decoder(self.latent_trajectory(z0, times, t0))

    def elbo(self, times: Tensor, values: Tensor, mask: Tensor | None = None,
             generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One-sample ELBO per sequence, with its log-likelihood and KL parts (each ``[B]``)."""
        mean, logvar = self.encoder(times, values, mask)
        z0 = sample_posterior(mean, logvar, generator)
        x_hat = self.decode(z0, times, float(times[0]))
        log_likelihood = gaussian_log_likelihood(values, x_hat, self.obs_std, mask)
        kl = gaussian_kl(mean, logvar)
        return {"elbo": log_likelihood - kl, "log_likelihood": log_likelihood, "kl": kl}

    def predict(self, times: Tensor, values: Tensor, mask: Tensor | None, query_times: Tensor) -> Tensor:
        """The decoded posterior mean ``z_0 = μ`` at ``query_times [M]`` (≥ ``times[0]``): ``[B, M, D]``."""
        mean, _ = self.encoder(times, values, mask)
        return self.decode(mean, query_times, float(times[0]))


class DeltaTGRU(nn.Module):
    """The RNN baseline: ``h_i = GRU([x_i, Δt_i], h_{i−1})``, ``x̂(t_i + Δt_i) = W h_i + b``.

    ``Δt_i`` is the time from observation ``i`` to the point to be predicted (the next observation in
    training). Input sequences: ``times [B, N]`` (strictly increasing in every row), ``values [B, N, D]``.
    """

    def __init__(self, obs_dim: int = 2, hidden: int = 25):
        super().__init__()
        self.obs_dim, self.hidden = obs_dim, hidden
        self.cell = nn.GRUCell(obs_dim + 1, hidden)
        self.readout = nn.Linear(hidden, obs_dim)

    def _check(self, times: Tensor, values: Tensor) -> None:
        _check_times(times, "DeltaTGRU: times")
        if times.dim() != 2:
            raise ValueError(f"DeltaTGRU: times must have shape [batch, N], got {tuple(times.shape)}")
        _check_values(values, tuple(times.shape), self.obs_dim, "DeltaTGRU")

    def step(self, x: Tensor, dt: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """One update: the new state and its prediction of ``x`` a time ``dt`` after ``x``."""
        h = self.cell(torch.cat([x, dt[:, None]], dim=-1), h)
        return h, self.readout(h)

    def states(self, times: Tensor, values: Tensor) -> Tensor:
        """``S [B, N, H]``: ``S_j`` is the state after observations ``0 … j−1``, fed with their gaps."""
        self._check(times, values)
        h = values.new_zeros(values.shape[0], self.hidden)
        states = [h]
        for i in range(times.shape[1] - 1):
            h, _ = self.step(values[:, i], times[:, i + 1] - times[:, i], h)
            states.append(h)
        return torch.stack(states, dim=1)

    def next_observation_predictions(self, times: Tensor, values: Tensor) -> Tensor:
        """Teacher-forced predictions of observations ``1 … N−1`` from the ones before: ``[B, N−1, D]``."""
        states = self.states(times, values)
        return self.readout(states[:, 1:])

    def interpolate(self, times: Tensor, values: Tensor, query_times: Tensor) -> Tensor:
        """Predict ``x`` at ``query_times [B, Q]`` from the observations before each query: ``[B, Q, D]``.

        A query after observation ``j`` (the last one before it) is answered by one step from ``S_j`` with
        input ``[x_j, t_q − t_j]``. Queries not after the first observation have nothing to go on: NaN.
        """
        states = self.states(times, values)
        if query_times.dim() != 2 or query_times.shape[0] != times.shape[0]:
            raise ValueError(f"DeltaTGRU: query_times must have shape [{times.shape[0]}, Q], "
                             f"got {tuple(query_times.shape)}")
        last = torch.searchsorted(times.contiguous(), query_times.contiguous()) - 1  # last j with t_j < t_q
        index = last.clamp(min=0)
        h = states.gather(1, index[..., None].expand(-1, -1, self.hidden))
        x = values.gather(1, index[..., None].expand(-1, -1, self.obs_dim))
        gap = query_times - times.gather(1, index)
        h = self.cell(torch.cat([x, gap[..., None]], dim=-1).flatten(0, 1), h.flatten(0, 1))
        predictions = self.readout(h).view(*query_times.shape, self.obs_dim)
        return predictions.masked_fill((last < 0)[..., None], float("nan"))

    def extrapolate(self, times: Tensor, values: Tensor, query_times: Tensor) -> Tensor:
        """Roll out at ``query_times [Q]`` (strictly increasing, after every last observation): ``[B, Q, D]``.

        After the observations, each prediction is fed back as the next input with the gap to the next query.
        """
        self._check(times, values)
        _check_times(query_times, "DeltaTGRU: query_times")
        if query_times.dim() != 1 or float(query_times[0]) <= float(times[:, -1].max()):
            raise ValueError("DeltaTGRU.extrapolate: query_times must be 1-D and after the last observation")
        h = self.states(times, values)[:, -1]
        x, t = values[:, -1], times[:, -1]
        predictions = []
        for t_query in query_times:
            h, x = self.step(x, t_query - t, h)
            t = t_query.expand_as(t)
            predictions.append(x)
        return torch.stack(predictions, dim=1)
