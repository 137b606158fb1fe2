"""Switch Transformers: Scaling to Trillion Parameter Models with Simple and Efficient Sparsity.

William Fedus, Barret Zoph, Noam Shazeer. JMLR 23 (2022). arXiv:2101.03961. Catalogue id 001:3:1.

A Switch layer replaces a Transformer's position-wise FFN with N expert FFNs and a router that sends each
token to ONE expert (Sec. 2.1):

    h(x) = W_r · x                       router logits, computed in float32 ("selective precision")
    p_i(x) = exp(h_i(x)) / Σ_j exp(h_j(x))
    y = p_i(x) · E_i(x),   i = argmax_j p_j(x)

Each expert takes at most (Sec. 2.2, eq. 3)

    expert capacity = (tokens per batch / number of experts) × capacity factor

tokens (capacity factor 1.0–1.25 in training); tokens past it overflow: the layer outputs 0 for them
and the residual connection carries them on. The auxiliary load-balancing loss (eq. 4–6), added to the
LM loss for every Switch layer,

    loss_aux = α · N · Σ_{i=1..N} f_i · P_i,    f_i = (1/T) Σ_x 1{argmax p(x) = i},   P_i = (1/T) Σ_x p_i(x)

with α = 1e-2, is minimised (= α) by uniform routing f_i = P_i = 1/N; the gradient flows through P_i.
Weights start from a truncated normal with std sqrt(s / fan_in), s = 0.1 (10x smaller than usual), and
fine-tuning uses a larger dropout inside the experts only ("expert dropout").

    from papers.language.switch_transformer import SwitchTransformerLM
    model = SwitchTransformerLM(TransformerConfig(..., pre_ln=True), n_experts=8, capacity_factor=1.25)
    loss = cross_entropy(model(ids), labels) + 1e-2 * model.aux_loss()
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="switch-transformer",
    papers=Paper(
        "Switch Transformers: Scaling to Trillion Parameter Models with Simple and Efficient Sparsity",
        "William Fedus, Barret Zoph, Noam Shazeer",
        2022,
        venue="JMLR",
        arxiv="2101.03961",
        catalog_ids=("001:3:1",),
    ),
    claim=(
        "At equal FLOPs per token a top-1-routed sparse (Switch) LM reaches a lower loss than the dense one "
        "in the same steps, and the auxiliary balancing loss keeps expert load near uniform (skewed without "
        "it), so fewer tokens overflow the expert capacity."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy scale: 2-layer character LMs on CPython's documentation, dense vs 8-expert Switch (same d_ff "
        "per expert) vs Switch without the balancing loss; validation loss per step, expert-load histograms, "
        "dropped-token fraction against the capacity factor."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "INIT_SCALE": "model",
        "SwitchFFN": "model",
        "SwitchRouter": "model",
        "SwitchTransformerLM": "model",
        "expert_capacity": "model",
        "load_balancing_loss": "model",
        "route_top1": "model",
        "scale_init_linear_layers": "model",
        "scaled_init_": "model",
    },
)
