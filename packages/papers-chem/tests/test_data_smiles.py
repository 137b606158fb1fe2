"""SMILES helpers shared by the generators: canonical SMILES, the NCI corpus, SA score, penalised logP."""

from __future__ import annotations

import pytest

from papers.chem.data import (
    InvalidMoleculeError,
    Vocabulary,
    canonical_smiles,
    nci_corpus,
    penalized_logp,
    ring_penalty,
    sa_score,
    tokenize,
)


def test_canonical_smiles_is_one_string_per_molecule():
    assert canonical_smiles("OCC") == canonical_smiles("C(O)C") == "CCO"
    assert canonical_smiles("C[C@H](N)O") == "CC(N)O"  # stereo dropped by default
    assert "@" in canonical_smiles("C[C@H](N)O", isomeric=True)
    with pytest.raises(InvalidMoleculeError):
        canonical_smiles("C1CC")


def test_vocabulary_special_ids():
    vocab = Vocabulary.from_smiles(["CCO"])
    assert (vocab.pad, vocab.start, vocab.end) == (0, 1, 2)
    assert vocab.decode(vocab.encode("CCO", 6)) == "CCO"


def test_nci_corpus_is_canonical_distinct_and_bounded():
    corpus, skipped = nci_corpus(max_tokens=30)
    assert len(corpus) == len(set(corpus)) > 2000
    assert skipped["unparsable"] == 8  # the 8 hypervalent rows of first_5K.smi
    assert all(len(tokenize(s)) <= 30 for s in corpus)
    assert all(canonical_smiles(s) == s for s in corpus[:200])
    longer, _ = nci_corpus(max_tokens=60)
    assert set(corpus) < set(longer)
    with pytest.raises(ValueError, match="max_tokens"):
        nci_corpus(max_tokens=0)


def test_sa_score_ranks_simple_below_complex():
    simple, complex_ = sa_score("CCO"), sa_score("CC1(C)C2CCC1(C)C(=O)C2[C@@H](O)[C@H]1OC(C)(C)O1")
    assert 1 <= simple < complex_ <= 10


def test_penalized_logp_is_logp_minus_sa_minus_ring_penalty():
    from rdkit import Chem
    from rdkit.Chem import Crippen

    macrocycle = "C1CCCCCCCC1"  # a 9-ring: penalty 3
    assert ring_penalty(macrocycle) == 3 and ring_penalty("c1ccccc1") == 0 and ring_penalty("CCO") == 0
    mol = Chem.MolFromSmiles(macrocycle)
    expected = Crippen.MolLogP(mol) - sa_score(mol) - 3
    assert penalized_logp(macrocycle) == pytest.approx(expected)
    with pytest.raises(InvalidMoleculeError):
        penalized_logp("not a molecule")
