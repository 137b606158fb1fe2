"""Transformers Learn In-Context by Gradient Descent.

Johannes von Oswald, Eyvind Niklasson, Ettore Randazzo, João Sacramento, Alexander Mordvintsev, Andrey
Zhmoginov, Max Vladymyrov. *Transformers Learn In-Context by Gradient Descent*. ICML 2023.
arXiv:2212.07677. Catalogue id 000:19:1.

In-context linear regression: tokens e_i = (x_i, y_i), i = 1 … N, and the query e_q = (x_q, 0). One
linear self-attention layer (no softmax) updates every token with the context as keys and values,

    e_j ← e_j + Σ_i P W_V e_i (W_K e_i)ᵀ W_Q e_j,        prediction ŷ = −[e_q]_y,

and one step of gradient descent on L(W) = 1/(2N) Σ_i ‖W x_i − y_i‖² from W_0 changes the model by

    ΔW = −η ∇L(W_0) = −(η/N) Σ_i (W_0 x_i − y_i) x_iᵀ.

Prop. 1: with W_K = W_Q = [[I, 0], [0, 0]], W_V = [[0, 0], [W_0, −I]] and P = (η/N) I the layer adds
(0, −ΔW x_j) to every token, so from W_0 = 0 the query reads ŷ = ΔW x_q: one GD step, exactly. Trained
by Adam on random tasks, the layer converges to this GD step with the best (line-searched) η.

    from papers.theory.icl_gradient_descent import LinearSelfAttention, make_tokens, gd_predict
    layer = LinearSelfAttention.gd_construction(input_dim=10, lr=1.5, n_context=10)
    y_hat = layer.predict(make_tokens(x, y, x_query))        # == gd_predict(x, y, x_query, 1.5)
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="icl-gradient-descent",
    papers=Paper(
        "Transformers Learn In-Context by Gradient Descent",
        "Johannes von Oswald, Eyvind Niklasson, Ettore Randazzo, João Sacramento, Alexander Mordvintsev, "
        "Andrey Zhmoginov, Max Vladymyrov",
        2023,
        venue="ICML",
        arxiv="2212.07677",
        catalog_ids=("000:19:1",),
    ),
    claim=(
        "A one-layer linear self-attention model trained on in-context linear regression matches one step "
        "of gradient descent with the best learning rate (aligned predictions and sensitivities, the same "
        "loss), and an explicit weight construction makes the layer equal to that GD step exactly."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "d = 10, N = 10 regression tasks: train one LSA layer, compare with GD-1 and GD-2 at line-searched "
        "step sizes (loss, prediction/model cosine and differences), also for inputs scaled outside "
        "training; check the Prop. 1 construction in float64."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "LinearSelfAttention": "model",
        "compare": "model",
        "gd_predict": "model",
        "gd_weights": "model",
        "least_squares_predict": "model",
        "line_search": "model",
        "make_tokens": "model",
        "sensitivity": "model",
        "sample_tasks": "experiment",
    },
)
