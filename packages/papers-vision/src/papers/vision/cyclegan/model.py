"""CycleGAN's mechanism (Zhu et al. 2017, Sec. 3-4): generators, PatchGAN discriminators, the LSGAN and
cycle-consistency losses, and the history buffer of generated images.

Images live in [-1, 1] (the generator ends in tanh). With G: X → Y, F: Y → X and discriminators D_X,
D_Y, the least-squares adversarial losses (Sec. 4, "Training details") are

    L_GAN(G, D_Y)  for G:    E_x[(D_Y(G(x)) − 1)²]
                   for D_Y:  ½ (E_y[(D_Y(y) − 1)²] + E_x[D_Y(G(x))²])

(D's objective is halved "to slow down the rate at which D learns"), the cycle-consistency loss (Eq. 2)

    L_cyc(G, F) = E_x[‖F(G(x)) − x‖₁] + E_y[‖G(F(y)) − y‖₁]

(``‖·‖₁`` averaged over pixels here), the optional identity loss (Sec. 5.2, photo generation from
paintings) L_id = E_y[‖G(y) − y‖₁] + E_x[‖F(x) − x‖₁], and the full objective (Eq. 3)

    L = L_GAN(G, D_Y) + L_GAN(F, D_X) + λ L_cyc + λ_id L_id,     λ = 10, λ_id = 0.5 λ when used.

The generator is the paper's ResNet generator (c7s1-k, d2k, d4k, R4k × n, u2k, uk, c7s1-C, instance
norm, reflection padding), the discriminator the PatchGAN (C64-C128-C256-C512 with 4 × 4 convolutions,
LeakyReLU 0.2, instance norm from the second layer, a 1-channel output map), both with configurable,
small widths here. :class:`ImagePool` is the buffer of the 50 latest generated images from which the
discriminators are updated (Shrivastava et al. 2017): once full, each query returns a stored image
(replacing it by the new one) with probability ½ and the new image otherwise.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from papers.vision.data import check_images


def lsgan_generator_loss(fake_scores: Tensor) -> Tensor:
    """E[(D(G(x)) − 1)²]: the generator wants its images scored as real (1)."""
    return (fake_scores - 1.0).pow(2).mean()


def lsgan_discriminator_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """½ (E[(D(y) − 1)²] + E[D(G(x))²]): real images to 1, generated ones to 0, halved."""
    return 0.5 * ((real_scores - 1.0).pow(2).mean() + fake_scores.pow(2).mean())


def cycle_consistency_loss(x: Tensor, x_reconstructed: Tensor, y: Tensor, y_reconstructed: Tensor) -> Tensor:
    """‖F(G(x)) − x‖₁ + ‖G(F(y)) − y‖₁, each averaged over its pixels (Eq. 2, without λ)."""
    if x.shape != x_reconstructed.shape or y.shape != y_reconstructed.shape:
        raise ValueError(
            f"reconstructions must match their inputs, got {tuple(x.shape)} vs "
            f"{tuple(x_reconstructed.shape)} and {tuple(y.shape)} vs {tuple(y_reconstructed.shape)}"
        )
    return (x_reconstructed - x).abs().mean() + (y_reconstructed - y).abs().mean()


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """The paper's initialisation: weights of every convolution from N(0, 0.02²), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def freeze(module: nn.Module) -> nn.Module:
    """Put ``module`` in eval mode with ``requires_grad=False`` on every parameter (a frozen judge)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class ResidualBlock(nn.Module):
    """R_k: two 3 × 3 convolutions (reflection padding, instance norm) with a skip connection."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, h: Tensor) -> Tensor:
        return h + self.body(h)


class ResnetGenerator(nn.Module):
    """c{k0}s1-w, d2w, d4w, R4w × ``blocks``, u2w, uw, c{k0}s1-C, tanh (the paper's Appendix 7.2).

    ``(N, C, H, W)`` in [-1, 1] → ``(N, C, H, W)`` in (-1, 1); H and W must be multiples of 4 (two
    stride-2 downsamplings). ``width`` is the paper's k = 64 (reduced here); ``outer_kernel`` its 7.
    """

    def __init__(self, channels: int = 1, *, width: int = 16, blocks: int = 3, outer_kernel: int = 7):
        super().__init__()
        if width < 1 or blocks < 0 or channels < 1:
            raise ValueError(
                f"channels and width must be >= 1 and blocks >= 0, got {channels}, {width}, {blocks}"
            )
        if outer_kernel < 1 or outer_kernel % 2 == 0:
            raise ValueError(f"outer_kernel must be a positive odd int, got {outer_kernel}")
        self.channels = channels
        pad = outer_kernel // 2
        w = width
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(pad),
            nn.Conv2d(channels, w, outer_kernel),
            nn.InstanceNorm2d(w),
            nn.ReLU(True),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
            nn.InstanceNorm2d(2 * w),
            nn.ReLU(True),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1),
            nn.InstanceNorm2d(4 * w),
            nn.ReLU(True),
        ]
        layers += [ResidualBlock(4 * w) for _ in range(blocks)]
        layers += [
            nn.ConvTranspose2d(4 * w, 2 * w, 3, stride=2, padding=1, output_padding=1),
            nn.InstanceNorm2d(2 * w),
            nn.ReLU(True),
            nn.ConvTranspose2d(2 * w, w, 3, stride=2, padding=1, output_padding=1),
            nn.InstanceNorm2d(w),
            nn.ReLU(True),
            nn.ReflectionPad2d(pad),
            nn.Conv2d(w, channels, outer_kernel),
            nn.Tanh(),
        ]
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, channels=self.channels, name="x")
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError(f"image height and width must be multiples of 4, got {tuple(x.shape[-2:])}")
        return self.net(x)


def patch_output_size(size: int, downsamplings: int) -> int:
    """Side of the PatchGAN score map for a ``size`` input: ``downsamplings`` 4 × 4 stride-2 convs
    (padding 1) halve it, then two 4 × 4 stride-1 convs (padding 1) take one off each."""
    for _ in range(downsamplings):
        size = (size + 2 - 4) // 2 + 1
    return size - 2


class PatchDiscriminator(nn.Module):
    """PatchGAN: C_w (no norm), C_2w, ... (``downsamplings`` 4 × 4 stride-2 layers), then a 4 × 4 stride-1
    layer and a 4 × 4 stride-1 convolution to one score per overlapping patch: ``(N, 1, h, w)``.

    The paper's 70 × 70 PatchGAN is ``downsamplings=3, width=64``; each score judges one patch, so D
    only asks for local realism and the generator must keep the rest of the image plausible.
    """

    def __init__(self, channels: int = 1, *, width: int = 16, downsamplings: int = 2):
        super().__init__()
        if width < 1 or downsamplings < 1 or channels < 1:
            raise ValueError(
                f"channels, width and downsamplings must be >= 1, got {channels}, {width}, {downsamplings}"
            )
        self.channels, self.downsamplings = channels, downsamplings
        layers: list[nn.Module] = [
            nn.Conv2d(channels, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        w = width
        for _ in range(downsamplings - 1):
            layers += [
                nn.Conv2d(w, 2 * w, 4, stride=2, padding=1),
                nn.InstanceNorm2d(2 * w),
                nn.LeakyReLU(0.2, True),
            ]
            w *= 2
        layers += [
            nn.Conv2d(w, 2 * w, 4, stride=1, padding=1),
            nn.InstanceNorm2d(2 * w),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * w, 1, 4, stride=1, padding=1),
        ]
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, images: Tensor) -> Tensor:
        check_images(images, channels=self.channels, name="images")
        side = min(
            patch_output_size(images.shape[-2], self.downsamplings),
            patch_output_size(images.shape[-1], self.downsamplings),
        )
        if side < 1:
            raise ValueError(
                f"images {tuple(images.shape[-2:])} are too small for {self.downsamplings} downsamplings"
            )
        return self.net(images)


class ImagePool:
    """The history of generated images the discriminator is trained on (size 50 in the paper).

    ``query(images)`` goes image by image: while fewer than ``size`` are stored, the image is stored and
    returned; afterwards, with probability ½ a uniformly chosen stored image is returned and replaced by
    the new one, otherwise the new image is returned and the buffer is left as it is. ``size=0``
    disables the buffer (the newest images are returned). Images are stored detached.
    """

    def __init__(self, size: int = 50, *, generator: torch.Generator | None = None):
        if size < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        self.size, self.generator = size, generator
        self.images: list[Tensor] = []

    def __len__(self) -> int:
        return len(self.images)

    def query(self, images: Tensor) -> Tensor:
        check_images(images)
        images = images.detach()
        if self.size == 0:
            return images
        out = []
        for image in images:
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand((), generator=self.generator).item() < 0.5:
                index = int(torch.randint(self.size, (), generator=self.generator))
                out.append(self.images[index])
                self.images[index] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)


class CycleGAN(nn.Module):
    """G: X → Y and F: Y → X with their discriminators D_Y and D_X, and the losses of Eq. 3.

    ``lambda_cycle=0`` (and ``lambda_identity=0``) is the paper's "GAN alone" ablation. Use
    ``generator_step`` for the loss of G and F (one optimiser over both, as in the paper) and
    ``discriminator_loss`` for D_X and D_Y on (pooled) generated images.
    """

    def __init__(
        self,
        channels: int = 1,
        *,
        gen_width: int = 16,
        gen_blocks: int = 3,
        outer_kernel: int = 7,
        disc_width: int = 16,
        disc_downsamplings: int = 2,
        lambda_cycle: float = 10.0,
        lambda_identity: float = 0.0,
    ):
        super().__init__()
        if lambda_cycle < 0 or lambda_identity < 0:
            raise ValueError(
                f"lambda_cycle and lambda_identity must be >= 0, got {lambda_cycle}, {lambda_identity}"
            )
        gen = dict(width=gen_width, blocks=gen_blocks, outer_kernel=outer_kernel)
        disc = dict(width=disc_width, downsamplings=disc_downsamplings)
        self.G, self.F = ResnetGenerator(channels, **gen), ResnetGenerator(channels, **gen)
        self.D_X, self.D_Y = PatchDiscriminator(channels, **disc), PatchDiscriminator(channels, **disc)
        self.lambda_cycle, self.lambda_identity = lambda_cycle, lambda_identity

    def generator_parameters(self):
        return [*self.G.parameters(), *self.F.parameters()]

    def discriminator_parameters(self):
        return [*self.D_X.parameters(), *self.D_Y.parameters()]

    def generator_step(self, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float], Tensor, Tensor]:
        """(total loss of G and F, its parts as floats, G(x), F(y)). The cycle and identity terms are
        computed (and reported) even when their weight is 0."""
        fake_y, fake_x = self.G(x), self.F(y)
        adv_g = lsgan_generator_loss(self.D_Y(fake_y))
        adv_f = lsgan_generator_loss(self.D_X(fake_x))
        cycle = cycle_consistency_loss(x, self.F(fake_y), y, self.G(fake_x))
        total = adv_g + adv_f + self.lambda_cycle * cycle
        parts = {"adv_G": adv_g.item(), "adv_F": adv_f.item(), "cycle": cycle.item()}
        if self.lambda_identity > 0:
            identity = (self.G(y) - y).abs().mean() + (self.F(x) - x).abs().mean()
            total = total + self.lambda_identity * identity
            parts["identity"] = identity.item()
        parts["total_G"] = total.item()
        return total, parts, fake_y, fake_x

    def discriminator_loss(self, x: Tensor, y: Tensor, fake_x: Tensor, fake_y: Tensor) -> tuple[Tensor, dict]:
        """L_GAN for D_Y (real y vs generated y) plus for D_X, generated images detached."""
        d_y = lsgan_discriminator_loss(self.D_Y(y), self.D_Y(fake_y.detach()))
        d_x = lsgan_discriminator_loss(self.D_X(x), self.D_X(fake_x.detach()))
        return d_x + d_y, {"D_X": d_x.item(), "D_Y": d_y.item()}
