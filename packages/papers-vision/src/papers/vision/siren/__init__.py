"""SIREN: implicit neural representations with periodic activation functions.

Vincent Sitzmann, Julien N. P. Martel, Alexander W. Bergman, David B. Lindell, Gordon Wetzstein.
*Implicit Neural Representations with Periodic Activation Functions*. NeurIPS 2020. arXiv:2006.09661.
Catalogue id 001:15:1.

A SIREN is an MLP on coordinates x with sine activations and a linear last layer:

    φ_i(h) = sin(ω0 (W_i h + b_i)),   Φ(x) = W_L (φ_{L−1} ∘ … ∘ φ_1)(x) + b_L,   ω0 = 30
    first layer   W_1 ~ U(−1/n, 1/n)
    later layers  W_i ~ U(−√(6/n)/ω0, √(6/n)/ω0)        (n = fan-in; biases drawn alike here)

so the argument ω0 (W h + b) of every hidden sine is ≈ N(0, 1) at any depth. Its derivatives are again
SIRENs (cos = phase-shifted sin), so it can be trained on ∇Φ or ΔΦ alone. Poisson reconstruction:

    L = Σ_i ‖∇_x Φ(x_i) − ∇f(x_i)‖²         (∇Φ by autograd, ∇f by the Sobel operator)

recovers f up to a constant. Baselines: a ReLU MLP (∇Φ piecewise constant, ΔΦ = 0) and a ReLU MLP on
the positional encoding γ(x) = [x, sin(2^k π x), cos(2^k π x)]_{k<L}.

    from papers.vision.siren import Siren, gradient, laplacian, pixel_grid
    net = Siren(2, 1, hidden=256, hidden_layers=3)         # 2 → 256 ×4 → 1, ω0 = 30
    x = pixel_grid(64, 64).requires_grad_()                 # (4096, 2) in [−1, 1]²
    y = net(x); dy = gradient(y, x); lap = laplacian(y, x)  # (4096, 1), (4096, 2), (4096, 1)
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="siren",
    papers=Paper(
        "Implicit Neural Representations with Periodic Activation Functions",
        "Vincent Sitzmann, Julien N. P. Martel, Alexander W. Bergman, David B. Lindell, Gordon Wetzstein",
        2020,
        venue="NeurIPS",
        arxiv="2006.09661",
        catalog_ids=("001:15:1",),
    ),
    claim=(
        "A SIREN fits a photograph to a far higher PSNR than ReLU MLPs with or without positional "
        "encoding after the same steps, with accurate derivatives, and reconstructs the image from its "
        "gradient alone (Poisson), where ReLU networks trained the same way cannot."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "64x64 grey china.jpg fitted by SIREN, a ReLU MLP and a ReLU MLP with positional encoding "
        "(5 layers of width 64, Adam 1e-4, full batch): PSNR curves, fitted images with their autograd "
        "gradients and Laplacians; then the same networks trained on the Sobel gradient only (Poisson), "
        "PSNR of the reconstruction up to a constant."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "ACTIVATIONS": "model",
        "PositionalEncoding": "model",
        "ReluMLP": "model",
        "SineLayer": "model",
        "Siren": "model",
        "gradient": "model",
        "laplacian": "model",
        "make_network": "model",
        "n_params": "model",
        "nyquist_frequencies": "model",
        "siren_bound": "model",
        "discrete_laplacian": "signals",
        "match_offset": "signals",
        "pixel_grid": "signals",
        "psnr": "signals",
        "sobel_gradient": "signals",
    },
)
