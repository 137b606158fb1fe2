"""DimeNet: radius graph and triplets, Bessel/spherical bases, envelope, E(3) invariance, errors, smoke."""

from __future__ import annotations

import math

import pytest
import torch
from papers_testing import untimed

from papers.chem.dimenet import (
    DimeNet,
    RadialBasis,
    SphericalBasis,
    bessel_roots,
    collate,
    envelope,
    geometry,
    radius_graph,
    spherical_jn,
    triplets,
)

F64 = torch.float64


def _cloud(n=12, seed=0, scale=2.0):
    return torch.randn(n, 3, dtype=F64, generator=torch.Generator().manual_seed(seed)) * scale


def _rotation(seed=0):
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(seed)))
    return q * torch.sign(torch.linalg.det(q))  # proper rotation


def test_radius_graph_matches_brute_force_and_respects_molecules():
    pos = _cloud(15)
    batch = torch.tensor([0] * 6 + [1] * 5 + [2] * 4)
    cutoff = 2.5
    edges = radius_graph(pos, cutoff, batch)
    expected = {(j, i) for i in range(15) for j in range(15)
                if i != j and batch[i] == batch[j] and (pos[i] - pos[j]).norm() < cutoff}  # fmt: skip
    got = [tuple(e) for e in edges.T.tolist()]
    assert len(got) == len(set(got)) and set(got) == expected
    # sorted by target, then source; both directions present
    assert got == sorted(got, key=lambda e: (e[1], e[0]))
    assert all((i, j) in expected for j, i in got)
    # interleaved molecule labels give the same graph up to order
    perm = torch.randperm(15, generator=torch.Generator().manual_seed(3))
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(15)
    shuffled = radius_graph(pos[perm], cutoff, batch[perm])
    assert {(int(perm[j]), int(perm[i])) for j, i in shuffled.T.tolist()} == expected
    assert radius_graph(pos[:1], cutoff).shape == (2, 0)


def test_triplets_enumerate_every_k_to_j_to_i_with_k_not_i():
    pos = _cloud(9, seed=1)
    edges = radius_graph(pos, 3.0)
    idx_kj, idx_ji = triplets(edges, 9)
    src, dst = edges.tolist()
    got = sorted(zip(idx_kj.tolist(), idx_ji.tolist(), strict=True))
    expected = sorted((a, b) for b in range(len(src)) for a in range(len(src))
                      if dst[a] == src[b] and src[a] != dst[b])  # fmt: skip
    assert got == expected and len(got) > 0
    assert all(src[a] != dst[b] for a, b in got)  # k != i
    assert all(dst[a] == src[b] for a, b in got)  # the chain k -> j -> i
    # a triangle: 6 directed edges, each j->i meets exactly one k->j with k != i
    tri = radius_graph(torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=F64), 2.0)
    kj, ji = triplets(tri, 3)
    assert tri.shape[1] == 6 and kj.shape[0] == 6
    # a dimer has no triplet (the only k would be i)
    kj, _ = triplets(radius_graph(torch.tensor([[0.0, 0, 0], [1, 0, 0]], dtype=F64), 2.0), 2)
    assert kj.shape[0] == 0


def test_geometry_angles_are_the_angles_at_j():
    pos = torch.tensor([[1.0, 0, 0], [0, 0, 0], [math.cos(2.0), math.sin(2.0), 0]], dtype=F64)  # angle 2 rad
    geom = geometry(pos, 1.5)
    src, dst = geom.edge_index
    for t in range(geom.idx_kj.shape[0]):
        k, j, i = int(src[geom.idx_kj[t]]), int(src[geom.idx_ji[t]]), int(dst[geom.idx_ji[t]])
        a, b = pos[k] - pos[j], pos[i] - pos[j]
        assert math.isclose(
            float(geom.angle[t]), float(torch.acos(a @ b / a.norm() / b.norm())), abs_tol=1e-9
        )
    middle = [t for t in range(geom.idx_kj.shape[0]) if int(src[geom.idx_ji[t]]) == 1]
    assert len(middle) == 2 and all(math.isclose(float(geom.angle[t]), 2.0, abs_tol=1e-9) for t in middle)


def test_spherical_bessel_and_roots_against_analytic_values():
    scipy_special = pytest.importorskip("scipy.special")
    x = torch.linspace(1e-3, 30.0, 3001, dtype=F64)
    for order in range(7):
        ref = torch.from_numpy(scipy_special.spherical_jn(order, x.numpy()))
        assert torch.allclose(spherical_jn(order, x), ref, atol=1e-12)
    assert torch.allclose(spherical_jn(0, x), torch.sin(x) / x, atol=1e-14)
    roots = bessel_roots(4, 6)
    assert all(math.isclose(r, (n + 1) * math.pi, rel_tol=1e-12) for n, r in enumerate(roots[0]))  # j_0: nπ
    assert math.isclose(roots[1][0], 4.493409457909064, rel_tol=1e-10)  # tan x = x
    for order, row in enumerate(roots):
        assert all(a < b for a, b in zip(row, row[1:], strict=False))
        assert float(spherical_jn(order, torch.tensor(row, dtype=F64)).abs().max()) < 1e-12


def test_radial_basis_is_the_papers_formula():
    c, rbf = 5.0, RadialBasis(6, 5.0, envelope_exponent=6).double()
    d = torch.tensor([0.7, 1.5, 3.2, 4.9], dtype=F64)
    out = rbf(d)
    for row, dist in zip(out, d.tolist(), strict=True):
        x = dist / c
        u = 1 - 28 * x**6 + 48 * x**7 - 21 * x**8  # p = 6
        want = [u * math.sqrt(2 / c) * math.sin(n * math.pi * dist / c) / dist for n in range(1, 7)]
        assert torch.allclose(row, torch.tensor(want, dtype=F64), atol=1e-12)
    assert torch.equal(rbf(torch.tensor([5.0, 6.0], dtype=F64)), torch.zeros(2, 6, dtype=F64))


def test_spherical_basis_l0_is_a_normalised_sinc_and_l1_carries_cos_alpha():
    c, sbf = 4.0, SphericalBasis(3, 4, 4.0).double()
    d = torch.tensor([1.1, 2.0, 3.3], dtype=F64)
    alpha = torch.tensor([0.3, 1.7, 2.9], dtype=F64)
    out = sbf(d, alpha).view(3, 3, 4)
    u = envelope(d / c)
    for n in range(1, 5):
        z = n * math.pi  # roots of j_0
        norm = math.sqrt(2 / c**3) / abs(math.sin(z) / z**2 - math.cos(z) / z)  # |j_1(nπ)| = 1/(nπ)
        want = u * norm * torch.sin(z * d / c) / (z * d / c) * math.sqrt(1 / (4 * math.pi))
        assert torch.allclose(out[:, 0, n - 1], want, atol=1e-12)
    ratio = out[:, 1, :] / sbf.radial(d)[:, 1, :]
    assert torch.allclose(ratio, (math.sqrt(3 / (4 * math.pi)) * torch.cos(alpha))[:, None].expand(3, 4))
    # each radial function is orthonormal on [0, c] with weight d² (the normalisation of the paper)
    grid = torch.linspace(1e-6, c * (1 - 1e-9), 20001, dtype=F64)
    plain = SphericalBasis(2, 3, c, envelope_exponent=6).double()
    radial = plain.radial(grid) / envelope(grid / c)[:, None, None]
    for order in range(2):
        product = radial[:, order, :, None] * radial[:, order, None, :] * grid[:, None, None] ** 2
        gram = torch.trapezoid(product, grid, dim=0)
        assert torch.allclose(gram, torch.eye(3, dtype=F64), atol=1e-4)


def test_envelope_is_smooth_at_the_cutoff():
    x = torch.tensor([0.0, 1.0 - 1e-4, 1.0, 1.2], dtype=F64, requires_grad=True)
    u = envelope(x, p=6)
    assert math.isclose(float(u[0]), 1.0) and abs(float(u[1])) < 1e-9 and float(u[2]) == 0 == float(u[3])
    (g1,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    (g2,) = torch.autograd.grad(g1.sum(), x)
    at_one = torch.tensor([1.0], dtype=F64, requires_grad=True)
    a, b, c = -28.0, 48.0, -21.0
    inner = 1 + a * at_one**6 + b * at_one**7 + c * at_one**8  # the polynomial itself, at x = 1
    (d1,) = torch.autograd.grad(inner, at_one, create_graph=True)
    (d2,) = torch.autograd.grad(d1, at_one)
    assert abs(float(inner)) < 1e-12 and abs(float(d1)) < 1e-12 and abs(float(d2)) < 1e-10
    assert abs(float(g1[1])) < 1e-5 and abs(float(g2[1])) < 1e-1  # u ~ (1-x)³ near the cut-off
    with pytest.raises(ValueError, match="envelope exponent"):
        envelope(x.detach(), p=0)


@pytest.mark.parametrize("angular", [True, False])
def test_output_is_invariant_under_rotation_translation_and_permutation(angular):
    torch.manual_seed(0)
    model = DimeNet(num_types=4, hidden=16, num_blocks=2, num_bilinear=4, num_spherical=4, num_radial=4,
                    cutoff=3.0, angular=angular).double()  # fmt: skip
    pos = _cloud(14, seed=2, scale=1.2)
    z = torch.randint(0, 4, (14,), generator=torch.Generator().manual_seed(0))
    batch = torch.tensor([0] * 8 + [1] * 6)
    out = model(z, pos, batch)
    assert out.shape == (2, 1)
    moved = pos @ _rotation(1).T + torch.tensor([3.0, -1.0, 0.5], dtype=F64)
    assert torch.allclose(model(z, moved, batch), out, atol=1e-5, rtol=0)
    reflected = pos * torch.tensor([-1.0, 1.0, 1.0], dtype=F64)
    assert torch.allclose(model(z, reflected, batch), out, atol=1e-5, rtol=0)
    perm = torch.randperm(14, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(model(z[perm], pos[perm], batch[perm]), out, atol=1e-10)
    # a batch equals its molecules alone; collated per-molecule geometries equal the batched one
    alone = torch.cat([model(z[:8], pos[:8]), model(z[8:], pos[8:])])
    assert torch.allclose(alone, out, atol=1e-10)
    geom = collate(
        [model.with_bases(geometry(pos[:8], 3.0)), model.with_bases(geometry(pos[8:], 3.0))], [8, 6]
    )
    assert torch.allclose(model.forward_geometry(z, geom, batch, 2), out, atol=1e-10)


def test_the_angle_reaches_only_the_angular_model():
    """Bend a 3-atom chain at fixed bond lengths with the 1-3 pair beyond the cut-off: only the
    directional model sees the change."""
    torch.manual_seed(0)
    outputs = {}
    for angular in (True, False):
        model = DimeNet(num_types=2, hidden=8, num_blocks=1, num_bilinear=2, num_spherical=3, num_radial=3,
                        cutoff=1.5, angular=angular).double()  # fmt: skip
        values = []
        for theta in (1.9, 2.4, 3.0):  # the 1-3 distance 2 sin(θ/2) > 1.5
            pos = torch.tensor([[1.0, 0, 0], [0, 0, 0], [math.cos(theta), math.sin(theta), 0]], dtype=F64)
            values.append(float(model(torch.tensor([0, 1, 0]), pos)))
        outputs[angular] = values
    assert max(outputs[True]) - min(outputs[True]) > 1e-8
    assert max(outputs[False]) - min(outputs[False]) < 1e-12


def test_same_parameter_count_and_seeded_determinism():
    sizes = []
    for angular in (True, False):
        torch.manual_seed(0)
        sizes.append(sum(p.numel() for p in DimeNet(hidden=16, angular=angular).parameters()))
    assert sizes[0] == sizes[1]
    pos, z = _cloud(6, seed=5, scale=1.0), torch.tensor([0, 1, 1, 2, 0, 3])
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        outs.append(DimeNet(hidden=16).double()(z, pos))
    assert torch.equal(outs[0], outs[1])


def test_gradients_flow_to_every_parameter():
    torch.manual_seed(0)
    model = DimeNet(num_types=3, hidden=8, num_blocks=2, num_bilinear=2, num_spherical=3, num_radial=3,
                    cutoff=3.0).double()  # fmt: skip
    z, pos = torch.tensor([0, 1, 2, 1, 0, 0]), _cloud(6, seed=6, scale=1.0)
    model(z, pos).sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_errors_on_bad_input():
    model = DimeNet(num_types=3, hidden=8, num_blocks=1)
    with pytest.raises(ValueError, match=r"pos must be \[num_atoms, 3\]"):
        model(torch.zeros(4, dtype=torch.long), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="pos must be finite"):
        model(torch.zeros(2, dtype=torch.long), torch.tensor([[0.0, 0, 0], [float("nan"), 0, 0]]))
    with pytest.raises(ValueError, match=r"batch must be \[num_atoms=3\]"):
        model(torch.zeros(3, dtype=torch.long), torch.zeros(3, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"atom types must be in \[0, 3\)"):
        model(torch.tensor([0, 5]), torch.tensor([[0.0, 0, 0], [1, 0, 0]]))
    with pytest.raises(ValueError, match=r"z must be \[num_atoms=2\]"):
        model(torch.tensor([0, 1, 2]), torch.tensor([[0.0, 0, 0], [1, 0, 0]]))
    with pytest.raises(ValueError, match="cutoff must be > 0"):
        radius_graph(torch.zeros(2, 3), 0.0)
    with pytest.raises(ValueError, match=r"edge_index must be \[2, num_edges\]"):
        triplets(torch.zeros(3, 4, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="hidden must be >= 1"):
        DimeNet(hidden=0)
    with pytest.raises(ValueError, match="order must be >= 0"):
        spherical_jn(-1, torch.ones(2))


BAD_CONFIG = [("molecules", 5), ("max_heavy_atoms", 1), ("fractions", (0.8, 0.3, 0.1)), ("n_seeds", 0),
              ("hidden", 0), ("cutoff", 0.0), ("lr", 0.0), ("epochs", 0), ("num_spherical", 0),
              ("threads", -1)]  # fmt: skip


@pytest.mark.parametrize(("key", "value"), BAD_CONFIG)
def test_config_validation(key, value):
    from papers.chem.dimenet.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_angle_bend_energy_grows_when_an_angle_is_bent_away_from_its_minimum():
    from rdkit.Chem import rdMolTransforms

    from papers.chem.data import embed_conformer, parse_smiles
    from papers.chem.dimenet.experiment import angle_bend_energy
    from papers.core.errors import PapersError

    water = embed_conformer(parse_smiles("O"), seed=0)
    relaxed = angle_bend_energy(water)
    conf = water.GetConformer()
    rdMolTransforms.SetAngleRad(conf, 1, 0, 2, 2.6)  # open the H-O-H angle far beyond ~104°
    assert 0.0 <= relaxed < 0.5 and angle_bend_energy(water) > relaxed + 1.0
    with pytest.raises(PapersError, match="MMFF94 has no parameters"):
        angle_bend_energy(embed_conformer(parse_smiles("[Xe]"), seed=0))


def test_smoke_run_is_deterministic(run_smoke):
    from papers.chem.dimenet import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert untimed(result.metrics) == untimed(again.metrics)
    assert result.metrics["molecules"] == 24
    assert result.metrics["dimenet_parameters"] == result.metrics["distance_only_parameters"]
    assert len(result.checks) == 2 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == ["figures/curves_parity.png", "figures/mae.png"]
    assert {p.stem for p in (run_dir / "stages").glob("*.json")} == {"conformers", "dimenet", "distance_only"}
