"""Training examples from token ids: causal LM packing, BERT masking, T5 span corruption, batching.

    pack_causal_lm    documents joined, each followed by EOS, cut into ``block_size`` blocks; ``labels`` is
                      ``input_ids`` shifted left by one (the next token), the last partial block dropped
    mask_tokens       BERT (Devlin et al. 2018, arXiv:1810.04805): each non-special token is chosen with
                      probability 0.15; a chosen token becomes ``<mask>`` 80% of the time, a random
                      ordinary token 10%, stays 10%; ``labels`` holds the chosen tokens, -100 elsewhere
    span_corruption   T5 (Raffel et al. 2019, arXiv:1910.10683): 15% of each sequence in spans of mean
                      length 3, alternating kept and noise spans and ending with noise; each noise span
                      becomes one sentinel in the inputs, and the targets list every sentinel followed by
                      the tokens it replaced (``restore_spans`` undoes it)
    iterate_batches   rows of equal-length tensors in batches, shuffled when a generator is given

All randomness comes from the ``torch.Generator`` passed in, so a seeded generator gives the same examples.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch

IGNORE_INDEX = -100  # label of a position that does not count in the loss (PyTorch's cross-entropy default)


def pack_causal_lm(
    documents: Iterable[Sequence[int]], *, block_size: int, eos_id: int
) -> dict[str, torch.Tensor]:
    """``input_ids`` and ``labels``, both ``(num_blocks, block_size)``, with ``labels[:, t]`` the token
    after ``input_ids[:, t]`` in the EOS-joined stream."""
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    eos = torch.tensor([eos_id])
    stream = torch.cat([piece for document in documents for piece in (torch.as_tensor(document), eos)])
    num_blocks = (len(stream) - 1) // block_size
    if num_blocks < 1:
        raise ValueError(f"{len(stream)} tokens (EOS included) are too few for one block of {block_size} + 1")
    used = num_blocks * block_size
    return {
        "input_ids": stream[:used].view(num_blocks, block_size).long(),
        "labels": stream[1 : used + 1].view(num_blocks, block_size).long(),
    }


def mask_tokens(
    input_ids: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Sequence[int],
    probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, labels)`` for masked language modelling (see the module docstring); special tokens
    (padding included) are never chosen, and random replacements are never special."""
    if not 0 <= probability <= 1:
        raise ValueError(f"probability must be in [0, 1], got {probability}")
    special = torch.tensor(list(special_ids), dtype=input_ids.dtype)
    ordinary = torch.arange(vocab_size)[~torch.isin(torch.arange(vocab_size), special)]
    choosable = ~torch.isin(input_ids, special)
    chosen = (torch.rand(input_ids.shape, generator=generator) < probability) & choosable
    action = torch.rand(input_ids.shape, generator=generator)
    masked = chosen & (action < 0.8)
    randomized = chosen & (action >= 0.8) & (action < 0.9)
    inputs = input_ids.clone()
    inputs[masked] = mask_id
    picks = torch.randint(len(ordinary), (int(randomized.sum()),), generator=generator)
    inputs[randomized] = ordinary[picks].to(inputs.dtype)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    return inputs, labels


def _random_lengths(total: int, num_parts: int, generator: torch.Generator | None) -> list[int]:
    """``num_parts`` positive integers summing to ``total``, cut points drawn uniformly."""
    cuts = (torch.randperm(total - 1, generator=generator)[: num_parts - 1] + 1).sort().values
    bounds = torch.cat([torch.tensor([0]), cuts, torch.tensor([total])])
    return bounds.diff().tolist()


def span_corruption(
    input_ids: torch.Tensor,
    *,
    sentinel_ids: Sequence[int],
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)`` for ``(batch, length)`` ids; every row gets ``round(length * noise_density)``
    noise tokens in ``round(noise / mean_span_length)`` spans (at least one of each), the i-th span
    marked by ``sentinel_ids[i]``."""
    if input_ids.dim() != 2 or input_ids.shape[1] < 2:
        raise ValueError(f"input_ids must be (batch, length) with length >= 2, got {tuple(input_ids.shape)}")
    if not 0 < noise_density < 1 or mean_span_length < 1:
        raise ValueError(
            f"need 0 < noise_density < 1 and mean_span_length >= 1, got {noise_density}, {mean_span_length}"
        )
    length = input_ids.shape[1]
    num_noise = min(max(round(length * noise_density), 1), length - 1)
    num_spans = max(1, min(round(num_noise / mean_span_length), num_noise, length - num_noise))
    if len(sentinel_ids) < num_spans:
        raise ValueError(f"{num_spans} noise spans need as many sentinel ids, got {len(sentinel_ids)}")
    sentinels = torch.tensor(list(sentinel_ids[:num_spans]), dtype=input_ids.dtype)
    if torch.isin(input_ids, sentinels).any():
        raise ValueError("input_ids already contain sentinel ids")
    rows_in, rows_target = [], []
    for row in input_ids:
        kept_lengths = _random_lengths(length - num_noise, num_spans, generator)
        noise_lengths = _random_lengths(num_noise, num_spans, generator)
        pieces_in, pieces_target, start = [], [], 0
        for span, (kept, noise) in enumerate(zip(kept_lengths, noise_lengths, strict=True)):
            sentinel = sentinels[span : span + 1]
            pieces_in += [row[start : start + kept], sentinel]
            pieces_target += [sentinel, row[start + kept : start + kept + noise]]
            start += kept + noise
        rows_in.append(torch.cat(pieces_in))
        rows_target.append(torch.cat(pieces_target))
    return torch.stack(rows_in), torch.stack(rows_target)


def restore_spans(inputs: torch.Tensor, targets: torch.Tensor, sentinel_ids: Sequence[int]) -> torch.Tensor:
    """The original ids from :func:`span_corruption`'s output: each sentinel in ``inputs`` replaced by the
    tokens that follow it in ``targets``."""
    sentinel_set = set(sentinel_ids)
    rows = []
    for row_in, row_target in zip(inputs.tolist(), targets.tolist(), strict=True):
        spans: dict[int, list[int]] = {}
        for token in row_target:
            if token in sentinel_set:
                current = spans.setdefault(token, [])
            else:
                current.append(token)
        rows.append([t for token in row_in for t in (spans[token] if token in sentinel_set else [token])])
    return torch.tensor(rows, dtype=inputs.dtype)


def iterate_batches(
    tensors: dict[str, torch.Tensor],
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of ``batch_size`` rows of every tensor (all with the same first dimension), in order, or
    in a random order drawn from ``generator``."""
    counts = {name: len(tensor) for name, tensor in tensors.items()}
    if batch_size < 1 or len(set(counts.values())) != 1:
        raise ValueError(
            f"need batch_size >= 1 and tensors with equal row counts, got {batch_size}, {counts}"
        )
    count = next(iter(counts.values()))
    order = torch.randperm(count, generator=generator) if generator is not None else torch.arange(count)
    stop = count - count % batch_size if drop_last else count
    for start in range(0, stop, batch_size):
        rows = order[start : start + batch_size]
        yield {name: tensor[rows] for name, tensor in tensors.items()}
