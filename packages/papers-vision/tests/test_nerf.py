import math

import pytest
import torch
from papers_testing import untimed

from papers.vision.nerf import (
    NeRF,
    NeRFMLP,
    Sphere,
    SphereScene,
    camera_rays,
    compositing_weights,
    encoded_dim,
    focal_length,
    look_at,
    orbit_cameras,
    positional_encoding,
    psnr,
    ray_sphere_intersect,
    sample_pdf,
    stratified_samples,
    volume_render,
)

F64 = torch.float64


def test_positional_encoding_shapes_and_values():
    x = torch.tensor([[0.25, -0.5, 1.0]], dtype=F64)
    g = positional_encoding(x, 3)
    assert g.shape == (1, encoded_dim(3, 3)) == (1, 21)
    assert torch.equal(g[:, :3], x)  # the raw input first
    for k in range(3):
        block = g[0, 3 + 6 * k : 9 + 6 * k]
        assert torch.allclose(block[:3], torch.sin(2**k * math.pi * x[0]), atol=1e-15)
        assert torch.allclose(block[3:], torch.cos(2**k * math.pi * x[0]), atol=1e-15)
    assert positional_encoding(torch.zeros(4, 5, 3), 10).shape == (4, 5, 63)  # the paper's γ(x)
    assert positional_encoding(torch.zeros(7, 3), 4, include_input=False).shape == (7, 24)
    assert torch.equal(positional_encoding(x, 0), x)  # L = 0: the no-PE ablation
    with pytest.raises(ValueError, match="n_freqs"):
        positional_encoding(x, -1)
    with pytest.raises(ValueError, match="encodes nothing"):
        positional_encoding(x, 0, include_input=False)


def test_compositing_weights_are_nonnegative_and_sum_to_one_minus_final_transmittance():
    g = torch.Generator().manual_seed(0)
    sigma = (
        torch.rand(50, 16, generator=g, dtype=F64) * 5 * (torch.rand(50, 16, generator=g, dtype=F64) > 0.4)
    )
    deltas = torch.rand(50, 16, generator=g, dtype=F64) * 0.3
    weights, transmittance = compositing_weights(sigma, deltas)
    assert weights.shape == (50, 16) and transmittance.shape == (50, 17)
    assert (weights >= 0).all() and torch.equal(transmittance[:, 0], torch.ones(50, dtype=F64))
    total = weights.sum(-1)
    assert torch.allclose(total, 1 - transmittance[:, -1], atol=1e-12)
    assert (total <= 1 + 1e-12).all()
    assert torch.allclose(transmittance[:, -1], torch.exp(-(sigma * deltas).sum(-1)), atol=1e-14)
    assert (transmittance[:, 1:] <= transmittance[:, :-1]).all()  # non-increasing along the ray


def test_constant_density_transmittance_is_exp_minus_sigma_t():
    sigma_value = 1.7
    t = torch.sort(torch.rand(40, generator=torch.Generator().manual_seed(1), dtype=F64) * 3).values
    deltas = t[1:] - t[:-1]
    _, transmittance = compositing_weights(torch.full_like(deltas, sigma_value), deltas)
    assert torch.allclose(transmittance, torch.exp(-sigma_value * (t - t[0])), rtol=0, atol=1e-14)


def test_volume_render_opaque_and_empty_cases():
    t = torch.linspace(2.0, 6.0, 8, dtype=F64).expand(3, 8)
    rgb = torch.rand(3, 8, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    background = torch.tensor([0.2, 0.4, 0.6], dtype=F64)
    empty = volume_render(torch.zeros(3, 8, dtype=F64), rgb, t, background=background)
    assert torch.allclose(empty["rgb"], background.expand(3, 3)) and torch.equal(
        empty["acc"], torch.zeros(3, dtype=F64)
    )
    sigma = torch.zeros(3, 8, dtype=F64)
    sigma[:, 4] = 1e6  # an opaque wall at sample 4
    wall = volume_render(sigma, rgb, t, background=background)
    assert torch.allclose(wall["rgb"], rgb[:, 4]) and torch.allclose(wall["depth"], t[:, 4])
    assert torch.allclose(wall["acc"], torch.ones(3, dtype=F64))
    with pytest.raises(ValueError, match="sigma"):
        volume_render(sigma, rgb[..., :2], t)


def test_stratified_samples_one_per_bin():
    t = stratified_samples(2.0, 6.0, 500, 8, generator=torch.Generator().manual_seed(0), dtype=F64)
    edges = torch.linspace(2.0, 6.0, 9, dtype=F64)
    assert t.shape == (500, 8)
    assert ((t >= edges[:-1]) & (t <= edges[1:])).all()
    assert torch.allclose(t.mean(0), 0.5 * (edges[:-1] + edges[1:]), atol=0.05)
    assert torch.allclose(
        stratified_samples(2.0, 6.0, 1, 8, perturb=False, dtype=F64)[0], 0.5 * (edges[:-1] + edges[1:])
    )
    with pytest.raises(ValueError, match="far > near"):
        stratified_samples(3.0, 2.0, 1, 4)


def test_inverse_cdf_sampling_reproduces_a_piecewise_constant_pdf():
    bins = torch.tensor([[0.0, 1.0, 1.5, 3.0, 4.0]], dtype=F64)
    weights = torch.tensor([[1.0, 0.0, 3.0, 4.0]], dtype=F64)
    samples = sample_pdf(bins, weights, 200_000, generator=torch.Generator().manual_seed(0), eps=0.0)[0]
    assert samples.shape == (200_000,) and samples.min() >= 0.0 and samples.max() <= 4.0
    counts = torch.histc(samples, bins=4, min=0.0, max=4.0)  # unit-width cells [0,1), [1,2), [2,3), [3,4)
    # expected mass per unit cell: bin 0 → 1/8; [1.5, 3) holds 3/8 uniformly, half of it in [1.5, 2)
    expected = torch.tensor([1 / 8, 3 / 8 / 3, 3 / 8 * 2 / 3, 4 / 8], dtype=F64) * 200_000
    assert torch.allclose(counts.double(), expected, rtol=0.02)
    assert ((samples > 1.0) & (samples < 1.5)).sum() == 0  # no mass on the zero-weight bin
    even = sample_pdf(bins, weights, 8, deterministic=True, eps=0.0)[0]
    assert torch.all(even[1:] > even[:-1])
    # the quantiles of the deterministic draw are exact
    u = torch.linspace(0, 1, 10, dtype=F64)[1:-1]
    cdf = torch.tensor([0, 1 / 8, 1 / 8, 4 / 8, 1], dtype=F64)
    k = torch.searchsorted(cdf, u, right=True)
    exact = bins[0, k - 1] + (u - cdf[k - 1]) / (cdf[k] - cdf[k - 1]) * (bins[0, k] - bins[0, k - 1])
    assert torch.allclose(even, exact)
    with pytest.raises(ValueError, match="disagree"):
        sample_pdf(bins, weights[:, :3], 4)
    with pytest.raises(ValueError, match="non-negative"):
        sample_pdf(bins, -weights, 4)


def test_ray_sphere_intersection_known_cases():
    centre = torch.zeros(3, dtype=F64)
    o = torch.tensor(
        [[0.0, 0.0, -5.0], [0.0, 0.0, -5.0], [0.0, 2.0, -5.0], [0.0, 0.0, 0.0], [0, 0, 5.0]], dtype=F64
    )
    d = torch.tensor(
        [[0.0, 0.0, 1.0], [0.0, 0.6, 0.8], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0, 0, 1.0]], dtype=F64
    )
    t = ray_sphere_intersect(o, d, centre, 1.0)
    assert t[0] == 4.0  # head-on: hits at z = −1
    # oblique: |o + t d|² = 1 → t² − 8 t + 24 = 0 has no root (closest approach 3 > 1): a miss
    assert math.isinf(t[1]) and math.isinf(t[2])
    assert t[3] == 1.0  # from the centre, outwards
    assert math.isinf(t[4])  # the sphere is behind the ray
    grazing = ray_sphere_intersect(
        torch.tensor([0.0, 0.6, -5.0], dtype=F64), torch.tensor([0.0, 0.0, 1.0], dtype=F64), centre, 1.0
    )
    assert torch.isclose(grazing, torch.tensor(5.0 - 0.8, dtype=F64))


def test_scene_renders_shading_and_background():
    scene = SphereScene(
        [Sphere((0.0, 0.0, 0.0), 1.0, (0.5, 0.5, 0.5))],
        light=(0.0, 0.0, -1.0),
        ambient=0.2,
        background=(0.0, 1.0, 0.0),
    )
    o = torch.tensor([[0.0, 0.0, -5.0], [0.0, 3.0, -5.0]], dtype=F64)
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=F64)
    colour, depth = scene.render(o, d)
    assert torch.allclose(colour[0], torch.full((3,), 0.5, dtype=F64))  # n = −z faces the light: full shade
    assert torch.equal(colour[1], torch.tensor([0.0, 1.0, 0.0], dtype=F64)) and math.isinf(depth[1])
    assert depth[0] == 4.0
    with pytest.raises(ValueError, match="radius"):
        Sphere((0, 0, 0), 0.0, (1, 1, 1))


def test_camera_rays_are_unit_norm_and_pass_through_pixel_centres():
    c2w = look_at(torch.tensor([3.0, -2.0, 1.5], dtype=F64))
    R, centre = c2w[:, :3], c2w[:, 3]
    assert torch.allclose(R.T @ R, torch.eye(3, dtype=F64), atol=1e-12)
    assert torch.allclose(R[:, 2], centre / centre.norm())  # looks at the origin along −z
    height, width = 5, 7
    focal = focal_length(width, 40.0)
    o, d = camera_rays(c2w, height, width, focal)
    assert o.shape == d.shape == (height, width, 3)
    assert torch.allclose(d.norm(dim=-1), torch.ones(height, width, dtype=F64), atol=1e-14)
    assert torch.equal(o, centre.expand(height, width, 3))
    cam = d @ R  # directions in camera coordinates
    assert (cam[..., 2] < 0).all()
    column = cam[..., 0] / -cam[..., 2] * focal + width / 2
    row = -cam[..., 1] / -cam[..., 2] * focal + height / 2
    i, j = torch.meshgrid(torch.arange(height, dtype=F64), torch.arange(width, dtype=F64), indexing="ij")
    assert torch.allclose(column, j + 0.5, atol=1e-12) and torch.allclose(row, i + 0.5, atol=1e-12)
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        camera_rays(R, 2, 2, 1.0)
    with pytest.raises(ValueError, match="parallel"):
        look_at(torch.tensor([0.0, 0.0, 2.0]))


def test_orbit_cameras_are_seeded_and_look_at_the_origin():
    cams = orbit_cameras(6, 4.0, generator=torch.Generator().manual_seed(3))
    assert cams.shape == (6, 3, 4)
    assert torch.allclose(cams[:, :, 3].norm(dim=-1), torch.full((6,), 4.0, dtype=F64))
    assert torch.equal(cams, orbit_cameras(6, 4.0, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="elevation"):
        orbit_cameras(2, 4.0, generator=torch.Generator(), elevation=(-10.0, 95.0))


def test_mlp_and_nerf_shapes_gradients_and_determinism():
    def make(**kw):
        torch.manual_seed(0)
        return NeRF(
            near=2.0, far=6.0, n_coarse=8, n_fine=6, pos_freqs=4, dir_freqs=2, width=16, depth=3, skip=2, **kw
        )

    mlp = NeRFMLP(pos_freqs=4, dir_freqs=2, width=16, depth=3, skip=2)
    sigma, rgb = mlp(torch.randn(5, 7, 3), torch.randn(5, 7, 3))
    assert sigma.shape == (5, 7) and rgb.shape == (5, 7, 3) and (sigma >= 0).all()
    assert ((rgb > 0) & (rgb < 1)).all()
    assert mlp.layers[2].in_features == 16 + encoded_dim(3, 4)  # γ(x) concatenated again at the skip
    model = make()
    o = torch.tensor([[0.0, 0.0, 4.0]]).expand(10, 3)
    d = torch.nn.functional.normalize(
        torch.randn(10, 3, generator=torch.Generator().manual_seed(0)) * 0.1 + torch.tensor([0.0, 0.0, -1.0]),
        dim=-1,
    )
    out = model(o, d, generator=torch.Generator().manual_seed(5))
    assert out["coarse"]["weights"].shape == (10, 8) and out["fine"]["weights"].shape == (10, 14)
    assert out["fine"]["rgb"].shape == (10, 3)
    loss = sum(r["rgb"].sum() for r in out.values())
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    again = make()(o, d, generator=torch.Generator().manual_seed(5))
    assert torch.equal(again["fine"]["rgb"], out["fine"]["rgb"])
    assert make(background=None)(o, d, perturb=False)["fine"]["rgb"].shape == (10, 3)
    assert NeRF(near=2.0, far=6.0, n_coarse=4, n_fine=0, width=8, depth=1, skip=0).fine is None
    with pytest.raises(ValueError, match=r"\(R, 3\)"):
        model(o[:, :2], d[:, :2])
    with pytest.raises(ValueError, match="skip"):
        NeRFMLP(depth=2, skip=3)
    with pytest.raises(ValueError, match="far > near"):
        NeRF(near=3.0, far=1.0)


def test_psnr():
    a = torch.zeros(4, 4, 3)
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-4)
    assert math.isinf(psnr(a, a))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("image_size", 0),
        ("steps", 0),
        ("pos_freqs", 0),
        ("n_fine", 0),
        ("skip", 9),
        ("scene_radius", 5.0),
        ("lr", 0.0),
        ("threads", -1),
        ("fov_degrees", 180.0),
        ("lr_final_ratio", 0.0),
        ("density_activation", "exp"),
    ],
)
def test_config_validation(key, value):
    from papers.vision.nerf.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.vision.nerf import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert untimed(result.metrics) == untimed(again.metrics)
    assert len(result.checks) == 4 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == ["figures/held_out_views.png", "figures/psnr_curves.png"]
    assert {p.stem for p in (run_dir / "stages").glob("*.json")} == {"pe", "no_pe", "coarse_only"}
    assert result.metrics["pe_params"] > result.metrics["no_pe_params"]  # the encoded inputs are wider
