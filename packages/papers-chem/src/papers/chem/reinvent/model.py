"""A SMILES language model: the prior and agent of REINVENT, the generator of ORGAN.

    p(x) = Π_{t=1..T} p(x_t | x_<t),  p(· | x_<t) = softmax(W h_t),  h_t = GRU^L(h_{t−1}, emb(x_{t−1}))

with x_0 = ``<s>`` and x_T = ``</s>``; :meth:`SmilesRNN.log_likelihood` is log p(x) summed over the
tokens up to and including ``</s>`` (the pads after it do not count), :meth:`SmilesRNN.sample` draws
sequences token by token (optionally continuing given prefixes, as Monte-Carlo rollouts need) and
:func:`fit_likelihood` trains the model by maximum likelihood on a tokenised corpus.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

PAD_ID, START_ID, END_ID = 0, 1, 2  # as papers.chem.data.Vocabulary numbers them


class SmilesRNN(nn.Module):
    """Embedding, ``layers`` stacked GRUs of width ``hidden``, and a linear map to token logits
    (REINVENT: 3 GRU layers of 1,024 units over a vocabulary of SMILES tokens)."""

    def __init__(self, vocab_size: int, embedding: int = 64, hidden: int = 256, layers: int = 3):
        super().__init__()
        if vocab_size <= END_ID:
            raise ValueError(f"vocab_size must exceed the 3 special tokens, got {vocab_size}")
        for name, value in (("embedding", embedding), ("hidden", hidden), ("layers", layers)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, embedding)
        self.gru = nn.GRU(embedding, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, inputs: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Logits ``[B, T, V]`` of the next token after each input token, and the GRU state."""
        out, state = self.gru(self.embed(inputs), state)
        return self.head(out), state

    def _check_tokens(self, tokens: Tensor) -> None:
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(
                f"tokens must be a [batch, length] LongTensor, got {tuple(tokens.shape)} {tokens.dtype}"
            )
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ValueError(
                f"token ids must lie in [0, {self.vocab_size}), got {tokens.min()}..{tokens.max()}"
            )

    def token_log_probs(self, tokens: Tensor) -> Tensor:
        """log p(x_t | x_<t) for each position ``[B, T]``, zero after the first ``</s>`` (and on pads).

        ``<pad>`` and ``<s>`` are never emitted: the softmax runs over the other tokens only."""
        self._check_tokens(tokens)
        start = torch.full_like(tokens[:, :1], START_ID)
        logits, _ = self(torch.cat([start, tokens[:, :-1]], dim=1))
        log_probs = F.log_softmax(_emittable(logits), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        return torch.where(sequence_mask(tokens).bool(), log_probs, torch.zeros_like(log_probs))

    def log_likelihood(self, tokens: Tensor) -> Tensor:
        """log p(x) of each sequence ``[B]``, counting tokens up to and including the first ``</s>``."""
        return self.token_log_probs(tokens).sum(dim=1)

    @torch.no_grad()
    def sample(
        self,
        count: int,
        max_len: int,
        *,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        prefix: Tensor | None = None,
    ) -> Tensor:
        """``count`` sequences ``[count, max_len]`` drawn token by token from softmax(logits / T).

        After a sequence emits ``</s>`` it is padded. ``prefix`` ``[count, k]`` fixes the first k
        tokens (a rollout continues from them). A sequence that has not ended by ``max_len`` is cut
        there, without ``</s>``."""
        if count < 1 or max_len < 1:
            raise ValueError(f"count and max_len must be >= 1, got {count} and {max_len}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        device = self.head.weight.device
        tokens = torch.full((count, max_len), PAD_ID, dtype=torch.long, device=device)
        done = torch.zeros(count, dtype=torch.bool, device=device)
        state, known = None, 0
        if prefix is not None:
            self._check_tokens(prefix)
            if prefix.shape[0] != count or prefix.shape[1] > max_len:
                raise ValueError(f"prefix must be [{count}, <= {max_len}], got {tuple(prefix.shape)}")
            known = prefix.shape[1]
            tokens[:, :known] = prefix * sequence_mask(prefix).long()
            done = (prefix == END_ID).any(dim=1) | (prefix == PAD_ID).any(dim=1)
        inputs = torch.full((count, 1), START_ID, dtype=torch.long, device=device)
        if known:  # run the prefix through the GRU, then continue from its last token
            _, state = self(torch.cat([inputs, tokens[:, : known - 1]], dim=1))
            inputs = tokens[:, known - 1 : known]
        for t in range(known, max_len):
            logits, state = self(inputs, state)
            probs = F.softmax(_emittable(logits[:, -1]) / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            nxt = torch.where(done, torch.full_like(nxt, PAD_ID), nxt)
            tokens[:, t] = nxt
            done |= nxt == END_ID
            if bool(done.all()):
                break
            inputs = nxt.unsqueeze(1)
        return tokens


def _emittable(logits: Tensor) -> Tensor:
    """Logits with ``<pad>`` and ``<s>`` set to −inf: the model never emits them, so sampling and
    :meth:`SmilesRNN.log_likelihood` use the same distribution over the real tokens and ``</s>``."""
    never = torch.tensor([PAD_ID, START_ID], device=logits.device)
    return logits.index_fill(-1, never, float("-inf"))


def sequence_mask(tokens: Tensor) -> Tensor:
    """1.0 at positions up to and including the first ``</s>``; 0.0 after it and on leading pads."""
    ended_before = torch.cumsum((tokens == END_ID).long(), dim=1) - (tokens == END_ID).long()
    return ((ended_before == 0) & (tokens != PAD_ID)).float()


def fit_likelihood(
    model: SmilesRNN,
    tokens: Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    clip: float = 3.0,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Maximum likelihood with Adam on minibatches of ``tokens``; the mean NLL per molecule at each step.

    A non-finite loss stops training with a clear error before the parameters are touched."""
    if steps < 0 or batch_size < 1 or not lr > 0:
        raise ValueError(f"need steps >= 0, batch_size >= 1 and lr > 0, got {steps}, {batch_size}, {lr}")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        batch = tokens[torch.randint(len(tokens), (batch_size,), generator=generator)]
        loss = -model.log_likelihood(batch).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"likelihood training: non-finite loss {loss.item()} at step {step}")
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
    return losses


def augmented_likelihood_loss(
    agent_log_likelihood: Tensor, prior_log_likelihood: Tensor, score: Tensor, sigma: float
) -> Tensor:
    """REINVENT's loss: mean over the batch of (log P_prior(A) + σ·S(A) − log P_agent(A))².

    The augmented likelihood log P_prior + σ·S is a fixed regression target (no gradient flows into
    the prior or the score); only ``agent_log_likelihood`` carries gradients."""
    _check_batch(agent_log_likelihood, prior_log_likelihood, score)
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    target = (prior_log_likelihood + sigma * score).detach()
    return (target - agent_log_likelihood).pow(2).mean()


def reinforce_loss(agent_log_likelihood: Tensor, score: Tensor) -> Tensor:
    """Plain REINFORCE on the episode's score, no prior: mean of −S(A)·log P_agent(A)."""
    _check_batch(agent_log_likelihood, score)
    return -(score.detach() * agent_log_likelihood).mean()


def _check_batch(*vectors: Tensor) -> None:
    shapes = {tuple(v.shape) for v in vectors}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(
            f"log-likelihoods and scores must be 1-D tensors of one batch size, got {sorted(shapes)}"
        )
