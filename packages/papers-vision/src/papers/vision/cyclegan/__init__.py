"""CycleGAN: unpaired image-to-image translation with cycle-consistent adversarial networks.

Jun-Yan Zhu, Taesung Park, Phillip Isola, Alexei A. Efros. *Unpaired Image-to-Image Translation using
Cycle-Consistent Adversarial Networks*. ICCV 2017. arXiv:1703.10593. Catalogue id 001:164:1.

Two mappings G: X → Y and F: Y → X, two discriminators D_Y (real y vs G(x)) and D_X (real x vs F(y)),
least-squares adversarial losses and a cycle-consistency loss:

    L_GAN(G, D_Y)  G minimises E_x[(D_Y(G(x)) − 1)²];  D_Y minimises ½ E_y[(D_Y(y) − 1)²] + ½ E_x[D_Y(G(x))²]
    L_cyc(G, F)  = E_x[‖F(G(x)) − x‖₁] + E_y[‖G(F(y)) − y‖₁]
    L_id(G, F)   = E_y[‖G(y) − y‖₁] + E_x[‖F(x) − x‖₁]                 (optional, weight 0.5 λ)
    L(G, F, D_X, D_Y) = L_GAN(G, D_Y) + L_GAN(F, D_X) + λ L_cyc(G, F),   λ = 10
    G*, F* = arg min_{G,F} max_{D_X,D_Y} L

Adam (lr 2e-4, β₁ = 0.5), the discriminators trained on a history of the 50 latest generated images.
The experiment is a toy version: unpaired translation between 16 × 16 scikit-learn digits and other
digits in a thickened, blurred, inverted style, with tiny networks; frozen digit classifiers measure how
much of the digit survives, with the cycle loss and without it ("GAN alone").

    from papers.vision.cyclegan import CycleGAN, ImagePool
    model = CycleGAN(1, gen_width=8, gen_blocks=2, lambda_cycle=10.0)
    loss_g, parts, fake_y, fake_x = model.generator_step(x, y)          # x, y: (N, 1, 16, 16) in [-1, 1]
    loss_d, _ = model.discriminator_loss(x, y, pool_x.query(fake_x), pool_y.query(fake_y))
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="cyclegan",
    papers=Paper(
        "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks",
        "Jun-Yan Zhu, Taesung Park, Phillip Isola, Alexei A. Efros",
        2017,
        venue="ICCV",
        arxiv="1703.10593",
        catalog_ids=("001:164:1",),
    ),
    claim=(
        "With unpaired data, the cycle-consistency loss makes the translation keep the input's content: "
        "translated digits keep their label far more often than with the adversarial loss alone."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy unpaired translation between 16x16 sklearn digits and disjoint digits in a thickened, "
        "blurred, inverted style; tiny ResNet generators and PatchGAN discriminators, LSGAN, history "
        "buffer; CycleGAN (lambda=10) vs GAN alone; frozen per-domain classifiers read the label of "
        "G(x), F(y) and F(G(x))."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "CycleGAN": "model",
        "ImagePool": "model",
        "PatchDiscriminator": "model",
        "ResnetGenerator": "model",
        "cycle_consistency_loss": "model",
        "freeze": "model",
        "init_weights": "model",
        "lsgan_discriminator_loss": "model",
        "lsgan_generator_loss": "model",
        "patch_output_size": "model",
        "DigitClassifier": "classifier",
        "train_classifier": "classifier",
        "make_domains": "data",
        "style_y": "data",
        "to_signed": "data",
        "to_unit": "data",
    },
)
