"""Deep Sets, and the limits of sum decomposition.

Papers and catalogue ids:

- Manzil Zaheer, Satwik Kottur, Siamak Ravanbakhsh, Barnabás Póczos, Ruslan Salakhutdinov,
  Alexander Smola. *Deep Sets*. NeurIPS 2017. arXiv:1703.06114. Catalogue ids 003:1169:1, 002:119:1.
- Edward Wagstaff, Fabian B. Fuchs, Martin Engelcke, Ingmar Posner, Michael A. Osborne. *On the
  Limitations of Representing Functions on Sets*. ICML 2019. arXiv:1901.09006. Catalogue id 003:1170:1.

Equations:

    invariant model     f(X) = ρ( Σ_{x∈X} φ(x) )                      (Zaheer et al., Thm. 2)
    equivariant layer   f(x) = σ(Θx),  Θ = λI + γ 11ᵀ                  (Lemma 3)
                        multi-channel: f(X) = σ(X Λ + 1 pool(X) Γ),  pool ∈ {sum, mean, max}
    power-sum map       φ(x) = (x, x², …, x^M),  Σ_x φ(x) = (p_1, …, p_M)  (injective on sets of M reals)
    Newton's identities k e_k = Σ_{i=1}^{k} (−1)^{i−1} e_{k−i} p_i,  e_0 = 1
    Wagstaff et al.     a continuous sum decomposition of every continuous f on sets of size ≤ M
                        through R^N needs N ≥ M; N = M suffices (φ = power sums, ρ = roots of
                        t^M − e_1 t^{M−1} + … ± e_M, then any symmetric function of them)

    from papers.theory.deep_sets import DeepSets, PermEquivariant, power_sums, elementary_symmetric
    model = DeepSets(in_dim=16, latent_dim=64, rho_hidden=())        # f(X) = w·Σ φ(x) + b
    y = model(x, mask)                                                # x [B, M, d], mask [B, M] bool
    layer = PermEquivariant(16, 32, pooling="max")                    # X Λ + 1 maxpool(X) Γ
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="deep-sets",
    papers=(
        Paper("Deep Sets", "Manzil Zaheer, Satwik Kottur, Siamak Ravanbakhsh, Barnabás Póczos, "
              "Ruslan Salakhutdinov, Alexander Smola", 2017, venue="NeurIPS", arxiv="1703.06114",
              catalog_ids=("003:1169:1", "002:119:1")),
        Paper("On the Limitations of Representing Functions on Sets", "Edward Wagstaff, Fabian B. Fuchs, "
              "Martin Engelcke, Ingmar Posner, Michael A. Osborne", 2019, venue="ICML", arxiv="1901.09006",
              catalog_ids=("003:1170:1",)),
    ),
    claim="A sum-decomposed model ρ(Σφ(x)) is exactly permutation invariant and, trained on sets of 2–10 "
          "elements, generalises to sets of up to 50 where recurrent and concatenation baselines fail; "
          "equivariant layers detect the odd one out; and learning the median of M numbers needs a "
          "latent width N of about M.",
    module=f"{__name__}.experiment",
    summary="Generated data: (a) sum of 'digit' feature vectors, train on sizes 2–10, test up to 50, "
            "DeepSets vs GRU vs padded MLP, invariance errors; (b) odd-one-out with λI + γ11ᵀ layers "
            "(max/mean/sum) vs no interaction; (c) median of M reals, latent width N swept.",
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "POOLS": "model",
        "ConcatMLP": "model",
        "DeepSets": "model",
        "EquivariantNet": "model",
        "PermEquivariant": "model",
        "SetGRU": "model",
        "elementary_symmetric": "model",
        "pool": "model",
        "power_sums": "model",
        "set_from_power_sums": "model",
    },
)
