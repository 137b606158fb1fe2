"""Augmenting Genetic Algorithms with Deep Neural Networks for Exploring the Chemical Space.

AkshatKumar Nigam, Pascal Friederich, Mario Krenn, Alán Aspuru-Guzik. ICLR 2020. arXiv:1909.11655.
Catalogue id 001:44:1.

A genetic algorithm on SELFIES strings (every string decodes to a valid molecule) whose only operator is
mutation: insert or replace one random symbol (a benzene ring counts as one). The fitness adds a
discriminator score to penalised logP:

    J(m) = logP(m) − SA(m) − RingPenalty(m),   RingPenalty = max(0, largest ring − 6)
    F(m) = J(m) + β · D(m)
    D(m) = σ(MLP(descriptors(m)))   trained each generation with BCE: reference molecules → 1,
                                    the current GA population → 0
    p_replace(rank r of N) = 1 / (1 + exp(−10 (r/N − 0.2)))     (the rest survive; replaced molecules
                                    become mutants of uniformly chosen survivors)

β > 0 rewards molecules that look like the reference set and penalises what the GA has been making, so
the population keeps moving; the adaptive variant sets β = 1000 only in generations where the best J has
been unchanged for 5 generations (stagnation).

    from papers.chem.ga_d import run_ga, mutate, MoleculeScorer, Discriminator
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="ga-d",
    papers=Paper(
        "Augmenting Genetic Algorithms with Deep Neural Networks for Exploring the Chemical Space",
        "AkshatKumar Nigam, Pascal Friederich, Mario Krenn, Alán Aspuru-Guzik",
        2020,
        venue="ICLR",
        arxiv="1909.11655",
        catalog_ids=("001:44:1",),
    ),
    claim=(
        "A SELFIES genetic algorithm with a discriminator term β·D in its fitness escapes stagnation and "
        "keeps a more diverse population while optimising penalised logP, and its behaviour changes "
        "sharply rather than smoothly with β."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy GA+D from methane (population 100, 60 generations, NCI as reference): β sweep and the "
        "adaptive stagnation switch vs the plain GA; best/mean penalised logP, unique scaffolds, "
        "fraction called reference-like."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "Discriminator": "model",
        "MoleculeScorer": "model",
        "N_DESCRIPTORS": "model",
        "decode": "model",
        "descriptors": "model",
        "mutate": "model",
        "mutation_alphabet": "model",
        "rank": "model",
        "replace_probability": "model",
        "run_ga": "model",
        "select_and_mutate": "model",
        "split_symbols": "model",
        "stagnated": "model",
        "train_discriminator": "model",
    },
)
