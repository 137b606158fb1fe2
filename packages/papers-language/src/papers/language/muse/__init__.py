"""Word Translation Without Parallel Data (MUSE).

Alexis Conneau, Guillaume Lample, Marc'Aurelio Ranzato, Ludovic Denoyer, Hervé Jégou. *Word
Translation Without Parallel Data*. ICLR 2018. arXiv:1710.04087. Catalogue id 001:140:1.

Source embeddings x_i, target embeddings y_j, a linear map W (row form here: x ↦ x Wᵀ).

Adversarial alignment: a discriminator D tells mapped source words Wx from target words y;

    L_D(θ_D | W) = −1/n Σ_i log P(source = 1 | W x_i) − 1/m Σ_j log P(source = 0 | y_j)
    L_W(W | θ_D) = −1/n Σ_i log P(source = 0 | W x_i) − 1/m Σ_j log P(source = 1 | y_j)

(labels smoothed by s), trained alternately by SGD; after every W step

    W ← (1 + β) W − β (W Wᵀ) W,      β = 0.01,

which keeps W close to the orthogonal manifold.

Procrustes refinement: for a dictionary of pairs (x_i, y_i),

    W* = argmin_{W ∈ O_d} ‖W X − Y‖_F = U Vᵀ,      U Σ Vᵀ = SVD(Y Xᵀ),

with the dictionary rebuilt from mutual nearest neighbours under CSLS among the most frequent words,
iterated.

Cross-domain similarity local scaling (retrieval and dictionary induction):

    r_T(W x) = 1/K Σ_{y ∈ N_T(W x)} cos(W x, y),     r_S(y) = 1/K Σ_{W x ∈ N_S(y)} cos(W x, y),
    CSLS(W x, y) = 2 cos(W x, y) − r_T(W x) − r_S(y),      K = 10.

Unsupervised model selection: the mean cosine between the most frequent mapped source words and
their CSLS translations.

    from papers.language.muse import procrustes, csls_scores, orthogonalize, mutual_nn_dictionary
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="muse",
    papers=Paper(
        "Word Translation Without Parallel Data",
        "Alexis Conneau, Guillaume Lample, Marc'Aurelio Ranzato, Ludovic Denoyer, Hervé Jégou",
        2018,
        venue="ICLR",
        arxiv="1710.04087",
        catalog_ids=("001:140:1",),
    ),
    claim=(
        "Adversarial alignment plus Procrustes refinement on a CSLS mutual-NN dictionary translates words "
        "without any parallel data nearly as well as supervised Procrustes; refinement and CSLS "
        "(vs nearest-neighbour retrieval) each improve P@1, and CSLS reduces hubness."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Two synthetic languages (PPMI-SVD embeddings of independent corpora from one latent model, "
        "permuted vocabularies): P@1/P@5 for adversarial only, + refinement, supervised Procrustes; "
        "NN vs CSLS; k-occurrence hubness."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "Discriminator": "model",
        "csls_scores": "model",
        "discriminator_loss": "model",
        "k_occurrence": "model",
        "mapping_loss": "model",
        "mean_knn_similarity": "model",
        "mutual_nn_dictionary": "model",
        "normalize_embeddings": "model",
        "orthogonalize": "model",
        "precision_at_k": "model",
        "procrustes": "model",
        "retrieval_scores": "model",
        "selection_criterion": "model",
        "make_language_pair": "languages",
    },
)
