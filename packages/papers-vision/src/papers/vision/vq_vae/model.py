"""VQ-VAE (van den Oord, Vinyals, Kavukcuoglu 2017, Sec. 3 and Appendix A.1), a Gaussian VAE baseline
and a small autoregressive prior over the code grid.

Vector quantisation of an encoder output ``z_e`` of shape ``(N, D, H, W)`` with a codebook ``e`` of
shape ``(K, D)``: every position's D-vector is replaced by its nearest code (Eq. 1-2),

    k(n, h, w) = argmin_j ||z_e[n, :, h, w] − e_j||²,   z_q[n, :, h, w] = e_k

the decoder sees ``z_e + sg(z_q − z_e)`` (forward value z_q, gradient copied straight through to z_e),
and the loss is (Eq. 3, with the squared norms taken as means over the elements)

    L = recon(x, dec(z_q)) + ||sg(z_e) − e||² + β ||z_e − sg(e)||²,   β = 0.25

In the EMA variant (Appendix A.1) the codebook term is dropped and the codes follow exponential moving
averages of the encoder outputs assigned to them (decay γ = 0.99):

    N_i ← γ N_i + (1 − γ) n_i,    m_i ← γ m_i + (1 − γ) Σ_{k(·)=i} z_e,    e_i = m_i / Ñ_i

with Laplace-smoothed counts ``Ñ_i = (N_i + ε) / (Σ_j N_j + K ε) · Σ_j N_j`` (ε = 1e-5) so that an
unused code does not divide by zero. ``N`` starts at 1 and ``m`` at the initial codes, so a code that
is never picked stays where it was initialised.

Codebook usage is summarised by the perplexity ``exp(−Σ_i p_i log p_i)`` of the code frequencies ``p``:
K for uniform use of all codes, 1 when a single code is used.

The prior is a small causal transformer over the flattened (row-major) code grid: its output at
position i is the distribution of code i given codes 0 … i−1 (a start token stands in front), so
``log p(codes) = Σ_i log p(c_i | c_<i)``. (The paper uses a PixelCNN; a causal transformer is the
same factorisation.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ---------------------------------------------------------------------------------------------------
# quantisation


def _check_latents(z_e: Tensor, codebook: Tensor) -> None:
    if codebook.dim() != 2:
        raise ValueError(f"codebook must have shape (K, D), got {tuple(codebook.shape)}")
    if z_e.dim() != 4 or z_e.shape[1] != codebook.shape[1]:
        raise ValueError(
            f"z_e must have shape (N, D={codebook.shape[1]}, H, W) to match the codebook, "
            f"got {tuple(z_e.shape)}"
        )


def flatten_latents(z: Tensor) -> Tensor:
    """``(N, D, H, W)`` → ``(N·H·W, D)``, positions in (n, h, w) order."""
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def nearest_codes(z_e: Tensor, codebook: Tensor) -> Tensor:
    """Indices ``(N, H, W)`` of the nearest code (squared Euclidean distance) at every position."""
    _check_latents(z_e, codebook)
    flat = flatten_latents(z_e)
    distances = flat.pow(2).sum(1, keepdim=True) - 2.0 * flat @ codebook.t() + codebook.pow(2).sum(1)[None, :]
    n, _, h, w = z_e.shape
    return distances.argmin(1).view(n, h, w)


def lookup(indices: Tensor, codebook: Tensor) -> Tensor:
    """Codes for indices ``(N, H, W)`` as latents ``(N, D, H, W)``."""
    if indices.dim() != 3 or indices.dtype != torch.long:
        raise ValueError(
            f"indices must be a long tensor of shape (N, H, W), got {indices.dtype} {tuple(indices.shape)}"
        )
    if indices.numel() and not 0 <= int(indices.min()) <= int(indices.max()) < len(codebook):
        raise ValueError(f"indices must lie in [0, {len(codebook)})")
    return codebook[indices].permute(0, 3, 1, 2).contiguous()


def quantize(z_e: Tensor, codebook: Tensor) -> tuple[Tensor, Tensor]:
    """``(z_q, indices)``: the nearest code at every position (Eq. 1-2); no gradient trick applied."""
    indices = nearest_codes(z_e, codebook)
    return lookup(indices, codebook), indices


def straight_through(z_e: Tensor, z_q: Tensor) -> Tensor:
    """``z_e + sg(z_q − z_e)``: the value of z_q, whose gradient reaches z_e unchanged."""
    return z_e + (z_q - z_e).detach()


def vq_losses(z_e: Tensor, z_q: Tensor) -> tuple[Tensor, Tensor]:
    """``(codebook, commitment)`` = ``(mean ||sg(z_e) − z_q||², mean ||z_e − sg(z_q)||²)``."""
    return F.mse_loss(z_q, z_e.detach()), F.mse_loss(z_e, z_q.detach())


def code_counts(indices: Tensor, num_codes: int) -> Tensor:
    return torch.bincount(indices.flatten(), minlength=num_codes).to(torch.float64)


def perplexity(indices: Tensor, num_codes: int) -> float:
    """``exp(H(p))`` of the code frequencies ``p`` of ``indices`` (any shape, values in [0, K))."""
    if indices.numel() == 0:
        raise ValueError("perplexity needs at least one index")
    if not 0 <= int(indices.min()) <= int(indices.max()) < num_codes:
        raise ValueError(f"indices must lie in [0, {num_codes})")
    return perplexity_of_counts(code_counts(indices, num_codes))


def perplexity_of_counts(counts: Tensor) -> float:
    p = counts / counts.sum()
    p = p[p > 0]
    return math.exp(float(-(p * p.log()).sum()))


def ema_update(
    flat_z: Tensor, indices: Tensor, counts: Tensor, sums: Tensor, *, decay: float, epsilon: float
) -> tuple[Tensor, Tensor, Tensor]:
    """One EMA step (Appendix A.1): ``(new counts N, new sums m, new codebook m / Ñ)``.

    ``flat_z`` is ``(M, D)`` encoder outputs, ``indices`` their ``(M,)`` codes, ``counts`` ``(K,)`` and
    ``sums`` ``(K, D)`` the running averages.
    """
    num_codes = len(counts)
    onehot = F.one_hot(indices.flatten(), num_codes).to(flat_z.dtype)
    new_counts = decay * counts + (1.0 - decay) * onehot.sum(0)
    new_sums = decay * sums + (1.0 - decay) * onehot.t() @ flat_z
    total = new_counts.sum()
    smoothed = (new_counts + epsilon) / (total + num_codes * epsilon) * total
    return new_counts, new_sums, new_sums / smoothed[:, None]


@dataclass
class VQOutput:
    z_q: Tensor  # straight-through latents for the decoder (value z_q, gradient to z_e)
    indices: Tensor  # (N, H, W)
    loss: Tensor  # codebook + β commitment (β commitment only for EMA)
    codebook_loss: Tensor
    commitment_loss: Tensor


class VectorQuantizer(nn.Module):
    """Nearest-code quantiser with the codebook loss (``ema=False``) or EMA codebook updates."""

    def __init__(
        self,
        num_codes: int,
        dim: int,
        *,
        beta: float = 0.25,
        ema: bool = False,
        decay: float = 0.99,
        epsilon: float = 1e-5,
    ):
        super().__init__()
        if num_codes < 1 or dim < 1:
            raise ValueError(f"num_codes and dim must be >= 1, got {num_codes} and {dim}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        self.num_codes, self.dim, self.beta = num_codes, dim, beta
        self.ema, self.decay, self.epsilon = ema, decay, epsilon
        initial = torch.empty(num_codes, dim).uniform_(-1.0 / num_codes, 1.0 / num_codes)
        if ema:
            self.register_buffer("embedding", initial)
            self.register_buffer("ema_count", torch.ones(num_codes))
            self.register_buffer("ema_sum", initial.clone())
        else:
            self.embedding = nn.Parameter(initial)

    @property
    def codebook(self) -> Tensor:
        return self.embedding

    def forward(self, z_e: Tensor) -> VQOutput:
        z_q, indices = quantize(z_e, self.embedding)
        codebook_loss, commitment_loss = vq_losses(z_e, z_q)
        if self.ema:
            if self.training:
                with torch.no_grad():
                    counts, sums, codes = ema_update(
                        flatten_latents(z_e.detach()),
                        indices,
                        self.ema_count,
                        self.ema_sum,
                        decay=self.decay,
                        epsilon=self.epsilon,
                    )
                    self.ema_count.copy_(counts)
                    self.ema_sum.copy_(sums)
                    self.embedding.copy_(codes)
            loss = self.beta * commitment_loss
        else:
            loss = codebook_loss + self.beta * commitment_loss
        return VQOutput(straight_through(z_e, z_q), indices, loss, codebook_loss, commitment_loss)


# ---------------------------------------------------------------------------------------------------
# encoder, decoder, VQ-VAE and the Gaussian VAE


class ResidualBlock(nn.Module):
    """``x + conv1x1(relu(conv3x3(relu(x))))`` (the paper's residual block)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv3 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv1(F.relu(self.conv3(F.relu(x))))


class Encoder(nn.Module):
    """``(N, 1, S, S)`` → ``(N, out, S/4, S/4)``: two 4×4 stride-2 convs, a residual block, a 1×1 conv."""

    def __init__(self, out_channels: int, hidden: int = 32, in_channels: int = 1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), ResidualBlock(hidden), nn.ReLU(),
            nn.Conv2d(hidden, out_channels, 1),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """``(N, D, S/4, S/4)`` → ``(N, 1, S, S)``: the encoder mirrored with 4×4 stride-2 transposed convs."""

    def __init__(self, in_channels: int, hidden: int = 32, out_channels: int = 1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1), ResidualBlock(hidden), nn.ReLU(),
            nn.ConvTranspose2d(hidden, hidden, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(hidden, out_channels, 4, stride=2, padding=1),
        )  # fmt: skip

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def _check_input(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 1 or x.shape[-1] % 4 or x.shape[-2] % 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must have shape (N, 1, H, W) with H and W multiples of 4, got {shape}")


class VQVAE(nn.Module):
    """Encoder → vector quantiser → decoder. ``forward(x)`` returns ``(reconstruction, VQOutput)``."""

    def __init__(
        self,
        *,
        num_codes: int = 32,
        code_dim: int = 16,
        hidden: int = 32,
        beta: float = 0.25,
        ema: bool = False,
        decay: float = 0.99,
        epsilon: float = 1e-5,
    ):
        super().__init__()
        self.encoder = Encoder(code_dim, hidden)
        self.quantizer = VectorQuantizer(
            num_codes, code_dim, beta=beta, ema=ema, decay=decay, epsilon=epsilon
        )
        self.decoder = Decoder(code_dim, hidden)

    def forward(self, x: Tensor) -> tuple[Tensor, VQOutput]:
        _check_input(x)
        vq = self.quantizer(self.encoder(x))
        return self.decoder(vq.z_q), vq

    def encode(self, x: Tensor) -> Tensor:
        """Code indices ``(N, H/4, W/4)``."""
        _check_input(x)
        return nearest_codes(self.encoder(x), self.quantizer.codebook)

    def decode(self, indices: Tensor) -> Tensor:
        return self.decoder(lookup(indices, self.quantizer.codebook))


class GaussianVAE(nn.Module):
    """The continuous baseline: the same encoder (2D output channels: mean and log-variance) and decoder,
    a standard normal prior on the ``(D, H/4, W/4)`` latent and a Gaussian decoder ``N(x̂, σ² I)`` whose
    single variance is set to its maximum-likelihood value, the batch's mean squared error (held
    constant in the gradient; the "optimal σ" of Rybkin et al. 2021), so the reconstruction / KL balance
    is not a hand-set weight. ``loss(x)`` is the negative ELBO per pixel (nats)."""

    def __init__(self, *, latent_dim: int = 16, hidden: int = 32):
        super().__init__()
        self.encoder = Encoder(2 * latent_dim, hidden)
        self.decoder = Decoder(latent_dim, hidden)
        self.register_buffer("sigma", torch.ones(()))  # the last training batch's σ, for reporting

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _check_input(x)
        mean, log_var = self.encoder(x).chunk(2, dim=1)
        return mean, log_var

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(reconstruction from a sampled z, mean, log_var)``."""
        mean, log_var = self.posterior(x)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
        return self.decoder(z), mean, log_var

    def reconstruct(self, x: Tensor) -> Tensor:
        """Decoded posterior mean."""
        return self.decoder(self.posterior(x)[0])

    def loss(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(negative ELBO per pixel, squared error per pixel, KL per image in nats)``."""
        recon, mean, log_var = self(x)
        sq = (recon - x).pow(2)
        variance = sq.mean().detach().clamp_min(1e-8)
        if self.training:
            self.sigma.copy_(variance.sqrt())
        nll = 0.5 * sq / variance + 0.5 * torch.log(2 * math.pi * variance)
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var).flatten(1).sum(1)
        pixels = x[0].numel()
        return nll.flatten(1).sum(1).add(kl).mean() / pixels, sq.mean(), kl.mean()


# ---------------------------------------------------------------------------------------------------
# the autoregressive prior


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        n, length, width = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(n, length, width))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = CausalSelfAttention(width, heads)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.dropout(self.attention(self.norm1(x)))
        return x + self.dropout(self.mlp(self.norm2(x)))


class CodePrior(nn.Module):
    """Causal transformer over ``length`` codes in [0, K). ``forward(codes (N, L))`` gives logits
    ``(N, L, K)`` where position i sees only codes < i (a start token is prepended, the last code
    dropped). ``dropout`` acts on the embeddings and every residual branch in training mode."""

    def __init__(
        self,
        *,
        num_codes: int,
        length: int,
        width: int = 64,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        if width % heads:
            raise ValueError(f"width must be divisible by heads, got {width} and {heads}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = nn.Dropout(dropout)
        self.num_codes, self.length = num_codes, length
        self.tokens = nn.Embedding(num_codes + 1, width)  # the last token is the start token
        self.positions = nn.Parameter(torch.zeros(length, width))
        nn.init.normal_(self.positions, std=0.02)
        self.blocks = nn.ModuleList(Block(width, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_codes)

    def _check(self, codes: Tensor) -> None:
        if codes.dim() != 2 or codes.dtype != torch.long or codes.shape[1] > self.length:
            raise ValueError(
                f"codes must be a long tensor of shape (N, L <= {self.length}), "
                f"got {codes.dtype} {tuple(codes.shape)}"
            )
        if codes.numel() and not 0 <= int(codes.min()) <= int(codes.max()) < self.num_codes:
            raise ValueError(f"codes must lie in [0, {self.num_codes})")

    def forward(self, codes: Tensor) -> Tensor:
        self._check(codes)
        start = torch.full((len(codes), 1), self.num_codes, dtype=torch.long, device=codes.device)
        inputs = torch.cat([start, codes[:, :-1]], dim=1) if codes.shape[1] else start[:, :0]
        h = self.dropout(self.tokens(inputs) + self.positions[: inputs.shape[1]])
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))

    def nll_bits(self, codes: Tensor) -> Tensor:
        """Negative log-likelihood per code in bits, one value per sequence ``(N,)``."""
        logits = self(codes)
        nats = F.cross_entropy(logits.transpose(1, 2), codes, reduction="none").mean(1)
        return nats / math.log(2.0)

    @torch.no_grad()
    def sample(
        self, count: int, *, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> Tensor:
        """``count`` code sequences ``(count, L)`` drawn one position at a time."""
        if count < 1 or temperature <= 0:
            raise ValueError(f"count must be >= 1 and temperature > 0, got {count} and {temperature}")
        device = self.head.weight.device
        codes = torch.zeros(count, 0, dtype=torch.long, device=device)
        for _ in range(self.length):
            padded = torch.cat([codes, torch.zeros(count, 1, dtype=torch.long, device=device)], dim=1)
            probs = F.softmax(self(padded)[:, -1] / temperature, dim=-1)
            codes = torch.cat([codes, torch.multinomial(probs, 1, generator=generator)], dim=1)
        return codes


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
