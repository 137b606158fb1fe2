"""Directional Message Passing for Molecular Graphs.

Johannes Klicpera (Gasteiger), Janek Groß, Stephan Günnemann. *Directional Message Passing for
Molecular Graphs*. ICLR 2020. arXiv:2003.03123. Catalogue id 001:46:1.

Messages m_ji live on the directed edges j -> i of the radius graph (d_ji < c) and are updated from
the messages coming into j, with the distance d_ji and the angle α_kji between the edges:

    m_ji^(l+1) = f_update(m_ji^(l), Σ_{k ∈ N_j \\ {i}} f_int(m_kj^(l), e_RBF^(ji), a_SBF^(kj,ji)))

in a radial Bessel basis with a smooth polynomial envelope (p = 6) and a 2-D joint basis of spherical
Bessel functions and spherical harmonics:

    e_RBF,n(d)     = sqrt(2/c) sin(nπ d/c) / d · u(d/c)
    a_SBF,ln(d, α) = sqrt(2/(c³ j_{l+1}²(z_ln))) j_l(z_ln d/c) Y_l^0(α) · u(d/c)
    u(x)           = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^{p+1} - p(p+1)/2 x^{p+2}

(z_ln the n-th root of j_l). f_int is the bilinear layer
f_int = Σ_{b,l} W_{·,b,l} (W_sbf a_SBF)_b ((W_rbf e_RBF) ⊙ σ(W m_kj + b))_l; f_update adds σ(W m_ji + b),
residual layers and a skip connection. Each block's output sums (W e_RBF) ⊙ m_ji over j into atom i,
an MLP gives t_i, and the molecule's prediction is t = Σ_i Σ_blocks t_i^(l).

    from papers.chem.dimenet import DimeNet
    model = DimeNet(num_types=11, hidden=32, num_blocks=2, cutoff=3.0)
    pred = model(z, pos, batch)           # [num_graphs, 1]; z [N] atom types, pos [N, 3] in Å
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="dimenet",
    papers=Paper(
        "Directional Message Passing for Molecular Graphs",
        "Johannes Klicpera, Janek Groß, Stephan Günnemann",
        2020,
        venue="ICLR",
        arxiv="2003.03123",
        catalog_ids=("001:46:1",),
    ),
    claim=(
        "Directional (angle-aware) message passing predicts an angle-dependent molecular property with "
        "lower error than the same network with distances only."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "400 small NCI molecules, one ETKDG+MMFF conformer each, target the MMFF94 angle-bending energy: "
        "a reduced DimeNet (spherical Bessel x spherical-harmonic triplet basis) against the same network "
        "with a distance-only triplet basis of equal width, test MAE over 2 seeds."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "DimeNet": "model",
        "InteractionBlock": "model",
        "OutputBlock": "model",
        "EmbeddingBlock": "model",
        "RadialBasis": "model",
        "SphericalBasis": "model",
        "DistanceOnlyBasis": "model",
        "Geometry": "model",
        "bessel_roots": "model",
        "collate": "model",
        "envelope": "model",
        "geometry": "model",
        "legendre": "model",
        "radius_graph": "model",
        "spherical_jn": "model",
        "triplets": "model",
        "angle_bend_energy": "experiment",
        "build_conformers": "experiment",
        "train_dimenet": "experiment",
    },
)
