"""MixMatch: semi-supervised learning from guessed, sharpened labels and MixUp.

David Berthelot, Nicholas Carlini, Ian Goodfellow, Nicolas Papernot, Avital Oliver, Colin Raffel.
*MixMatch: A Holistic Approach to Semi-Supervised Learning*. NeurIPS 2019. arXiv:1905.02249.
Catalogue id 001:98:1.

Algorithm 1, for a labelled batch X = ((x_b, p_b)) and an unlabelled batch U = (u_b), b = 1..B:

    x̂_b = Augment(x_b);  û_{b,k} = Augment(u_b), k = 1..K
    q̄_b = (1/K) Σ_k p_model(y | û_{b,k}; θ)                       label guess, no gradient
    q_b = Sharpen(q̄_b, T),  Sharpen(p, T)_i = p_i^{1/T} / Σ_j p_j^{1/T}
    W = Shuffle(Concat(X̂, Û));  X' = MixUp(X̂_i, W_i);  U' = MixUp(Û_i, W_{i+|X̂|})
    MixUp: λ ~ Beta(α, α), λ' = max(λ, 1 − λ), x' = λ' x1 + (1 − λ') x2, p' = λ' p1 + (1 − λ') p2
    L_X = (1/|X'|) Σ H(p, p_model(y | x; θ)),   L_U = (1/(L |U'|)) Σ ||q − p_model(y | u; θ)||²
    L = L_X + λ_U L_U

with T = 0.5, K = 2, α = 0.75, λ_U = 100 (ramped up linearly), weight decay and an exponential moving
average (0.999) of the weights for evaluation. The experiment is a toy version: scikit-learn's 8 × 8
digits with 50 labels and a small conv net instead of CIFAR-10/SVHN with 250-4,000 labels and a
Wide ResNet-28; MixMatch against supervised-only training and the ablations of Table 4.

    from papers.vision.mixmatch import MixMatch, ConvNet, sharpen
    loss_x, loss_u, q = MixMatch(k=2, temperature=0.5, alpha=0.75)(model, x, y, u, augment, generator, rng)
    loss = loss_x + lambda_u * linear_rampup(step, ramp_steps) * loss_u
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="mixmatch",
    papers=Paper(
        "MixMatch: A Holistic Approach to Semi-Supervised Learning",
        "David Berthelot, Nicholas Carlini, Ian Goodfellow, Nicolas Papernot, Avital Oliver, Colin Raffel",
        2019,
        venue="NeurIPS",
        arxiv="1905.02249",
        catalog_ids=("001:98:1",),
    ),
    claim=(
        "With few labels, MixMatch (K=2 averaged, sharpened label guesses, MixUp over labelled and "
        "unlabelled data, L2 consistency) is far more accurate than supervised training on the labels "
        "alone, and removing sharpening, MixUp or the averaging over K > 1 augmentations hurts."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy semi-supervised learning on scikit-learn 8x8 digits, 50 labels and ~1,300 unlabelled images, "
        "small conv net, shift+noise augmentation: MixMatch vs supervised-only vs the Table 4 ablations "
        "(T=1, no MixUp, K=1, MixUp on labelled only, no EMA) at equal steps; EMA test accuracy."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "EMA": "model",
        "ConvNet": "model",
        "MixMatch": "model",
        "guess_labels": "model",
        "linear_rampup": "model",
        "mixup": "model",
        "sample_mixup_lambda": "model",
        "sharpen": "model",
        "soft_cross_entropy": "model",
        "squared_l2_loss": "model",
    },
)
