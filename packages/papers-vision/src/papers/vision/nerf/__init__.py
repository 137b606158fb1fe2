"""NeRF: neural radiance fields for view synthesis.

Ben Mildenhall, Pratul P. Srinivasan, Matthew Tancik, Jonathan T. Barron, Ravi Ramamoorthi, Ren Ng.
*NeRF: Representing Scenes as Neural Radiance Fields for View Synthesis*. ECCV 2020. arXiv:2003.08934.
Catalogue id 001:14:1.

A scene is an MLP F_Θ: (x, d) → (c, σ) from a 3-D point and a viewing direction to an emitted colour and
a volume density, fed positionally encoded inputs (Eq. 4)

    γ(p) = (sin(2^0 π p), cos(2^0 π p), …, sin(2^{L−1} π p), cos(2^{L−1} π p))     (L = 10 for x, 4 for d)

A pixel's colour is the volume rendering integral along its camera ray r(t) = o + t d, estimated by
quadrature from samples t_1 < … < t_N with δ_i = t_{i+1} − t_i (Eq. 3):

    Ĉ(r) = Σ_i T_i (1 − exp(−σ_i δ_i)) c_i,        T_i = exp(−Σ_{j<i} σ_j δ_j)

N_c stratified samples t_i ~ U[t_n + (i−1)(t_f − t_n)/N_c, t_n + i (t_f − t_n)/N_c] (Eq. 2) feed a coarse
network; its weights w_i = T_i (1 − exp(−σ_i δ_i)), normalised to a piecewise-constant pdf along the ray,
give N_f more samples by inverse transform sampling, and a fine network is evaluated at all N_c + N_f
(hierarchical sampling, Sec. 5.2). Both are trained on the squared error of Eq. 6:

    L = Σ_r ‖Ĉ_c(r) − C(r)‖² + ‖Ĉ_f(r) − C(r)‖²

The experiment is a toy: an analytically ray-traced scene of Lambertian spheres at 32 × 32, a 4 × 48 MLP.

    from papers.vision.nerf import NeRF, default_scene, camera_rays, look_at, focal_length
    model = NeRF(near=2.7, far=5.3, n_coarse=64, n_fine=128)   # the paper's sampling; 8 x 256 MLPs
    out = model(origins, directions)                           # out["fine"]["rgb"]: (R, 3)
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="nerf",
    papers=Paper(
        "NeRF: Representing Scenes as Neural Radiance Fields for View Synthesis",
        "Ben Mildenhall, Pratul P. Srinivasan, Matthew Tancik, Jonathan T. Barron, Ravi Ramamoorthi, Ren Ng",
        2020,
        venue="ECCV",
        arxiv="2003.08934",
        catalog_ids=("001:14:1",),
    ),
    claim=(
        "A NeRF with positional encoding renders held-out views of a scene better (higher PSNR) than "
        "the same model without it, and hierarchical sampling beats coarse-only sampling at an equal "
        "number of network evaluations per ray."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy novel-view synthesis: a small NeRF (4x48 MLPs, coarse + fine) fitted to 20 32x32 exact "
        "renderings of Lambertian spheres (one checkerboarded); held-out-view PSNR with vs without "
        "positional encoding and with vs without hierarchical sampling; renderings and PSNR curves."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "NeRF": "model",
        "NeRFMLP": "model",
        "compositing_weights": "model",
        "encoded_dim": "model",
        "positional_encoding": "model",
        "psnr": "model",
        "sample_pdf": "model",
        "stratified_samples": "model",
        "volume_render": "model",
        "Sphere": "scene",
        "SphereScene": "scene",
        "camera_rays": "scene",
        "default_scene": "scene",
        "focal_length": "scene",
        "look_at": "scene",
        "orbit_cameras": "scene",
        "ray_sphere_intersect": "scene",
    },
)
