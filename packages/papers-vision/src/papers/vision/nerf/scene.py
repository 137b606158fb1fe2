"""An analytic toy scene and pinhole cameras: the ground truth the NeRF is fitted to.

Cameras (the NeRF/OpenGL convention): a camera-to-world matrix ``c2w`` (3 × 4) whose columns are the
camera's right, up and backward axes and its centre; the camera looks along −z. Pixel (row i, column j)
of an H × W image with focal length f (in pixels) gets the ray through its centre

    d_cam = ((j + 0.5 − W/2) / f,  −(i + 0.5 − H/2) / f,  −1),     d = R d_cam / |R d_cam|,   o = centre

Scene: opaque spheres (centre c, radius r, albedo) in front of a constant background. A ray o + t d
(|d| = 1) meets a sphere at the smallest positive root of |o + t d − c|² = r²,

    t = −b − √(b² − q),   b = d·(o − c),   q = |o − c|² − r²     (or −b + √(b² − q) from inside)

and the nearest hit over all spheres is shaded Lambertian with a directional light l,

    colour = albedo(x) · (ambient + (1 − ambient) · max(0, n·l)),   n = (x − c) / r

A sphere may carry a checkerboard albedo over its longitude and latitude (high-frequency detail);
rays that hit nothing get the background colour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = [
    "Sphere",
    "SphereScene",
    "camera_rays",
    "default_scene",
    "focal_length",
    "look_at",
    "orbit_cameras",
    "ray_sphere_intersect",
]


@dataclass(frozen=True)
class Sphere:
    """An opaque sphere; ``checker=(n_longitude, n_latitude, second_albedo)`` gives a checkerboard."""

    centre: tuple[float, float, float]
    radius: float
    albedo: tuple[float, float, float]
    checker: tuple[int, int, tuple[float, float, float]] | None = None

    def __post_init__(self) -> None:
        if not self.radius > 0:
            raise ValueError(f"sphere radius must be > 0, got {self.radius}")


def ray_sphere_intersect(origins: Tensor, directions: Tensor, centre: Tensor, radius: float) -> Tensor:
    """Distance t ≥ 0 along each unit-norm ray ``(..., 3)`` to its first hit of the sphere, inf if none."""
    oc = origins - centre
    b = (directions * oc).sum(-1)
    q = (oc * oc).sum(-1) - radius**2
    disc = b * b - q
    root = torch.sqrt(disc.clamp(min=0.0))
    near, far = -b - root, -b + root
    t = torch.where(near >= 0, near, far)  # from inside the sphere the far root is the hit
    inf = torch.full_like(t, math.inf)
    return torch.where((disc >= 0) & (t >= 0), t, inf)


@dataclass
class SphereScene:
    """Spheres lit by one directional light in front of a constant background."""

    spheres: list[Sphere]
    light: tuple[float, float, float] = (1.0, 0.6, 1.2)
    ambient: float = 0.25
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    _light: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.spheres:
            raise ValueError("a scene needs at least one sphere")
        if not 0.0 <= self.ambient <= 1.0:
            raise ValueError(f"ambient must be in [0, 1], got {self.ambient}")
        light = torch.tensor(self.light, dtype=torch.float64)
        self._light = light / light.norm()

    def render(self, origins: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
        """Colour ``(..., 3)`` in [0, 1] and depth ``(...)`` (inf on the background) of each ray."""
        dtype = origins.dtype
        best = torch.full(origins.shape[:-1], math.inf, dtype=dtype)
        colour = torch.tensor(self.background, dtype=dtype).expand(*origins.shape[:-1], 3).clone()
        light = self._light.to(dtype)
        for sphere in self.spheres:
            centre = torch.tensor(sphere.centre, dtype=dtype)
            t = ray_sphere_intersect(origins, directions, centre, sphere.radius)
            closer = t < best
            if not closer.any():
                continue
            point = origins + torch.where(closer, t, 0.0)[..., None] * directions
            normal = (point - centre) / sphere.radius
            albedo = torch.tensor(sphere.albedo, dtype=dtype).expand_as(point)
            if sphere.checker is not None:
                n_lon, n_lat, second = sphere.checker
                lon = torch.atan2(normal[..., 1], normal[..., 0])  # (−π, π]
                lat = torch.asin(normal[..., 2].clamp(-1.0, 1.0))  # [−π/2, π/2]
                cell = torch.floor(lon / (2 * math.pi) * n_lon) + torch.floor(lat / math.pi * n_lat)
                odd = (cell.remainder(2) == 1)[..., None]
                albedo = torch.where(odd, torch.tensor(second, dtype=dtype), albedo)
            shade = self.ambient + (1.0 - self.ambient) * (normal @ light).clamp(min=0.0)
            colour = torch.where(closer[..., None], albedo * shade[..., None], colour)
            best = torch.where(closer, t, best)
        return colour.clamp(0.0, 1.0), best


def default_scene() -> SphereScene:
    """Four spheres within radius 1.1 of the origin, the largest with an 8 × 4 checkerboard."""
    return SphereScene(
        spheres=[
            Sphere((0.0, 0.0, 0.0), 0.55, (0.95, 0.8, 0.1), checker=(8, 4, (0.35, 0.1, 0.6))),
            Sphere((0.62, 0.45, -0.25), 0.3, (0.9, 0.15, 0.1)),
            Sphere((-0.55, 0.5, 0.2), 0.28, (0.1, 0.75, 0.2)),
            Sphere((0.05, -0.7, 0.35), 0.25, (0.1, 0.3, 0.95)),
        ]
    )


def look_at(eye: Tensor, target: Tensor | None = None, up: Tensor | None = None) -> Tensor:
    """The camera-to-world ``(3, 4)`` matrix of a camera at ``eye`` looking at ``target`` (the origin)."""
    eye = torch.as_tensor(eye, dtype=torch.float64)
    target = torch.zeros(3, dtype=eye.dtype) if target is None else torch.as_tensor(target, dtype=eye.dtype)
    up = (
        torch.tensor([0.0, 0.0, 1.0], dtype=eye.dtype) if up is None else torch.as_tensor(up, dtype=eye.dtype)
    )
    forward = target - eye
    if forward.norm() == 0:
        raise ValueError("look_at: eye and target coincide")
    forward = forward / forward.norm()
    right = torch.linalg.cross(forward, up)
    if right.norm() < 1e-8:
        raise ValueError("look_at: the view direction is parallel to up")
    right = right / right.norm()
    true_up = torch.linalg.cross(right, forward)
    return torch.stack([right, true_up, -forward, eye], dim=1)


def focal_length(width: int, fov_degrees: float) -> float:
    """Focal length in pixels of a horizontal field of view."""
    return 0.5 * width / math.tan(math.radians(fov_degrees) / 2)


def camera_rays(c2w: Tensor, height: int, width: int, focal: float) -> tuple[Tensor, Tensor]:
    """Origins and unit directions ``(H, W, 3)`` of the rays through the pixel centres (module docstring)."""
    c2w = torch.as_tensor(c2w)
    if c2w.shape != (3, 4):
        raise ValueError(f"c2w must have shape (3, 4), got {tuple(c2w.shape)}")
    if height < 1 or width < 1 or not focal > 0:
        raise ValueError(
            f"camera_rays: need height, width >= 1 and focal > 0, got {height}, {width}, {focal}"
        )
    i, j = torch.meshgrid(
        torch.arange(height, dtype=c2w.dtype), torch.arange(width, dtype=c2w.dtype), indexing="ij"
    )
    d_cam = torch.stack(
        [(j + 0.5 - width / 2) / focal, -(i + 0.5 - height / 2) / focal, -torch.ones_like(i)], dim=-1
    )
    directions = d_cam @ c2w[:, :3].T
    directions = directions / directions.norm(dim=-1, keepdim=True)
    return c2w[:, 3].expand(height, width, 3).clone(), directions


def orbit_cameras(
    count: int, radius: float, *, generator: torch.Generator, elevation: tuple[float, float] = (-20.0, 60.0)
) -> Tensor:
    """``count`` camera-to-world matrices ``(count, 3, 4)`` on a sphere of ``radius`` looking at the origin,
    at uniformly random azimuths and elevations (degrees) in ``elevation``."""
    if count < 1 or not radius > 0:
        raise ValueError(f"orbit_cameras: need count >= 1 and radius > 0, got {count}, {radius}")
    azimuth = torch.rand(count, generator=generator, dtype=torch.float64) * 2 * math.pi
    low, high = (math.radians(e) for e in elevation)
    if not -math.pi / 2 < low <= high < math.pi / 2:
        raise ValueError(f"elevation must lie strictly within (-90, 90) degrees, got {elevation}")
    # uniform on the sphere's band: sin(elevation) uniform
    s = math.sin(low) + torch.rand(count, generator=generator, dtype=torch.float64) * (
        math.sin(high) - math.sin(low)
    )
    elev = torch.asin(s)
    eyes = radius * torch.stack(
        [torch.cos(elev) * torch.cos(azimuth), torch.cos(elev) * torch.sin(azimuth), torch.sin(elev)], dim=-1
    )
    return torch.stack([look_at(eye) for eye in eyes])
