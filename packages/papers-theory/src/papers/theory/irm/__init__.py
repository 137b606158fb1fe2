"""Invariant Risk Minimization.

Martin Arjovsky, Léon Bottou, Ishaan Gulrajani, David Lopez-Paz. *Invariant Risk Minimization*.
arXiv:1907.02893, 2019. Catalogue ids 003:855:1, 002:19:1.

IRM looks for a data representation Φ such that one classifier w on top of it is optimal in every
training environment e ∈ E_tr. Its practical version IRMv1 fixes a scalar dummy classifier w = 1.0:

    min_Φ  Σ_e R^e(Φ) + λ · ‖∇_{w | w=1.0} R^e(w · Φ)‖²

where R^e is the risk in environment e. For squared loss and features Φ(x) ∈ R^k with w ∈ R^k,

    ∇_w R^e(Φ w) |_{w=1} = (2/n) Φᵀ (Φ 1 − y),

which vanishes for every e exactly when Φ 1 is the least-squares predictor in each environment.
An unbiased estimate of the squared norm is ∇_w R^e(first half of a batch) · ∇_w R^e(second half).
The penalty weight is 1 for the first steps and λ afterwards (the loss then divided by λ), as in the
paper's Colored-MNIST code.

    from papers.theory.irm import irm_penalty, logistic_loss, ChainSEM, irm_linear
    penalty = irm_penalty(logits, y, logistic_loss)              # logits [n, 1], y [n, 1]
    penalty = irm_penalty(logits, y, logistic_loss, unbiased=True)
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="irm",
    papers=Paper("Invariant Risk Minimization",
                 "Martin Arjovsky, Léon Bottou, Ishaan Gulrajani, David Lopez-Paz", 2019,
                 arxiv="1907.02893", catalog_ids=("003:855:1", "002:19:1")),
    claim="IRM recovers the causal coefficients of a linear SEM where ERM weights the spurious effect of Y, "
          "and, when a colour's correlation with the label flips at test time, IRM beats ERM (which falls "
          "below chance) by a wide margin.",
    module=f"{__name__}.experiment",
    summary="(a) the paper's linear SEM (Sec. 5.1): coefficient errors of ERM and IRM on causal and "
            "non-causal features; (b) coloured digits on generated data (Colored MNIST analogue): test "
            "accuracy with the colour correlation flipped, ERM vs IRMv1 vs the colour-blind oracle.",
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "ChainSEM": "model",
        "ColoredMLP": "model",
        "coefficient_errors": "model",
        "erm_linear": "model",
        "irm_linear": "model",
        "irm_penalty": "model",
        "logistic_loss": "model",
        "squared_error": "model",
    },
)
