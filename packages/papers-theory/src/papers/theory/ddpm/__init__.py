"""Denoising Diffusion Probabilistic Models.

Jonathan Ho, Ajay Jain, Pieter Abbeel. *Denoising Diffusion Probabilistic Models*. NeurIPS 2020.
arXiv:2006.11239. Catalogue id 000:7:3 (the seed's "the network learns the perturbation, a difference
or velocity, rather than the signal").

Forward process (fixed), with α_t = 1 − β_t and ᾱ_t = Π_{s≤t} α_s, t = 1 … T:

    q(x_t | x_{t−1}) = N(√α_t x_{t−1}, β_t I),      q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I)
    x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε,                  ε ~ N(0, I)

Posterior of one step back:

    q(x_{t−1} | x_t, x_0) = N(μ̃_t, β̃_t I)
    μ̃_t = √ᾱ_{t−1} β_t / (1 − ᾱ_t) · x_0 + √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · x_t
    β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t

Reverse process p_θ(x_{t−1} | x_t) = N(μ_θ(x_t, t), σ_t² I), σ_t² = β_t. The network may predict
μ̃ directly, x_0, the noise ε, or v = √ᾱ_t ε − √(1 − ᾱ_t) x_0 (Salimans & Ho 2022); all give μ_θ:

    ε:   μ_θ = (x_t − β_t / √(1 − ᾱ_t) · ε_θ) / √α_t                     (paper eq. 11)
    x_0: x_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t,    v: x_0 = √ᾱ_t x_t − √(1 − ᾱ_t) v

Losses: the bound's terms L_{t−1} = ‖μ̃_t − μ_θ‖² / (2σ_t²) + C, and the paper's
L_simple = E_{t, x_0, ε} ‖ε − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t)‖² (Algorithm 1). Sampling (Algorithm 2):
x_T ~ N(0, I); x_{t−1} = μ_θ(x_t, t) + σ_t z, z ~ N(0, I) for t > 1, z = 0 at t = 1.
Schedule: β linear from 1e-4 to 0.02 at T = 1000; for T steps both ends are scaled by 1000/T (here
T = 100, β from 1e-3 to 0.2), which keeps x_T pure noise (ᾱ_T = 4e-5 at T = 1000, 2e-5 at T = 100).
The reproduction is a toy: 2-D data, a small MLP.

    from papers.theory.ddpm import Diffusion, Denoiser, linear_betas
    diffusion = Diffusion(linear_betas(100))
    loss = diffusion.loss(model, x0, "eps")                 # L_simple
    samples = diffusion.sample(model, 1000, "eps")          # ancestral sampler
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="ddpm",
    papers=Paper(
        "Denoising Diffusion Probabilistic Models",
        "Jonathan Ho, Ajay Jain, Pieter Abbeel",
        2020,
        venue="NeurIPS",
        arxiv="2006.11239",
        catalog_ids=("000:7:3",),
    ),
    claim="Predicting the noise ε (a difference) with L_simple samples at least as well as predicting x₀ or "
          "the posterior mean μ̃, at a matched training budget.",
    module=f"{__name__}.experiment",
    summary="2-D toys (8 Gaussians, moons, swiss roll): one MLP denoiser trained to predict ε, x₀, μ̃ or v "
            "with the same steps, batches and noise; sliced Wasserstein and MMD of ancestral samples "
            "against held-out data.",
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "DATASETS": "data",
        "GaussianMixture": "data",
        "eight_gaussians": "data",
        "mmd2": "data",
        "sliced_wasserstein": "data",
        "swiss_roll": "data",
        "two_moons": "data",
        "PARAMETERISATIONS": "model",
        "WEIGHTINGS": "model",
        "Denoiser": "model",
        "Diffusion": "model",
        "linear_betas": "model",
        "timestep_embedding": "model",
    },
)
