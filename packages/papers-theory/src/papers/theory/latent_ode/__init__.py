"""Latent ODEs for irregularly sampled time series, against an RNN fed the time gaps.

- Ricky T. Q. Chen, Yulia Rubanova, Jesse Bettencourt, David Duvenaud. *Neural Ordinary Differential
  Equations*. NeurIPS 2018. arXiv:1806.07366, Sec. 5 (the latent ODE, the spirals experiment and the
  RNN-with-Δt baseline). Catalogue id 004:29:2.
- Yulia Rubanova, Ricky T. Q. Chen, David Duvenaud. *Latent ODEs for Irregularly-Sampled Time Series*.
  NeurIPS 2019. arXiv:1907.03907 (the ODE-RNN recognition network).

A trajectory observed at irregular times t_1 < … < t_N is encoded into q(z_0 | x) by an ODE-RNN run
backwards in time; a latent ODE carries z_0 to any times and a decoder maps z(t) to the observation:

    encoder    h ← ODESolve(f_h, h, t_{i+1} → t_i);   h ← GRU(x_i, h) where x_i is observed
               [μ, log σ²] = W h(t_0) + b
    decoder    z_0 = μ + σ ⊙ ε,  z(t) = z_0 + ∫_{t_0}^t f_z(z(s)) ds,   x(t) ~ N(g(z(t)), σ_x² I)
    ELBO       Σ_i log N(x_i | g(z(t_i)), σ_x² I) − ½ Σ_j (μ_j² + σ_j² − log σ_j² − 1)
    baseline   h_i = GRU([x_i, t_{i+1} − t_i], h_{i−1}),   x̂(t_{i+1}) = W h_i + b

    from papers.theory.latent_ode import LatentODE, DeltaTGRU, spirals
    model = LatentODE(obs_dim=2, latent_dim=4)
    parts = model.elbo(times, values, mask)             # times [T], values [B, T, 2], mask [B, T]
    x_hat = model.predict(times, values, mask, query)   # decoded at any increasing times >= times[0]
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="latent-ode",
    papers=(
        Paper(
            "Neural Ordinary Differential Equations",
            "Ricky T. Q. Chen, Yulia Rubanova, Jesse Bettencourt, David Duvenaud",
            2018,
            venue="NeurIPS",
            arxiv="1806.07366",
            catalog_ids=("004:29:2",),
        ),
        Paper(
            "Latent ODEs for Irregularly-Sampled Time Series",
            "Yulia Rubanova, Ricky T. Q. Chen, David Duvenaud",
            2019,
            venue="NeurIPS",
            arxiv="1907.03907",
        ),
    ),
    claim=(
        "On irregularly sampled noisy spirals a latent ODE with an ODE-RNN encoder interpolates held-out "
        "points and extrapolates past the observed window with lower RMSE than a GRU fed the time gaps."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "1,000 clockwise and counter-clockwise 2-D spirals, 30 of the first 50 grid points observed; "
        "latent ODE (ODE-RNN encoder, dopri5 decoder, ELBO) vs a GRU with Δt input: interpolation and "
        "extrapolation RMSE to the noise-free spirals."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "observation_mask": "data",
        "observed_sequences": "data",
        "spirals": "data",
        "AutonomousField": "model",
        "DeltaTGRU": "model",
        "LatentODE": "model",
        "ODERNNEncoder": "model",
        "gaussian_kl": "model",
        "gaussian_log_likelihood": "model",
        "sample_posterior": "model",
    },
)
