"""Featurisation, datasets (bundled and MoleculeNet) and batching of papers.chem.data."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
import urllib.error
import warnings

import pytest
import torch

import papers.core.download as core_download
from papers.chem.data import moleculenet
from papers.chem.data.bundled import load_chembl_pic50, load_nci_properties, molecular_properties, nci_smiles
from papers.chem.data.dataset import MoleculeDataset
from papers.chem.data.featurize import (
    ATOM_ELEMENTS,
    ATOM_FEATURE_LAYOUT,
    ATOM_FEATURE_SIZE,
    BOND_FEATURE_LAYOUT,
    BOND_FEATURE_SIZE,
    CHIRALITY_FEATURE_SIZE,
    SkippedMoleculesWarning,
    featurize_smiles,
    smiles_to_graph,
)
from papers.core.errors import PapersError

ATOM = ATOM_FEATURE_LAYOUT
BOND = BOND_FEATURE_LAYOUT


@pytest.fixture(autouse=True)
def data_home(tmp_path, monkeypatch):
    """Downloads and cached graphs go to a temporary folder, never the user's cache."""
    monkeypatch.setenv("PAPERS_DATA", str(tmp_path / "papers-data"))
    return tmp_path / "papers-data" / "chem"


def column(block: torch.Tensor) -> torch.Tensor:
    """The index of the hot column of each row of a one-hot block."""
    assert (block.sum(dim=1) == 1).all()
    return block.argmax(dim=1)


def test_importing_the_package_imports_neither_rdkit_nor_torch_geometric():
    code = (
        "import sys, papers.chem, papers.chem.data; "
        "assert 'rdkit' not in sys.modules and 'torch_geometric' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_feature_sizes_are_the_layouts_sizes():
    assert ATOM_FEATURE_SIZE == 42 and CHIRALITY_FEATURE_SIZE == 4 and BOND_FEATURE_SIZE == 13
    assert ATOM["chirality"].stop == ATOM_FEATURE_SIZE + CHIRALITY_FEATURE_SIZE
    assert smiles_to_graph("CCO").x.shape == (3, ATOM_FEATURE_SIZE)
    assert smiles_to_graph("CCO", chirality=True).x.shape == (3, ATOM_FEATURE_SIZE + CHIRALITY_FEATURE_SIZE)


def test_benzene_has_six_aromatic_ch_atoms_and_twelve_directed_aromatic_edges():
    graph = smiles_to_graph("c1ccccc1")
    x, edge_attr = graph.x, graph.edge_attr
    assert x.shape == (6, ATOM_FEATURE_SIZE) and graph.z.tolist() == [6] * 6
    assert (column(x[:, ATOM["element"]]) == ATOM_ELEMENTS.index("C")).all()
    assert (column(x[:, ATOM["degree"]]) == 2).all()
    assert (column(x[:, ATOM["hydrogens"]]) == 1).all()
    assert (column(x[:, ATOM["formal_charge"]]) == 2).all()  # charge 0 in (-2, -1, 0, 1, 2)
    assert (column(x[:, ATOM["hybridisation"]]) == 2).all()  # SP2 in (S, SP, SP2, ...)
    assert (x[:, ATOM["aromatic"]] == 1).all() and (x[:, ATOM["in_ring"]] == 1).all()

    assert graph.edge_index.shape == (2, 12) and edge_attr.shape == (12, BOND_FEATURE_SIZE)
    pairs = set(map(tuple, graph.edge_index.t().tolist()))
    assert all((j, i) in pairs for i, j in pairs)  # every bond in both directions
    assert (
        column(edge_attr[:, BOND["bond_type"]]) == 3
    ).all()  # aromatic in (single, double, triple, aromatic)
    assert (edge_attr[:, BOND["conjugated"]] == 1).all() and (edge_attr[:, BOND["in_ring"]] == 1).all()
    assert (column(edge_attr[:, BOND["stereo"]]) == 0).all()  # no stereo


def test_ethanol_with_explicit_hydrogens_has_nine_atoms():
    implicit, explicit = smiles_to_graph("CCO"), smiles_to_graph("CCO", explicit_hydrogens=True)
    assert implicit.num_nodes == 3 and implicit.edge_index.shape == (2, 4)
    assert explicit.num_nodes == 9 and explicit.edge_index.shape == (2, 16)
    assert explicit.z.tolist() == [6, 6, 8] + [1] * 6
    # the hydrogen count of a heavy atom is the same whether its hydrogens are atoms or not
    assert torch.equal(implicit.x[:, ATOM["hydrogens"]], explicit.x[:3, ATOM["hydrogens"]])
    assert column(explicit.x[:3, ATOM["degree"]]).tolist() == [4, 4, 2]
    assert explicit.smiles == "CCO"


def test_charges_unlisted_elements_stereo_and_single_atoms():
    ammonium = smiles_to_graph("[NH4+]")
    assert column(ammonium.x[:, ATOM["formal_charge"]]).tolist() == [3]  # +1
    assert column(ammonium.x[:, ATOM["hydrogens"]]).tolist() == [4]
    assert ammonium.edge_index.shape == (2, 0) and ammonium.edge_attr.shape == (0, BOND_FEATURE_SIZE)

    salt = smiles_to_graph("[Na+].[Cl-]")
    assert column(salt.x[:, ATOM["element"]]).tolist() == [len(ATOM_ELEMENTS), ATOM_ELEMENTS.index("Cl")]

    trans, cis = smiles_to_graph("F/C=C/F"), smiles_to_graph("F/C=C\\F")
    double = 2, 3  # the two directed edges of the C=C bond (bond 1)
    assert column(trans.edge_attr[double, BOND["stereo"]]).tolist() == [2, 2]  # E
    assert column(cis.edge_attr[double, BOND["stereo"]]).tolist() == [1, 1]  # Z
    assert column(trans.edge_attr[double, BOND["bond_type"]]).tolist() == [1, 1]  # double

    r, s = (smiles_to_graph(f"C[C{tag}H](N)O", chirality=True) for tag in ("@", "@@"))
    assert column(r.x[:, ATOM["chirality"]]).tolist() == [0, 2, 0, 0]  # unspecified, CCW, ...
    assert column(s.x[:, ATOM["chirality"]]).tolist() == [0, 1, 0, 0]  # unspecified, CW, ...


def test_invalid_smiles_are_reported_by_row_with_reasons_and_the_rest_kept(capfd):
    smiles = ["CCO", "C1CC", "CC(C", "", "c1cccc1", "CC(=O)O", "C[N](C)(C)(C)C"]
    with pytest.warns(SkippedMoleculesWarning, match="kept 2 of 7 molecules, skipped 5"):
        graphs, report = featurize_smiles(smiles)
    assert [g.smiles for g in graphs] == ["CCO", "CC(=O)O"] and report.kept_rows == [0, 5]
    assert report.num_skipped == 5 and [s.row for s in report.skipped] == [1, 2, 3, 4, 6]
    reasons = [s.reason for s in report.skipped]
    assert "unclosed ring" in reasons[0]
    assert "extra open parentheses" in reasons[1]
    assert "empty" in reasons[2]
    assert "kekulize" in reasons[3]
    assert "valence" in reasons[4].lower()
    assert "row 4: 'c1cccc1'" in str(report)
    assert capfd.readouterr().err == ""  # RDKit's messages went into the reasons, not to stderr


def test_conformers_are_seeded_and_have_a_position_per_atom():
    first, again = (smiles_to_graph("CCO", conformer_seed=7) for _ in range(2))
    assert first.pos.shape == (3, 3) and torch.equal(first.pos, again.pos)
    assert 1.45 < torch.dist(first.pos[0], first.pos[1]).item() < 1.56  # a C-C bond after MMFF, in Å
    assert smiles_to_graph("CCO", conformer_seed=7, explicit_hydrogens=True).pos.shape == (9, 3)
    assert "pos" not in smiles_to_graph("CCO")


def test_dataloader_batches_graphs_with_targets_and_masks():
    from torch_geometric.loader import DataLoader

    nan = float("nan")
    dataset = MoleculeDataset.from_smiles(
        ["CCO", "c1ccccc1", "CC(=O)O", "CCN"],
        [[1.0, nan], [0.0, 1.0], [1.0, 0.0], [nan, 1.0]],
        name="tiny",
        task_names=["a", "b"],
        task_type="classification",
    )
    batch = next(iter(DataLoader(dataset, batch_size=3)))
    assert batch.num_graphs == 3 and batch.x.shape == (3 + 6 + 4, ATOM_FEATURE_SIZE)
    assert batch.edge_attr.shape == (2 * (2 + 6 + 3), BOND_FEATURE_SIZE)
    assert batch.y.shape == (3, 2) and batch.y_mask.tolist() == [[True, False], [True, True], [True, True]]
    assert batch.batch.bincount().tolist() == [3, 6, 4] and batch.smiles == ["CCO", "c1ccccc1", "CC(=O)O"]
    assert dataset.subset([3, 0]).smiles == ["CCN", "CCO"]
    with pytest.raises(ValueError, match="0, 1 or missing"):
        MoleculeDataset.from_smiles(["C"], [[0.5]], name="bad", task_names=["a"], task_type="classification")


def test_a_saved_dataset_with_conformers_loads_back_equal(tmp_path):
    dataset = MoleculeDataset.from_smiles(
        ["CCO", "c1ccncc1"],
        [[1.0], [2.0]],
        name="tiny",
        task_names=["t"],
        task_type="regression",
        conformer_seed=0,
    )
    dataset.save(tmp_path / "tiny.pt")
    loaded = MoleculeDataset.load(tmp_path / "tiny.pt")
    assert loaded.task_names == ("t",) and loaded.smiles == dataset.smiles
    for before, after in zip(dataset, loaded, strict=True):
        for key in ("x", "edge_index", "edge_attr", "z", "pos", "y", "y_mask"):
            assert torch.equal(before[key], after[key]), key


def test_chembl_series_loads_1017_molecules_with_finite_pic50_and_is_cached(data_home):
    dataset = load_chembl_pic50()
    assert len(dataset) == 1017 and dataset.report.num_skipped == 0
    assert dataset.task_names == ("pIC50",) and dataset.targets.shape == (1017, 1)
    assert dataset.targets.isfinite().all()
    assert dataset.targets.min().item() == pytest.approx(
        4.27
    ) and dataset.targets.max().item() == pytest.approx(9.22)
    assert len(list((data_home / "graphs").glob("chembl2321810-*.pt"))) == 1
    cached = load_chembl_pic50()
    assert cached.smiles == dataset.smiles and torch.equal(cached[500].x, dataset[500].x)


def test_nci_set_keeps_4991_of_4999_molecules_and_reports_the_rest():
    with pytest.warns(SkippedMoleculesWarning, match="kept 4991 of 4999"):
        smiles = nci_smiles()
    assert len(smiles) == 4991
    with pytest.warns(SkippedMoleculesWarning):
        dataset = load_nci_properties(properties=("mol_wt",), cache=False)  # QED takes seconds: slow tier
    assert len(dataset) == 4991 and dataset.targets.shape == (4991, 1) and dataset.targets.isfinite().all()
    assert dataset.report.num_skipped == 8
    assert all("Explicit valence" in skipped.reason for skipped in dataset.report.skipped)
    assert dataset.smiles == smiles


@pytest.mark.slow
def test_nci_properties_have_finite_values_in_their_ranges_and_load_back_from_the_cache():
    with pytest.warns(SkippedMoleculesWarning):
        dataset = load_nci_properties()
    targets = dataset.targets
    assert dataset.task_names == ("logp", "qed", "tpsa", "mol_wt") and targets.isfinite().all()
    assert ((targets[:, 1] > 0) & (targets[:, 1] < 1)).all() and (targets[:, 2:] >= 0).all()
    with pytest.warns(SkippedMoleculesWarning):
        cached = load_nci_properties()
    assert torch.equal(cached.targets, targets) and cached.report.num_skipped == 8


def test_molecular_properties_of_benzene():
    logp, qed, tpsa, mol_wt = molecular_properties("c1ccccc1")
    assert tpsa == 0.0 and mol_wt == pytest.approx(78.114, abs=1e-3) and 0 < qed < 1
    assert logp == pytest.approx(1.6866, abs=1e-3)
    with pytest.raises(ValueError, match="unknown properties"):
        molecular_properties("C", ["boiling_point"])


def test_a_missing_bundled_file_is_a_clear_error(monkeypatch, tmp_path):
    from rdkit import RDConfig

    monkeypatch.setattr(RDConfig, "RDContribDir", str(tmp_path))
    with pytest.raises(PapersError, match="CHEMBL2321810.smi is not in this rdkit installation"):
        load_chembl_pic50()


# MoleculeNet: the download is replaced by reading files the tests write.

ESOL_CSV = (
    "Compound ID,measured log solubility in mols per litre,smiles\n"
    "ethanol,1.10,CCO\n"
    "broken,0.5,C1CC\n"
    "benzene,-1.64,c1ccccc1\n"
)


def serve(monkeypatch, content: bytes) -> list[str]:
    """Make downloads return ``content``; the list collects the URLs asked for."""
    asked = []

    def fetch(url: str) -> bytes:
        asked.append(url)
        return content

    monkeypatch.setattr(core_download, "fetch", fetch)
    return asked


def test_moleculenet_esol_downloads_once_parses_and_prints_the_checksum(monkeypatch, capsys, data_home):
    asked = serve(monkeypatch, ESOL_CSV.encode())
    with pytest.warns(SkippedMoleculesWarning, match="row 1 'C1CC'"):
        dataset = moleculenet.load_moleculenet("esol")
    assert asked == [moleculenet.MOLECULENET["esol"].url]
    assert dataset.smiles == ["CCO", "c1ccccc1"] and dataset.targets.flatten().tolist() == pytest.approx(
        [1.1, -1.64]
    )
    assert hashlib.sha256(ESOL_CSV.encode()).hexdigest() in capsys.readouterr().err
    assert (data_home / "moleculenet" / "delaney-processed.csv").read_text() == ESOL_CSV

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedMoleculesWarning)
        moleculenet.load_moleculenet("esol", sha256=hashlib.sha256(ESOL_CSV.encode()).hexdigest())
    assert len(asked) == 1  # the second load used the cached file


def test_moleculenet_tox21_reads_gzip_with_twelve_tasks_and_masks_missing_labels(monkeypatch, tmp_path):
    tasks = moleculenet.TOX21_TASKS
    rows = [
        ",".join(tasks) + ",mol_id,smiles",
        ",".join(["1", "0"] + [""] * 10) + ",TOX1,CCO",
        ",".join([""] * 11 + ["1"]) + ",TOX2,c1ccccc1O",
    ]
    serve(monkeypatch, gzip.compress(("\n".join(rows) + "\n").encode()))
    dataset = moleculenet.load_moleculenet("tox21", root=tmp_path / "downloads")
    assert (tmp_path / "downloads" / "tox21.csv.gz").is_file()
    assert dataset.task_type == "classification" and dataset.num_tasks == 12
    mask = torch.cat([graph.y_mask for graph in dataset])
    assert mask.sum(dim=1).tolist() == [2, 1] and mask[1, 11]
    assert dataset.targets[0, :2].tolist() == [1.0, 0.0] and dataset.targets[0, 2:].isnan().all()


def test_a_checksum_mismatch_is_an_error_and_leaves_no_file(monkeypatch, tmp_path):
    serve(monkeypatch, ESOL_CSV.encode())
    root = tmp_path / "downloads"
    with pytest.raises(PapersError, match="expected 0000"):
        moleculenet.download_moleculenet("esol", sha256="0" * 64, root=root)
    assert not root.exists() or list(root.iterdir()) == []

    path = moleculenet.download_moleculenet("esol", root=root)
    path.write_text(ESOL_CSV + "tampered,0,C\n")
    with pytest.raises(PapersError, match="delete it to download it again"):
        moleculenet.download_moleculenet(
            "esol", sha256=hashlib.sha256(ESOL_CSV.encode()).hexdigest(), root=root
        )


def test_moleculenet_errors_are_clear(monkeypatch, tmp_path):
    with pytest.raises(PapersError, match="unknown MoleculeNet dataset 'esoll'"):
        moleculenet.load_moleculenet("esoll")

    def offline(url):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(core_download, "fetch", offline)
    with pytest.raises(PapersError, match="cannot download bbbp"):
        moleculenet.download_moleculenet("bbbp", root=tmp_path)
    (tmp_path / "BBBP.csv").write_text("num,name,smiles\n1,x,CCO\n")
    with pytest.raises(PapersError, match=r"no columns \['p_np'\]"):
        moleculenet.load_moleculenet("bbbp", root=tmp_path)
