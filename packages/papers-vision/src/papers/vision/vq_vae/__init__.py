"""VQ-VAE: vector-quantised discrete latents with a learned autoregressive prior.

Aaron van den Oord, Oriol Vinyals, Koray Kavukcuoglu. *Neural Discrete Representation Learning*.
NeurIPS 2017. arXiv:1711.00937. Catalogue id 001:159:1.

An encoder maps x to z_e(x) of shape (D, h, w); each position is replaced by its nearest code of a
codebook e_1 … e_K in R^D (Eq. 1-2):

    k = argmin_j ||z_e(x) − e_j||²,   z_q(x) = e_k

The decoder reconstructs x from z_q. The gradient skips the argmin (straight-through estimator): the
decoder input is z_e + sg(z_q − z_e). The loss is (Eq. 3)

    L = −log p(x | z_q(x)) + ||sg[z_e(x)] − e||² + β ||z_e(x) − sg[e]||²,   β = 0.25

(reconstruction, codebook, commitment). The EMA variant (Appendix A.1) replaces the codebook term by
moving averages with decay γ = 0.99 and Laplace-smoothed counts:

    N_i ← γ N_i + (1 − γ) n_i,   m_i ← γ m_i + (1 − γ) Σ_j z_e,j(i),   e_i = m_i / N_i

After training, an autoregressive prior p(z) over the grid of code indices is fitted (a PixelCNN in the
paper, a small causal transformer here); sampling codes from it and decoding gives new images.

    from papers.vision.vq_vae import VQVAE, CodePrior, quantize, perplexity
    model = VQVAE(num_codes=32, code_dim=16, ema=True)      # (N, 1, 16, 16) → 4 × 4 codes
    recon, vq = model(x); loss = F.mse_loss(recon, x) / x.var() + vq.loss
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="vq-vae",
    papers=Paper(
        "Neural Discrete Representation Learning",
        "Aaron van den Oord, Oriol Vinyals, Koray Kavukcuoglu",
        2017,
        venue="NeurIPS",
        arxiv="1711.00937",
        catalog_ids=("001:159:1",),
    ),
    claim=(
        "Discrete latents (nearest-codebook quantisation, straight-through gradient, codebook and commitment "
        "losses) give reconstructions close to a continuous VAE's while using many codes, and an "
        "autoregressive prior fitted over the codes afterwards enables sampling."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "scikit-learn digits at 16x16, 4x4 code grid (K=32, D=16): VQ-VAE with the codebook loss vs the EMA "
        "codebook vs a Gaussian VAE of the same architecture; test MSE, codebook perplexity; a causal "
        "transformer prior over the codes (bits per code vs uniform and i.i.d. priors) and decoded samples."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        name: "model"
        for name in (
            "CodePrior",
            "Decoder",
            "Encoder",
            "GaussianVAE",
            "ResidualBlock",
            "VQOutput",
            "VQVAE",
            "VectorQuantizer",
            "code_counts",
            "ema_update",
            "flatten_latents",
            "lookup",
            "n_params",
            "nearest_codes",
            "perplexity",
            "perplexity_of_counts",
            "quantize",
            "straight_through",
            "vq_losses",
        )
    },
)
