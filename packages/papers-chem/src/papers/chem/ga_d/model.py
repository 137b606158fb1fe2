"""GA+D: a SELFIES genetic algorithm whose fitness adds β × a discriminator's score (Nigam et al. 2020).

    J(m) = logP(m) − SA(m) − RingPenalty(m)                     (penalised logP, unnormalised)
    F(m) = J(m) + β · D(m)                                      D(m) = P(reference | descriptors(m))
    p_replace(rank r of N) = 1 / (1 + exp(−slope · (r / N − fraction)))     (the paper's Fermi cut-off)

Mutation (the paper's only genetic operator): with probability ½ insert, else replace, one random symbol
of a fixed SELFIES alphabet (which includes a whole benzene ring as one "symbol"); retried until the
decoded molecule is valid, non-empty and at most ``max_smiles_len`` SMILES characters.

The discriminator is a small fully connected net (sigmoid hidden layers 100 and 10 as in the authors'
code) on a vector of RDKit descriptors (element ratios, ring counts by size, bond-type fractions and
17 RDKit descriptors), trained each generation for a few full-batch Adam steps to output 1 for
reference molecules and 0 for GA molecules (1 for a GA molecule that is in the reference set).
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence

import torch
from torch import Tensor, nn

# RDKit descriptors the authors' code computes (``Descriptors.<name>``), in this order.
RDKIT_DESCRIPTORS = (
    "BalabanJ",
    "HallKierAlpha",
    "NumAliphaticCarbocycles",
    "NumAliphaticHeterocycles",
    "NumAliphaticRings",
    "NumAromaticCarbocycles",
    "NumAromaticHeterocycles",
    "NumAromaticRings",
    "NumHAcceptors",
    "NumHDonors",
    "NumHeteroatoms",
    "NumRadicalElectrons",
    "NumSaturatedCarbocycles",
    "NumSaturatedHeterocycles",
    "NumSaturatedRings",
    "NumValenceElectrons",
    "RingCount",
)
ELEMENTS = (7, 16, 8, 17, 35, 9)  # N, S, O, Cl, Br, F: counted per carbon
RING_SIZES = tuple(range(3, 21))
N_DESCRIPTORS = len(RDKIT_DESCRIPTORS) + 2 + len(ELEMENTS) + 4 + len(RING_SIZES) + 2


# ---------------------------------------------------------------------------------------- SELFIES
@functools.cache
def mutation_alphabet() -> tuple[tuple[str, ...], ...]:
    """The paper's mutation alphabet in SELFIES 2 spelling; each entry is a tuple of symbols.

    ``[Branch1_1/2/3]`` → ``[Branch1]``/``[=Branch1]``/``[#Branch1]`` (same for 2), ``[epsilon]`` →
    ``[nop]``, plus a benzene ring as one entry."""
    import selfies

    single = (
        "[Branch1]", "[=Branch1]", "[#Branch1]", "[nop]", "[Ring1]", "[Ring2]", "[Branch2]",
        "[=Branch2]", "[#Branch2]", "[F]", "[O]", "[=O]", "[N]", "[=N]", "[#N]", "[C]", "[=C]",
        "[#C]", "[S]", "[=S]",
    )  # fmt: skip
    benzene = tuple(selfies.split_selfies(selfies.encoder("C1=CC=CC=C1")))
    return tuple((s,) for s in single) + (benzene,)


def split_symbols(text: str) -> list[str]:
    """The symbols of a SELFIES string; ValueError if it is not one."""
    import selfies

    if not isinstance(text, str):
        raise ValueError(f"SELFIES must be a string, got {type(text).__name__}")
    symbols = list(selfies.split_selfies(text))
    if "".join(symbols) != text or any(not (s.startswith("[") and s.endswith("]")) for s in symbols):
        raise ValueError(f"{text!r} is not a SELFIES string")
    return symbols


@functools.lru_cache(maxsize=200_000)
def decode(text: str, max_smiles_len: int) -> str | None:
    """Canonical SMILES (no stereo) of a SELFIES string, or None if empty, invalid or too long."""
    import selfies
    from rdkit import Chem

    try:
        smiles = selfies.decoder(text)
    except selfies.DecoderError:
        return None
    if not smiles:
        return None
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    canonical = Chem.MolToSmiles(mol, isomericSmiles=False)
    if not canonical or len(canonical) > max_smiles_len:
        return None
    return canonical


def mutate(text: str, rng: random.Random, max_smiles_len: int = 81, max_tries: int = 1000) -> tuple[str, str]:
    """One random insertion or replacement of an alphabet entry, retried until the result decodes to a
    valid molecule of at most ``max_smiles_len`` characters; returns (SELFIES, canonical SMILES)."""
    symbols = split_symbols(text)
    alphabet = mutation_alphabet()
    for _ in range(max_tries):
        entry = list(alphabet[rng.randrange(len(alphabet))])
        if rng.random() < 0.5 or not symbols:  # insert at one of len + 1 positions
            i = rng.randrange(len(symbols) + 1)
            new = symbols[:i] + entry + symbols[i:]
        else:  # replace one symbol
            i = rng.randrange(len(symbols))
            new = symbols[:i] + entry + symbols[i + 1 :]
        candidate = "".join(new)
        smiles = decode(candidate, max_smiles_len)
        if smiles is not None:
            return candidate, smiles
    raise RuntimeError(f"no valid mutation of {text!r} in {max_tries} tries")


# ----------------------------------------------------------------------------------------- scores
def _mol(smiles: str):
    from papers.chem.data import parse_smiles

    return parse_smiles(smiles)  # InvalidMoleculeError (a ValueError) on bad SMILES


def descriptors(smiles: str) -> list[float]:
    """The discriminator's input: ``N_DESCRIPTORS`` chemical and geometric RDKit features."""
    from rdkit import Chem
    from rdkit.Chem import Descriptors

    mol = _mol(smiles)
    values = [float(getattr(Descriptors, name)(mol)) for name in RDKIT_DESCRIPTORS]
    atoms = mol.GetNumAtoms()
    carbons = sum(a.GetAtomicNum() == 6 for a in mol.GetAtoms()) or 1e-4
    hydrogens = sum(a.GetTotalNumHs() for a in mol.GetAtoms())
    values += [atoms / carbons, hydrogens / carbons]
    values += [sum(a.GetAtomicNum() == z for a in mol.GetAtoms()) / carbons for z in ELEMENTS]
    kinds = [b.GetBondType() for b in mol.GetBonds()]
    bt = Chem.BondType
    n = len(kinds) or 1
    values += [sum(k == t for k in kinds) / n for t in (bt.SINGLE, bt.DOUBLE, bt.TRIPLE, bt.AROMATIC)]
    sizes = [len(r) for r in mol.GetRingInfo().AtomRings()]
    values += [float(sum(s == size for s in sizes)) for size in RING_SIZES]
    consecutive = sum(a == b == bt.DOUBLE for a, b in zip(kinds, kinds[1:], strict=False))
    values += [float(len(sizes)), float(consecutive)]
    return values


class MoleculeScorer:
    """Cached J (penalised logP), descriptors and Bemis–Murcko scaffold per canonical SMILES."""

    def __init__(self):
        self._cache: dict[str, tuple[float, list[float], str]] = {}

    def __call__(self, smiles: str) -> tuple[float, list[float], str]:
        if smiles not in self._cache:
            from papers.chem.data import murcko_scaffold, penalized_logp

            mol = _mol(smiles)
            self._cache[smiles] = (penalized_logp(mol), descriptors(smiles), murcko_scaffold(smiles))
        return self._cache[smiles]

    def __len__(self) -> int:
        return len(self._cache)


# -------------------------------------------------------------------------------- discriminator
class Discriminator(nn.Module):
    """Sigmoid MLP on standardised descriptors → P(reference); shift/scale from the reference set
    (the authors fed raw descriptors; standardising is a deviation that helps the small net)."""

    def __init__(self, shift: Tensor, scale: Tensor, hidden: Sequence[int] = (100, 10)):
        super().__init__()
        if shift.shape != scale.shape or shift.dim() != 1:
            raise ValueError(f"shift and scale must be equal 1-D shapes, got {shift.shape}, {scale.shape}")
        self.register_buffer("shift", shift.clone())
        # a feature constant over the reference set (e.g. no 17-rings) is left unscaled
        self.register_buffer("scale", torch.where(scale > 1e-6, scale, torch.ones_like(scale)))
        widths = [shift.numel(), *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:], strict=False))
        self.out = nn.Linear(widths[-1], 1)

    @property
    def features(self) -> int:
        return self.shift.numel()

    def forward(self, x: Tensor) -> Tensor:
        """[B, features] → [B] probabilities of 'reference'."""
        if x.dim() != 2 or x.shape[1] != self.features:
            raise ValueError(f"x must have shape [B, {self.features}], got {tuple(x.shape)}")
        h = (x - self.shift) / self.scale
        for layer in self.hidden:
            h = torch.sigmoid(layer(h))
        return torch.sigmoid(self.out(h))[:, 0]


def train_discriminator(
    model: Discriminator, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, steps: int
) -> list[float]:
    """``steps`` full-batch BCE steps (the paper: 10 'epochs' per generation); the losses."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
    losses = []
    model.train()
    for _ in range(steps):
        loss = nn.functional.binary_cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


# ------------------------------------------------------------------------------------ selection
def replace_probability(n: int, fraction: float = 0.2, slope: float = 10.0) -> list[float]:
    """Fermi function over fitness ranks: p(r) = 1 / (1 + exp(−slope · (r/n − fraction))).

    The authors' code uses exp(−0.02 · (r − 0.2 n)) with n = 500, i.e. slope 10 in units of r/n."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return [1.0 / (1.0 + math.exp(-slope * (r / n - fraction))) for r in range(n)]


def rank(fitness: Sequence[float]) -> list[int]:
    """Indices by decreasing fitness; ties keep population order."""
    return sorted(range(len(fitness)), key=lambda i: (-fitness[i], i))


def select_and_mutate(
    selfies: Sequence[str],
    smiles: Sequence[str],
    fitness: Sequence[float],
    rng: random.Random,
    *,
    fraction: float = 0.2,
    slope: float = 10.0,
    max_smiles_len: int = 81,
) -> tuple[list[str], list[str], int]:
    """Rank by fitness; each rank is replaced with the Fermi probability by a mutant of a uniformly
    chosen survivor (the best molecule survives if all were drawn for replacement). Returns the next
    population's SELFIES, SMILES (in rank order) and the number of replaced molecules."""
    if not len(selfies) == len(smiles) == len(fitness):
        raise ValueError("selfies, smiles and fitness must have the same length")
    order = rank(fitness)
    probs = replace_probability(len(order), fraction, slope)
    replace = [rng.random() < p for p in probs]
    if all(replace):
        replace[0] = False
    survivors = [order[r] for r in range(len(order)) if not replace[r]]
    next_selfies, next_smiles = [], []
    for r, i in enumerate(order):
        if replace[r]:
            parent = survivors[rng.randrange(len(survivors))]
            new_selfies, new_smiles = mutate(selfies[parent], rng, max_smiles_len)
            next_selfies.append(new_selfies)
            next_smiles.append(new_smiles)
        else:
            next_selfies.append(selfies[i])
            next_smiles.append(smiles[i])
    return next_selfies, next_smiles, sum(replace)


def stagnated(best: Sequence[float], window: int) -> bool:
    """The adaptive switch: the best J was identical over the last ``window`` generations."""
    if window < 2:
        raise ValueError(f"window must be >= 2, got {window}")
    return len(best) >= window and len(set(best[-window:])) == 1


# ------------------------------------------------------------------------------------------- GA
def run_ga(
    *,
    reference: Sequence[str],
    reference_features: Tensor,
    scorer: MoleculeScorer,
    seed: int,
    population: int = 500,
    generations: int = 100,
    beta: float = 0.0,
    adaptive: bool = False,
    adaptive_beta: float = 1000.0,
    adaptive_after: int = 100,
    stagnation_window: int = 5,
    start: str = "C",
    max_smiles_len: int = 81,
    disc_steps: int = 10,
    disc_hidden: Sequence[int] = (100, 10),
    disc_lr: float = 1e-3,
    disc_weight_decay: float = 1e-4,
    cutoff_fraction: float = 0.2,
    cutoff_slope: float = 10.0,
) -> dict:
    """One GA(+D) run from a population of ``start`` molecules; per-generation history (JSON-able).

    Generation g: score the population (J; D from the discriminator trained up to g − 1, D ≡ 0 in the
    first generation), F = J + β_g·D with β_g = β, or for ``adaptive`` β_g = ``adaptive_beta`` in a
    generation where the best J of the last ``stagnation_window`` generations is unchanged (only after
    generation ``adaptive_after``) and β otherwise; select and mutate; then train D on the new
    population (label 0 unless in the reference set) against as many reference molecules (label 1)."""
    from papers.chem.data import canonical_smiles

    if population < 2 or generations < 1:
        raise ValueError(f"population must be >= 2 and generations >= 1, got {population}, {generations}")
    if beta < 0 or adaptive_beta < 0:
        raise ValueError(f"beta and adaptive_beta must be >= 0, got {beta}, {adaptive_beta}")
    if reference_features.shape != (len(reference), N_DESCRIPTORS):
        raise ValueError(
            f"reference_features must have shape [{len(reference)}, {N_DESCRIPTORS}], "
            f"got {tuple(reference_features.shape)}"
        )
    rng = random.Random(seed)
    torch.manual_seed(seed)
    reference_set = set(reference)
    disc = Discriminator(reference_features.mean(0), reference_features.std(0), disc_hidden)
    optimizer = torch.optim.Adam(disc.parameters(), lr=disc_lr, weight_decay=disc_weight_decay)

    start_smiles = canonical_smiles(start)
    import selfies as sf

    pop_selfies = [sf.encoder(start_smiles)] * population
    pop_smiles = [start_smiles] * population
    history = {k: [] for k in (
        "best_j", "mean_j", "best_fitness", "unique_molecules", "unique_scaffolds", "reference_like",
        "mean_d", "beta", "disc_loss", "replaced", "best_smiles",
    )}  # fmt: skip
    seen: set[str] = set()
    trained = False
    for generation in range(generations):
        scores = [scorer(s) for s in pop_smiles]
        j = [s[0] for s in scores]
        feats = torch.tensor([s[1] for s in scores], dtype=torch.float32)
        if trained:
            disc.eval()
            with torch.no_grad():
                d = disc(feats).tolist()
        else:
            d = [0.0] * population
        beta_g = beta
        if (
            adaptive
            and generation >= adaptive_after
            and stagnated(history["best_j"] + [max(j)], stagnation_window)
        ):
            beta_g = adaptive_beta
        fit = [a + beta_g * b for a, b in zip(j, d, strict=True)]
        best = max(range(population), key=lambda i: (j[i], -i))
        seen.update(pop_smiles)
        history["best_j"].append(j[best])
        history["mean_j"].append(sum(j) / population)
        history["best_fitness"].append(max(fit))
        history["unique_molecules"].append(len(set(pop_smiles)))
        history["unique_scaffolds"].append(len({s[2] for s in scores}))
        history["reference_like"].append(sum(v > 0.5 for v in d) / population if trained else float("nan"))
        history["mean_d"].append(sum(d) / population if trained else float("nan"))
        history["beta"].append(beta_g)
        history["best_smiles"].append(pop_smiles[best])
        if generation == generations - 1:
            history["disc_loss"].append(float("nan"))
            history["replaced"].append(0)
            break
        pop_selfies, pop_smiles, replaced = select_and_mutate(
            pop_selfies, pop_smiles, fit, rng,
            fraction=cutoff_fraction, slope=cutoff_slope, max_smiles_len=max_smiles_len,
        )  # fmt: skip
        history["replaced"].append(replaced)
        # discriminator: the new population (0 unless a reference molecule) vs as many reference ones (1)
        picks = [rng.randrange(len(reference)) for _ in range(population)]
        x = torch.cat([torch.tensor([scorer(s)[1] for s in pop_smiles]), reference_features[picks]]).float()
        y = torch.tensor([float(s in reference_set) for s in pop_smiles] + [1.0] * population)
        perm = torch.tensor(_shuffled(2 * population, rng))
        losses = train_discriminator(disc, optimizer, x[perm], y[perm], disc_steps)
        history["disc_loss"].append(losses[-1] if losses else float("nan"))
        trained = disc_steps > 0
    history["distinct_molecules_seen"] = len(seen)
    history["final_smiles"] = pop_smiles
    return history


def _shuffled(n: int, rng: random.Random) -> list[int]:
    order = list(range(n))
    rng.shuffle(order)
    return order
