"""Perceiver: General Perception with Iterative Attention.

Andrew Jaegle, Felix Gimeno, Andrew Brock, Andrew Zisserman, Oriol Vinyals, João Carreira.
*Perceiver: General Perception with Iterative Attention*. ICML 2021. arXiv:2103.03206.
Catalogue id 001:11:1.

The input is a byte array x ∈ R^{M×C}: M elements (pixels), each its value concatenated with Fourier
features of its position p ∈ [−1, 1]^d,

    f_k = linspace(1, μ/2, K)_k                     (μ the sampling rate, so f_K is the Nyquist frequency)
    FF(p) = [p, sin(f_k π p_j), cos(f_k π p_j)]     k = 1..K, j = 1..d  →  d (2K + 1) features

A learned latent array z ∈ R^{N×D}, N ≪ M, reads the input by cross-attention and is then processed by
a latent Transformer; the pair is repeated R times (weights shared after the first cross-attention):

    z ← z + W_o softmax((LN(z) W_q)(LN(x) W_k)ᵀ / √D) (LN(x) W_v),   z ← z + MLP(LN z)     O(M N)
    z ← z + MHSA(LN z),   z ← z + MLP(LN z)                      (L blocks per repeat)      O(N²)
    logits = W_c LN((1/N) Σ_n z_n)

so the cost is linear in M (a Transformer over the inputs is O(M²)), and nothing depends on the order
of the M elements: permuting the pixels together with their position features leaves the output
unchanged. The experiment trains a reduced Perceiver, a ConvNet with Fourier-feature channels and an MLP
on 8 × 8 digits, raw and under a fixed pixel permutation, and times cross-attention vs self-attention
over M = 64 … 4,096 inputs.

    from papers.vision.perceiver import Perceiver, image_inputs
    x = image_inputs(images, num_bands=4)            # (B, 1, 8, 8) → (B, 64, 1 + 2·9)
    logits = Perceiver(x.shape[-1], 10)(x)           # any number of inputs M
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="perceiver",
    papers=Paper(
        "Perceiver: General Perception with Iterative Attention",
        "Andrew Jaegle, Felix Gimeno, Andrew Brock, Andrew Zisserman, Oriol Vinyals, João Carreira",
        2021,
        venue="ICML",
        arxiv="2103.03206",
        catalog_ids=("001:11:1",),
    ),
    claim=(
        "A Perceiver (latents cross-attending to pixels with Fourier position features) keeps its accuracy "
        "under a fixed pixel permutation where a ConvNet drops, is competitive on raw pixels, and its "
        "cross-attention costs O(M N), linear in the input size, against O(M²) for self-attention."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Reduced Perceiver vs ConvNet (FF) vs MLP on 8x8 digits, raw and fixed-permuted pixels (Table 2 "
        "style); forward time and FLOPs of latent cross-attention vs full self-attention for M = 64..4096 "
        "inputs, log-log slopes; first cross-attention maps."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        name: "model"
        for name in (
            "Attention",
            "ConvNet",
            "CrossAttentionBlock",
            "FullSelfAttention",
            "LatentCrossAttention",
            "MLPClassifier",
            "Perceiver",
            "SelfAttentionBlock",
            "attention_flops",
            "fourier_features",
            "fourier_frequencies",
            "grid_positions",
            "image_inputs",
            "inputs_to_grid",
            "n_params",
        )
    },
)
