"""A list of featurised molecules with targets, and its cache on disk.

:class:`MoleculeDataset` holds ``Data`` graphs from :mod:`.featurize`, each with ``y`` (``[1, num_tasks]``,
NaN where a label is missing) and ``y_mask`` (``[1, num_tasks]``, True where a label is present), so a
``torch_geometric.loader.DataLoader`` batch has ``batch.y`` and ``batch.y_mask`` of shape
``[batch_size, num_tasks]``. Train on ``pred[batch.y_mask]`` against ``batch.y[batch.y_mask]``.

:func:`cached_dataset` keeps a built dataset under ``data_dir() / "graphs"`` (plain tensors written
atomically, read back without unpickling objects), keyed by the source data, the options, the RDKit
version and the code of this package: a change to any of them builds the dataset again.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from papers.core.download import data_dir as core_data_dir
from papers.core.io import CheckpointError, load_checkpoint, save_checkpoint

from .featurize import MoleculeReport, SkippedMolecule, SkippedMoleculesWarning, featurize_smiles

TASK_TYPES = ("regression", "classification")
_ATOM_KEYS = ("x", "z", "pos")
_EDGE_KEYS = ("edge_attr",)
_GRAPH_KEYS = ("y", "y_mask")


def data_dir() -> Path:
    """Where downloads and cached graphs live: ``$PAPERS_DATA/chem``, else ``~/.cache/papers/chem``."""
    return core_data_dir("chem")


class MoleculeDataset(torch.utils.data.Dataset):
    """Featurised molecules with targets; ``dataset[i]`` is a ``Data`` graph, ``report`` lists skipped rows.

    ``task_type`` is ``"regression"`` or ``"classification"`` (labels 0/1). ``subset(indices)`` keeps the
    report of the whole input.
    """

    def __init__(
        self,
        graphs: Sequence,
        *,
        name: str,
        task_names: Sequence[str],
        task_type: str,
        report: MoleculeReport,
    ):
        if task_type not in TASK_TYPES:
            raise ValueError(f"task_type must be one of {TASK_TYPES}, got {task_type!r}")
        self.graphs = list(graphs)
        self.name = name
        self.task_names = tuple(task_names)
        self.task_type = task_type
        self.report = report

    @classmethod
    def from_smiles(
        cls,
        smiles: Sequence[str],
        targets,
        *,
        name: str,
        task_names: Sequence[str],
        task_type: str,
        **featurize_options,
    ) -> MoleculeDataset:
        """Featurise ``smiles`` (options as :func:`~.featurize.mol_to_graph`), giving the graph of row
        ``i`` the targets ``targets[i]`` (``len(task_names)`` numbers, NaN for a missing label)."""
        targets = torch.as_tensor(targets, dtype=torch.float32)
        if targets.shape != (len(smiles), len(task_names)):
            raise ValueError(
                f"targets must have shape ({len(smiles)}, {len(task_names)}), got {tuple(targets.shape)}"
            )
        labelled = targets[~targets.isnan()]
        if task_type == "classification" and not ((labelled == 0) | (labelled == 1)).all():
            raise ValueError(f"{name}: classification labels must be 0, 1 or missing (NaN)")
        graphs, report = featurize_smiles(smiles, **featurize_options)
        if not graphs:
            raise ValueError(f"{name}: no valid molecules ({report.summary()})")
        for graph, row in zip(graphs, report.kept_rows, strict=True):
            graph.y = targets[row].unsqueeze(0)
            graph.y_mask = ~graph.y.isnan()
        return cls(graphs, name=name, task_names=task_names, task_type=task_type, report=report)

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int):
        return self.graphs[index]

    def subset(self, indices: Sequence[int]) -> MoleculeDataset:
        """The molecules at ``indices`` (e.g. one part of a split), as a dataset of their own."""
        return MoleculeDataset(
            [self.graphs[int(i)] for i in indices],
            name=self.name,
            task_names=self.task_names,
            task_type=self.task_type,
            report=self.report,
        )

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    @property
    def smiles(self) -> list[str]:
        return [graph.smiles for graph in self.graphs]

    @property
    def targets(self) -> torch.Tensor:
        """``[len(self), num_tasks]``, NaN where a label is missing."""
        return torch.cat([graph.y for graph in self.graphs])

    def __repr__(self) -> str:
        return (
            f"MoleculeDataset({self.name!r}, {len(self)} molecules, {self.task_type} "
            f"tasks {list(self.task_names)}, {self.report.num_skipped} rows skipped)"
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the dataset as plain tensors, atomically (read it back with :meth:`load`)."""
        graphs = self.graphs
        if not graphs:
            raise ValueError(f"{self.name}: cannot save an empty dataset")
        state = {
            "name": self.name,
            "task_names": list(self.task_names),
            "task_type": self.task_type,
            "smiles": self.smiles,
            "num_atoms": torch.tensor([graph.num_nodes for graph in graphs]),
            "num_edges": torch.tensor([graph.num_edges for graph in graphs]),
            "edge_index": torch.cat([graph.edge_index for graph in graphs], dim=1),
            "report": {
                "total": self.report.total,
                "kept_rows": self.report.kept_rows,
                "skipped": [[s.row, s.smiles, s.reason] for s in self.report.skipped],
            },
        }
        for key in _ATOM_KEYS + _EDGE_KEYS + _GRAPH_KEYS:
            state[key] = torch.cat([graph[key] for graph in graphs]) if key in graphs[0] else None
        save_checkpoint(path, state)

    @classmethod
    def load(cls, path: str | os.PathLike) -> MoleculeDataset:
        """Read a dataset written by :meth:`save`."""
        from torch_geometric.data import Data

        state = load_checkpoint(path)
        num_atoms, num_edges = state["num_atoms"].tolist(), state["num_edges"].tolist()
        columns = {"edge_index": state["edge_index"].split(num_edges, dim=1)}
        for keys, sizes in ((_ATOM_KEYS, num_atoms), (_EDGE_KEYS, num_edges), (_GRAPH_KEYS, 1)):
            columns.update({key: state[key].split(sizes) for key in keys if state[key] is not None})
        graphs = [
            Data(smiles=smiles, **{key: parts[i] for key, parts in columns.items()})
            for i, smiles in enumerate(state["smiles"])
        ]
        report = state["report"]
        report = MoleculeReport(
            total=report["total"],
            kept_rows=list(report["kept_rows"]),
            skipped=[SkippedMolecule(*skipped) for skipped in report["skipped"]],
        )
        return cls(
            graphs,
            name=state["name"],
            task_names=state["task_names"],
            task_type=state["task_type"],
            report=report,
        )


def _code_digest() -> str:
    """A digest of this package's source: editing the featurisation invalidates cached graphs."""
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def cached_dataset(
    name: str, key: dict, build: Callable[[], MoleculeDataset], cache: bool = True
) -> MoleculeDataset:
    """``build()``, kept in ``data_dir() / "graphs"`` and read back while ``key`` (JSON-able: source
    digests, options) and the code are unchanged. ``cache=False`` always builds and writes nothing.
    A cached dataset with skipped rows warns as building it did."""
    if not cache:
        return build()
    from rdkit import __version__ as rdkit_version

    full_key = json.dumps({"key": key, "rdkit": rdkit_version, "code": _code_digest()}, sort_keys=True)
    path = data_dir() / "graphs" / f"{name}-{hashlib.sha256(full_key.encode()).hexdigest()[:16]}.pt"
    if path.is_file():
        try:
            dataset = MoleculeDataset.load(path)
        except CheckpointError:  # unreadable: build it again and replace it
            pass
        else:
            if dataset.report.skipped:
                warnings.warn(dataset.report.summary(), SkippedMoleculesWarning, stacklevel=2)
            return dataset
    dataset = build()
    dataset.save(path)
    return dataset
