"""Molecular de-novo design through deep reinforcement learning.

Marcus Olivecrona, Thomas Blaschke, Ola Engkvist, Hongming Chen. Journal of Cheminformatics 2017.
arXiv:1704.07555. Catalogue id 001:52:1.

A recurrent SMILES model, the prior, is trained by maximum likelihood on a corpus of molecules; a
sequence A = a_1 … a_T has

    log P(A) = Σ_t log p(a_t | a_<t)      (a GRU language model, :class:`SmilesRNN`)

The agent starts as a copy of the prior and is tuned towards a score S(A) by regressing its episode
log-likelihood onto the augmented likelihood:

    log P_U(A) = log P_prior(A) + σ · S(A)
    L(θ) = [ log P_U(A) − log P_agent(A; θ) ]²,   A ~ P_agent   (mean over a batch; Adam, lr 5e-4)

so the agent's optimum is P_agent ∝ P_prior · exp(σ S): it keeps the prior's knowledge of realistic
molecules while shifting mass to high-scoring ones. The comparison is plain REINFORCE on the episode
score, L(θ) = −S(A) · log P_agent(A; θ), which has no anchor to the prior.

Tasks (scores as in the paper):
    avoid sulphur:  S(A) = 1 (valid, no S), −1 (valid, contains S), 0 (invalid SMILES);  σ = 2
    similarity:     S(A) = −1 + 2 · min(J(A, target), k) / k, J the Jaccard index of FCFP4 fingerprints;
                    the target Celecoxib, with similar molecules removed from the prior's corpus

Here the prior is a small GRU on the bundled NCI set (a toy scale of the paper's 3 x 1,024 GRU on
1.5 M ChEMBL molecules), agents run a few dozen steps, and the evaluation reports validity, the
objective and the mean NLL under the prior of the valid samples for prior, REINVENT and REINFORCE.

    from papers.chem.reinvent import SmilesRNN, augmented_likelihood_loss
    loss = augmented_likelihood_loss(agent.log_likelihood(A), prior.log_likelihood(A), score, sigma=2.0)
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="reinvent",
    papers=Paper(
        "Molecular de-novo design through deep reinforcement learning",
        "Marcus Olivecrona, Thomas Blaschke, Ola Engkvist, Hongming Chen",
        2017,
        venue="Journal of Cheminformatics",
        arxiv="1704.07555",
        catalog_ids=("001:52:1",),
    ),
    claim=(
        "An agent trained to regress its likelihood onto the prior's likelihood plus σ·score meets the "
        "objective (no sulphur; similarity to a held-out target) while its molecules stay close to the "
        "prior, unlike pure REINFORCE."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy REINVENT on NCI SMILES: a GRU prior, augmented-likelihood agents vs REINFORCE on the "
        "paper's avoid-sulphur and Celecoxib-similarity scores; validity, objective and prior NLL."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "SmilesRNN": "model",
        "sequence_mask": "model",
        "fit_likelihood": "model",
        "augmented_likelihood_loss": "model",
        "reinforce_loss": "model",
        "PAD_ID": "model",
        "START_ID": "model",
        "END_ID": "model",
    },
)
