"""Supervised Contrastive Learning.

Prannay Khosla, Piotr Teterwak, Chen Wang, Aaron Sarna, Yonglong Tian, Phillip Isola, Aaron Maschinot,
Ce Liu, Dilip Krishnan. *Supervised Contrastive Learning*. NeurIPS 2020. arXiv:2004.11362.
Catalogue id 001:34:1.

Every image of a batch gives two augmented views; an encoder maps a view x to r = Enc(x) and a
projection head to z = Proj(r) on the unit sphere. With I the 2N views of the batch, A(i) = I \\ {i} and
P(i) = {p ∈ A(i) : y_p = y_i} the views that share anchor i's label (positives), τ the temperature
(paper: 0.1):

    softmax_i(p) = exp(z_i·z_p / τ) / Σ_{a∈A(i)} exp(z_i·z_a / τ)
    L_out = Σ_i −1/|P(i)| Σ_{p∈P(i)} log softmax_i(p)            (eq. 2, the paper's SupCon loss)
    L_in  = Σ_i −log( 1/|P(i)| Σ_{p∈P(i)} softmax_i(p) )         (eq. 3)

L_in ≤ L_out (Jensen); both are SimCLR's NT-Xent when P(i) is only the other view of i. Training: the
encoder and head are pre-trained with L_out, the head is discarded, and a linear classifier is trained
on the frozen r. The baseline trains the same encoder with a linear layer end to end by cross-entropy.

    from papers.vision.supcon import supcon_loss, DigitEncoder, ProjectionHead, SupConNet
    net = SupConNet(DigitEncoder(), ProjectionHead())
    z = torch.stack([net(view_1), net(view_2)], dim=1)               # (N, 2, D), unit norm
    loss = supcon_loss(z, labels, temperature=0.1, variant="out")    # labels=None: SimCLR
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="supcon",
    papers=Paper(
        "Supervised Contrastive Learning",
        "Prannay Khosla, Piotr Teterwak, Chen Wang, Aaron Sarna, Yonglong Tian, Phillip Isola, "
        "Aaron Maschinot, Ce Liu, Dilip Krishnan",
        2020,
        venue="NeurIPS",
        arxiv="2004.11362",
        catalog_ids=("001:34:1",),
    ),
    claim=(
        "With a linear classifier on the frozen encoder, SupCon with the average over positives outside "
        "the log (L_out) beats the inside-the-log variant (L_in), and matches or beats cross-entropy "
        "training of the same encoder, also on corrupted test images."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy: 8 x 8 digits, two augmented views per image, a small CNN encoder pre-trained with "
        "SupCon-L_out or SupCon-L_in (tau = 0.1) then a linear probe, vs the same encoder trained by "
        "cross-entropy for the same epochs; test accuracy curves, accuracy under Gaussian noise and "
        "blur, PCA of the test representations."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "DigitEncoder": "model",
        "ProjectionHead": "model",
        "SupConNet": "model",
        "flatten_views": "model",
        "supcon_anchor_losses": "model",
        "supcon_loss": "model",
    },
)
