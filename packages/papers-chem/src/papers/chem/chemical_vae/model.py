"""The chemical VAE: a SMILES tokenizer, a 1-D CNN encoder, a GRU decoder and a property MLP on z.

    q(z | x) = N(μ(x), diag σ²(x)),   z = μ + σ ⊙ ε,  ε ~ N(0, I)           (reparameterisation)
    KL(q ‖ N(0, I)) = −½ Σ_j (1 + log σ²_j − μ_j² − σ²_j)
    p(x | z) = Π_t softmax(W h_t)[x_t],  h_t = GRU(h_{t−1}, [z, emb(x_{t−1})]),  h_0 = tanh(W_0 z)
    L = CE(x, p(x | z)) + β(step) · KL + λ · ‖f(z) − y‖²                   (f = property MLP)

The encoder reads one-hot tokens (padded to ``max_len`` with the pad token) through three Conv1d
layers and a dense layer, as in the paper's ZINC model; the decoder is a GRU fed the latent vector at
every step (teacher forcing while training, greedy or sampled decoding afterwards).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from papers.chem.data.smiles import TOKEN_PATTERN, Vocabulary, tokenize  # noqa: F401  (re-exported)


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, diag e^{logvar}) ‖ N(0, I)) per row: −½ Σ (1 + logvar − μ² − e^{logvar})."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """z = μ + exp(½ logvar) ⊙ ε with ε ~ N(0, I): differentiable in μ and logvar."""
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    return mu + (0.5 * logvar).exp() * eps


def kl_weight(step: int, *, start: int, length: int, beta: float = 1.0) -> float:
    """The annealed KL weight: 0 until ``start``, then a sigmoid ramp to ``beta`` over ``length`` steps."""
    if length <= 0:
        return beta if step >= start else 0.0
    x = (step - start - length / 2) / (length / 10)
    return beta / (1 + torch.exp(torch.tensor(-x)).item()) if step >= start else 0.0


class Encoder(nn.Module):
    """One-hot tokens [B, T] → three Conv1d + ReLU → flatten → dense → (μ, logvar) [B, latent]."""

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        *,
        latent: int = 32,
        channels: Sequence[int] = (9, 9, 10),
        kernels: Sequence[int] = (9, 9, 11),
        hidden: int = 196,
    ):
        super().__init__()
        if len(channels) != len(kernels):
            raise ValueError(f"channels {channels} and kernels {kernels} differ in length")
        layers, c_in, length = [], vocab_size, max_len
        for c, k in zip(channels, kernels, strict=True):
            layers += [nn.Conv1d(c_in, c, k), nn.ReLU()]
            c_in, length = c, length - k + 1
        if length < 1:
            raise ValueError(f"max_len {max_len} is shorter than the receptive field of kernels {kernels}")
        self.vocab_size, self.max_len = vocab_size, max_len
        self.convs = nn.Sequential(*layers)
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(c_in * length, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        if tokens.dim() != 2 or tokens.shape[1] != self.max_len:
            raise ValueError(f"tokens must have shape [batch, {self.max_len}], got {tuple(tokens.shape)}")
        x = nn.functional.one_hot(tokens, self.vocab_size).float().transpose(1, 2)
        h = self.dense(self.convs(x))
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    """GRU over [z, emb(previous token)] with h_0 = tanh(W_0 z) → logits over the vocabulary."""

    def __init__(
        self, vocab_size: int, *, latent: int = 32, hidden: int = 256, embed: int = 32, layers: int = 1
    ):
        super().__init__()
        self.vocab_size, self.latent = vocab_size, latent
        self.embed = nn.Embedding(vocab_size, embed)
        self.init = nn.Linear(latent, hidden * layers)
        self.gru = nn.GRU(latent + embed, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, vocab_size)
        self.layers, self.hidden = layers, hidden

    def initial_state(self, z: Tensor) -> Tensor:
        return (
            torch.tanh(self.init(z)).view(z.shape[0], self.layers, self.hidden).transpose(0, 1).contiguous()
        )

    def forward(self, z: Tensor, tokens: Tensor) -> Tensor:
        """Teacher forcing: logits [B, T, V] for ``tokens`` [B, T], step t fed token t−1 (``<s>`` first)."""
        if z.dim() != 2 or z.shape[1] != self.latent:
            raise ValueError(f"z must have shape [batch, {self.latent}], got {tuple(z.shape)}")
        if tokens.dim() != 2 or tokens.shape[0] != z.shape[0]:
            raise ValueError(f"tokens must have shape [{z.shape[0]}, T], got {tuple(tokens.shape)}")
        previous = torch.cat([torch.full_like(tokens[:, :1], 1), tokens[:, :-1]], dim=1)  # 1 = <s>
        inputs = torch.cat([z[:, None].expand(-1, tokens.shape[1], -1), self.embed(previous)], dim=-1)
        h, _ = self.gru(inputs, self.initial_state(z))
        return self.out(h)

    @torch.no_grad()
    def generate(
        self, z: Tensor, max_len: int, *, temperature: float = 0.0, generator: torch.Generator | None = None
    ) -> Tensor:
        """Token ids [B, max_len]: greedy (``temperature`` 0) or sampled from softmax(logits / T)."""
        state = self.initial_state(z)
        token = torch.full((z.shape[0],), 1, dtype=torch.long, device=z.device)
        out = []
        for _ in range(max_len):
            inputs = torch.cat([z, self.embed(token)], dim=-1)[:, None]
            h, state = self.gru(inputs, state)
            logits = self.out(h[:, 0])
            if temperature > 0:
                probs = torch.softmax(logits / temperature, dim=-1)
                token = torch.multinomial(probs, 1, generator=generator)[:, 0]
            else:
                token = logits.argmax(-1)
            out.append(token)
        return torch.stack(out, dim=1)


class ChemicalVAE(nn.Module):
    """Encoder, decoder and (optionally) a property MLP z → y trained jointly."""

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        *,
        latent: int = 32,
        n_properties: int = 1,
        property_head: bool = True,
        encoder_hidden: int = 196,
        decoder_hidden: int = 256,
        property_hidden: int = 64,
        channels: Sequence[int] = (9, 9, 10),
        kernels: Sequence[int] = (9, 9, 11),
    ):
        super().__init__()
        self.max_len = max_len
        self.encoder = Encoder(
            vocab_size, max_len, latent=latent, channels=channels, kernels=kernels, hidden=encoder_hidden
        )
        self.decoder = Decoder(vocab_size, latent=latent, hidden=decoder_hidden)
        self.property = (
            nn.Sequential(
                nn.Linear(latent, property_hidden), nn.Tanh(), nn.Linear(property_hidden, n_properties)
            )
            if property_head
            else None
        )

    def loss(
        self,
        tokens: Tensor,
        y: Tensor | None,
        *,
        beta: float,
        property_weight: float,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Per-molecule mean of reconstruction CE (summed over positions), KL and property MSE."""
        mu, logvar = self.encoder(tokens)
        z = reparameterize(mu, logvar, generator)
        logits = self.decoder(z, tokens)
        recon = nn.functional.cross_entropy(logits.transpose(1, 2), tokens, reduction="none").sum(1).mean()
        kl = kl_divergence(mu, logvar).mean()
        total = recon + beta * kl
        prop = torch.zeros((), dtype=total.dtype)
        if self.property is not None and y is not None:
            prop = (self.property(z) - y).pow(2).mean()
            total = total + property_weight * prop
        return {"loss": total, "recon": recon, "kl": kl, "property": prop}
