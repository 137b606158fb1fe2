"""Automatic Chemical Design Using a Data-Driven Continuous Representation of Molecules.

Rafael Gómez-Bombarelli, Jennifer N. Wei, David Duvenaud, José Miguel Hernández-Lobato, Benjamín
Sánchez-Lengeling, Dennis Sheberla, Jorge Aguilera-Iparraguirre, Timothy D. Hirzel, Ryan P. Adams, Alán
Aspuru-Guzik. ACS Central Science 2018. arXiv:1610.02415. Catalogue id 001:53:1.

A variational autoencoder on SMILES strings: a 1-D CNN encoder gives q(z | x) = N(μ(x), diag σ²(x)),
a GRU decoder p(x | z) emits one token at a time, and a property MLP f(z) is trained jointly so that
the continuous latent space is organised by the property:

    z = μ(x) + σ(x) ⊙ ε,  ε ~ N(0, I)
    KL(q ‖ N(0, I)) = −½ Σ_j (1 + log σ²_j − μ_j² − σ²_j)
    L = −Σ_t log p(x_t | x_<t, z) + β(step) · KL + λ · ‖f(z) − y‖²      (β annealed from 0, sigmoid)

New molecules come from decoding latent points: prior samples, points near encodings, and points
reached by optimising the predicted property in z (here gradient ascent on f; the paper used a
Gaussian process); RDKit decides which decodes are valid molecules and computes their true property.

    from papers.chem.chemical_vae import ChemicalVAE, Vocabulary, tokenize, kl_divergence
    vocab = Vocabulary.from_smiles(smiles); tokens = torch.tensor([vocab.encode(s, 40) for s in smiles])
    model = ChemicalVAE(len(vocab), 40, latent=32)
    parts = model.loss(tokens, y, beta=1.0, property_weight=1.0)     # loss, recon, kl, property
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="chemical-vae",
    papers=Paper(
        "Automatic Chemical Design Using a Data-Driven Continuous Representation of Molecules",
        "Rafael Gómez-Bombarelli, Jennifer N. Wei, David Duvenaud, José Miguel Hernández-Lobato, "
        "Benjamín Sánchez-Lengeling, Dennis Sheberla, Jorge Aguilera-Iparraguirre, Timothy D. Hirzel, "
        "Ryan P. Adams, Alán Aspuru-Guzik",
        2018,
        venue="ACS Central Science",
        arxiv="1610.02415",
        catalog_ids=("001:53:1",),
    ),
    claim=(
        "A SMILES VAE trained jointly with a property predictor reconstructs held-out molecules, decodes "
        "valid molecules (at a low rate), organises its latent space by the property, and lets gradient "
        "ascent in latent space find molecules with a higher true property than random moves."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy-scale chemical VAE on NCI SMILES (CNN encoder, GRU decoder, logP head): reconstruction, "
        "validity of prior/near-encoding decodes, latent property probe vs a VAE without head, and "
        "latent gradient ascent vs random moves scored by RDKit logP."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "ChemicalVAE": "model",
        "Decoder": "model",
        "Encoder": "model",
        "Vocabulary": "model",
        "kl_divergence": "model",
        "kl_weight": "model",
        "reparameterize": "model",
        "tokenize": "model",
        "TOKEN_PATTERN": "model",
    },
)
