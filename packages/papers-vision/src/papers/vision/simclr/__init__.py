"""SimCLR and debiased contrastive learning, at toy scale on 8 × 8 digits.

Ting Chen, Simon Kornblith, Mohammad Norouzi, Geoffrey Hinton. *A Simple Framework for Contrastive
Learning of Visual Representations*. ICML 2020. arXiv:2002.05709.
Ching-Yao Chuang, Joshua Robinson, Lin Yen-Chen, Antonio Torralba, Stefanie Jegelka. *Debiased
Contrastive Learning*. NeurIPS 2020. arXiv:2007.00224.
Catalogue ids 001:18:1 (debiased contrastive learning) and 001:1:1 (the study row: Cole, Yang, Wilber,
Mac Aodha, Belongie, *When Does Contrastive Visual Representation Learning Work?*, CVPR 2022: probe
accuracy against the number of labels, in-domain vs mixed-domain pre-training).

Two augmented views of each of N images, encoder f, projection head g, z = g(f(x)), cosine
similarities s_ij = z_i·z_j / (|z_i| |z_j|), temperature t, anchor i's positive p(i) the other view:

    NT-Xent   l_i = −log( e^{s_ip/t} / Σ_{k ≠ i} e^{s_ik/t} )              (mean over the 2N views)

    debiased  g_i = max( (1/(1 − τ+)) (mean_neg e^{s_in/t} − τ+ · mean_pos e^{s_iv/t}),  e^{−1/t} )
              l_i = −log( e^{s_ip/t} / (e^{s_ip/t} + N g_i) )              (N = 2N_batch − 2 negatives)

τ+ is the class prior (the probability that a "negative" has the anchor's class); τ+ = 0 gives back
the biased loss. The representation evaluated is h = f(x) (before the head), by a linear probe.

    from papers.vision.simclr import SimCLR, nt_xent, debiased_nt_xent
    h, z = SimCLR()(images)                                   # images (N, 1, 8, 8)
    loss = debiased_nt_xent(z1, z2, tau_plus=0.1, temperature=0.5)
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="simclr",
    papers=(
        Paper(
            "A Simple Framework for Contrastive Learning of Visual Representations",
            "Ting Chen, Simon Kornblith, Mohammad Norouzi, Geoffrey Hinton",
            2020,
            venue="ICML",
            arxiv="2002.05709",
        ),
        Paper(
            "Debiased Contrastive Learning",
            "Ching-Yao Chuang, Joshua Robinson, Lin Yen-Chen, Antonio Torralba, Stefanie Jegelka",
            2020,
            venue="NeurIPS",
            arxiv="2007.00224",
            catalog_ids=("001:18:1",),
        ),
        Paper(
            "When Does Contrastive Visual Representation Learning Work?",
            "Elijah Cole, Xuan Yang, Kimberly Wilber, Oisin Mac Aodha, Serge Belongie",
            2022,
            venue="CVPR",
            arxiv="2105.05837",
            catalog_ids=("001:1:1",),
        ),
    ),
    claim=(
        "Debiased contrastive learning (class prior tau+ = 0.1) gives a better linear probe than SimCLR's "
        "biased NT-Xent; SimCLR features beat a random encoder and, with few labels, a supervised "
        "encoder, an advantage that shrinks as labels grow; the pre-head representation h probes better "
        "than the head output."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy SimCLR on scikit-learn 8x8 digits (small conv encoder, MLP head, crop/jitter/blur/noise "
        "views): NT-Xent vs debiased loss (tau+ = 0.1) over 2 seeds, linear-probe accuracy at 10, 50 and "
        "all labels per class against a supervised encoder, a random encoder and raw pixels, pre-head vs "
        "post-head probe, and in-domain vs digits+shapes pre-training."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "Encoder": "model",
        "ProjectionHead": "model",
        "SimCLR": "model",
        "biased_nce": "model",
        "contrastive_loss": "model",
        "debiased_negative_mass": "model",
        "debiased_nce": "model",
        "debiased_nt_xent": "model",
        "nt_xent": "model",
        "pair_similarities": "model",
    },
)
