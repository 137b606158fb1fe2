"""MoleculeNet's two kinds of baseline: a fixed fingerprint with a linear model, and a graph network.

ecfp_fingerprints   Morgan / ECFP bits (radius 2 = ECFP4, 2048 bits) of a SMILES list, invalid rows
                    skipped and reported by the data layer's ``MoleculeReport``
RidgeRegression     w = argmin ||X w + b - y||² + λ ||w||², solved in closed form on centred data:
                    primal (XᵀX + λI) w = Xᵀy when n ≥ d, dual w = Xᵀ (XXᵀ + λI)⁻¹ y when n < d
GCNRegressor        graph convolutions H' = ReLU(D̃^(-1/2) Ã D̃^(-1/2) H W) (Ã = A + I, Kipf & Welling),
                    mean pooling over atoms, an MLP head to one number
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.nn import GCNConv, global_mean_pool

from papers.chem.data import MoleculeReport, parse_smiles, valid_smiles


def ecfp_fingerprints(
    smiles: Sequence[str], *, radius: int = 2, n_bits: int = 2048
) -> tuple[Tensor, MoleculeReport]:
    """``[n_valid, n_bits]`` float 0/1 Morgan bits of the SMILES RDKit parses, and the report of the rest.

    Row ``i`` of the matrix is input row ``report.kept_rows[i]``; skipped rows warn
    (``SkippedMoleculesWarning``) and are listed with their reason in the report.
    """
    if radius < 0 or n_bits < 1:
        raise ValueError(f"radius must be >= 0 and n_bits >= 1, got radius={radius}, n_bits={n_bits}")
    from rdkit.Chem import rdFingerprintGenerator

    kept, report = valid_smiles(list(smiles))
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    rows = [torch.from_numpy(generator.GetFingerprintAsNumPy(parse_smiles(text))) for text in kept]
    bits = torch.stack(rows).float() if rows else torch.zeros(0, n_bits)
    return bits, report


class RidgeRegression:
    """Closed-form ridge regression with an unpenalised intercept (float64 throughout)."""

    def __init__(self, alpha: float = 1.0):
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.alpha = alpha
        self.weight: Tensor | None = None
        self.bias: Tensor | None = None

    def fit(self, x: Tensor, y: Tensor) -> RidgeRegression:
        x, y = x.double(), y.double()
        if x.dim() != 2 or y.shape != (x.shape[0],):
            raise ValueError(f"x must be [n, d] and y [n], got {tuple(x.shape)} and {tuple(y.shape)}")
        x_mean, y_mean = x.mean(0), y.mean()
        xc, yc = x - x_mean, y - y_mean
        n, d = xc.shape
        if n >= d:
            self.weight = torch.linalg.solve(xc.T @ xc + self.alpha * torch.eye(d, dtype=x.dtype), xc.T @ yc)
        else:
            self.weight = xc.T @ torch.linalg.solve(xc @ xc.T + self.alpha * torch.eye(n, dtype=x.dtype), yc)
        self.bias = y_mean - x_mean @ self.weight
        return self

    def predict(self, x: Tensor) -> Tensor:
        if self.weight is None:
            raise RuntimeError("call fit before predict")
        return x.double() @ self.weight + self.bias


class GCNRegressor(nn.Module):
    """``layers`` GCN convolutions of width ``hidden`` → mean over atoms → Linear-ReLU-Linear → [graphs]."""

    def __init__(self, in_features: int, *, hidden: int = 64, layers: int = 3):
        super().__init__()
        widths = [in_features] + [hidden] * layers
        self.convs = nn.ModuleList(GCNConv(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor) -> Tensor:
        for conv in self.convs:
            x = torch.relu(conv(x, edge_index))
        return self.head(global_mean_pool(x, batch)).squeeze(-1)
