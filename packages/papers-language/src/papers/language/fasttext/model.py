"""Skip-gram with negative sampling over words or over hashed character n-grams (Bojanowski et al. 2017).

    G_w   = {"<w>"} ∪ {n-grams of "<w>" for n = minn..maxn}        ("<", ">" mark the word boundaries)
    u_w   = Σ_{g ∈ G_w} z_g            (z_g: a row of the input matrix; n-grams hashed into B buckets)
    s(w, c) = u_wᵀ v_c
    loss(w, c) = log(1 + e^{-s(w, c)}) + Σ_{n ∈ N_{w,c}} log(1 + e^{s(w, n)}),   n ~ P_noise ∝ count^0.75
    P_keep(w) = min(1, sqrt(t / f(w)))   (subsampling of frequent words, f = relative frequency)

The word-level baseline is the same model with B = 0 and no n-grams: one input row per word.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

BOW, EOW = "<", ">"


def char_ngrams(word: str, minn: int = 3, maxn: int = 6) -> list[str]:
    """The character n-grams (minn ≤ n ≤ maxn) of ``<word>``, in order of length then position.

    The whole bracketed word ``<word>`` is left out here even when its length is in range: it is the
    word's own special sequence (its vocabulary row, or see :func:`subword_strings`).
    """
    if minn < 1 or maxn < minn:
        raise ValueError(f"need 1 <= minn <= maxn, got minn={minn}, maxn={maxn}")
    if not word:
        raise ValueError("char_ngrams needs a non-empty word")
    token = BOW + word + EOW
    grams = []
    for n in range(minn, maxn + 1):
        for i in range(len(token) - n + 1):
            gram = token[i : i + n]
            if gram != token:
                grams.append(gram)
    return grams


def subword_strings(word: str, minn: int = 3, maxn: int = 6) -> list[str]:
    """G_w of the paper: the special sequence ``<word>`` followed by the n-grams of :func:`char_ngrams`."""
    return [BOW + word + EOW, *char_ngrams(word, minn, maxn)]


def fnv1a(text: str) -> int:
    """32-bit FNV-1a hash of the UTF-8 bytes: deterministic across processes (unlike ``hash``)."""
    h = 2166136261
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h


def ngram_bucket(gram: str, buckets: int) -> int:
    """The bucket in [0, buckets) of a character n-gram."""
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    return fnv1a(gram) % buckets


def subword_ids(word: str, vocab: dict[str, int] | None, buckets: int, minn: int, maxn: int) -> list[int]:
    """Input-matrix rows of a word: its own row (if in ``vocab``), then ``len(vocab) + bucket`` per n-gram.

    With ``buckets == 0`` only the word row is used (word-level skip-gram); an out-of-vocabulary word
    then has no rows (the null vector). An OOV word of the subword model is the sum of its n-grams.
    """
    vocab = vocab or {}
    ids = [vocab[word]] if word in vocab else []
    if buckets > 0:
        ids += [len(vocab) + ngram_bucket(g, buckets) for g in char_ngrams(word, minn, maxn)]
    return ids


def noise_distribution(counts, power: float = 0.75) -> Tensor:
    """P_noise(w) = count(w)^power / Σ count^power (float64)."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if counts.ndim != 1 or len(counts) == 0 or (counts < 0).any() or counts.sum() <= 0:
        raise ValueError("counts must be a non-empty 1-D array of non-negative numbers with a positive sum")
    weights = counts.pow(power)
    return weights / weights.sum()


def keep_probability(counts, t: float) -> Tensor:
    """Subsampling: a token of word w is kept with probability min(1, sqrt(t / f(w))), f = count / total."""
    if not t > 0:
        raise ValueError(f"subsampling threshold t must be > 0, got {t}")
    counts = torch.as_tensor(counts, dtype=torch.float64)
    freq = counts / counts.sum()
    return torch.clamp(torch.sqrt(t / freq), max=1.0)


def negative_sampling_loss(u: Tensor, v_pos: Tensor, v_neg: Tensor) -> Tensor:
    """Σ over the batch of log(1 + e^{-uᵀv_pos}) + Σ_k log(1 + e^{uᵀv_neg_k}).

    u: [B, d] input (word) vectors, v_pos: [B, d] context output vectors, v_neg: [B, K, d] noise vectors.
    """
    if (
        u.ndim != 2
        or v_pos.shape != u.shape
        or v_neg.ndim != 3
        or v_neg.shape[0] != u.shape[0]
        or v_neg.shape[2] != u.shape[1]
    ):
        raise ValueError(
            f"shapes must be u [B, d], v_pos [B, d], v_neg [B, K, d]; got {tuple(u.shape)}, "
            f"{tuple(v_pos.shape)}, {tuple(v_neg.shape)}"
        )
    pos = (u * v_pos).sum(-1)
    neg = torch.einsum("bd,bkd->bk", u, v_neg)
    return nn.functional.softplus(-pos).sum() + nn.functional.softplus(neg).sum()


class SkipGram(nn.Module):
    """Skip-gram with negative sampling; ``buckets > 0`` makes it the subword model (u_w = Σ_g z_g).

    Input rows: ``nwords`` word rows then ``buckets`` n-gram rows, uniform in ±1/dim; output rows
    (contexts are words) start at zero. Both matrices give sparse gradients for plain SGD.
    """

    def __init__(
        self,
        words: list[str],
        *,
        dim: int = 100,
        buckets: int = 0,
        minn: int = 3,
        maxn: int = 6,
        use_word: bool = True,
    ):
        super().__init__()
        if dim < 1 or buckets < 0 or not words:
            raise ValueError(
                f"need dim >= 1, buckets >= 0 and a non-empty vocabulary (dim={dim}, "
                f"buckets={buckets}, {len(words)} words)"
            )
        if buckets == 0 and not use_word:
            raise ValueError("a model without buckets needs use_word=True")
        self.words = list(words)
        self.vocab = {w: i for i, w in enumerate(self.words)}
        if len(self.vocab) != len(self.words):
            raise ValueError("vocabulary words must be distinct")
        self.dim, self.buckets, self.minn, self.maxn, self.use_word = dim, buckets, minn, maxn, use_word
        nwords = len(self.words)
        self.pad = nwords + buckets  # an extra all-zero row for padding
        self.input = nn.EmbeddingBag(nwords + buckets + 1, dim, mode="sum", sparse=True, padding_idx=self.pad)
        self.output = nn.Embedding(nwords, dim, sparse=True)
        with torch.no_grad():
            self.input.weight.uniform_(-1.0 / dim, 1.0 / dim)
            self.input.weight[self.pad].zero_()
            self.output.weight.zero_()
        self.register_buffer("rows", self.pad_rows([self.word_rows(w) for w in self.words]), persistent=False)

    def word_rows(self, word: str) -> list[int]:
        ids = subword_ids(word, self.vocab, self.buckets, self.minn, self.maxn)
        if not self.use_word and word in self.vocab:
            ids = ids[1:]
        return ids

    def pad_rows(self, rows: list[list[int]]) -> Tensor:
        width = max(1, max(len(r) for r in rows))
        return torch.tensor([r + [self.pad] * (width - len(r)) for r in rows], dtype=torch.long)

    def forward(self, center: Tensor, context: Tensor, negatives: Tensor) -> Tensor:
        """Summed negative-sampling loss of (center, context) word-index pairs with [B, K] negatives."""
        u = self.input(self.rows[center])
        return negative_sampling_loss(u, self.output(context), self.output(negatives))

    @torch.no_grad()
    def vectors(self, words: list[str]) -> Tensor:
        """u_w for any words (OOV: the sum of its n-gram rows; word-level: the null vector)."""
        return self.input(self.pad_rows([self.word_rows(w) for w in words]))


def train_skipgram(
    model: SkipGram,
    sentences: list[np.ndarray],
    counts: np.ndarray,
    *,
    epochs: int = 5,
    lr: float = 0.05,
    window: int = 5,
    negatives: int = 5,
    t: float = 1e-4,
    batch_size: int = 1024,
    row_average: str = "input",
    seed: int = 0,
    progress=None,
) -> list[float]:
    """Plain SGD with a learning rate decaying linearly to 0, as in word2vec; returns the mean loss per epoch.

    The loss of a batch is summed over its pairs, so with ``row_average="none"`` a row used k times in the
    batch takes the sum of its k per-pair steps, as sequential SGD would for small batches; with large
    batches and rows shared by many pairs (a frequent context word, an n-gram such as "ing>") this can
    diverge (an error is raised). ``"input"`` (input rows) or ``"all"`` (input and output rows) moves
    such a row by the mean of its per-pair gradients instead: stable, but slower for frequent rows.

    ``sentences``: arrays of vocabulary indices. Each epoch subsamples tokens with
    :func:`keep_probability`, draws a window size b ~ U{1..window} per centre and pairs it with the words
    at distance ≤ b in its sentence, and samples ``negatives`` noise words per pair from P ∝ count^0.75.
    ``progress(1)`` is called after every epoch when given.
    """
    rng = np.random.default_rng(seed)
    torch_gen = torch.Generator().manual_seed(seed)
    keep = keep_probability(counts, t).numpy()
    noise = noise_distribution(counts).float()
    tokens = np.concatenate(sentences)
    sent_id = np.concatenate([np.full(len(s), i) for i, s in enumerate(sentences)])
    params = list(model.parameters())
    per_epoch = []
    plans = [_pairs(tokens, sent_id, keep, window, rng) for _ in range(epochs)]
    total = sum(len(p[0]) for p in plans)
    done = 0
    for centers, contexts in plans:
        order = torch.randperm(len(centers), generator=torch_gen)
        centers, contexts = torch.from_numpy(centers)[order], torch.from_numpy(contexts)[order]
        losses = []
        for start in range(0, len(centers), batch_size):
            c, o = centers[start : start + batch_size], contexts[start : start + batch_size]
            neg = torch.multinomial(noise, len(c) * negatives, replacement=True, generator=torch_gen)
            step = lr * max(1e-4, 1.0 - done / total)
            neg = neg.view(len(c), negatives)
            loss = model(c, o, neg)
            for p in params:
                p.grad = None
            loss.backward()
            with torch.no_grad():  # plain SGD on the sparse rows (torch.optim would import torch._dynamo)
                if row_average in ("input", "all"):
                    in_rows = model.rows[c].flatten()
                    _sgd_rows(model.input.weight, in_rows[in_rows != model.pad], step)
                else:
                    model.input.weight.add_(model.input.weight.grad, alpha=-step)
                if row_average == "all":
                    _sgd_rows(model.output.weight, torch.cat([o, neg.flatten()]), step)
                else:
                    model.output.weight.add_(model.output.weight.grad, alpha=-step)
                model.input.weight[model.pad].zero_()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite skip-gram loss after {done} pairs")
            losses.append(loss.item() / len(c))
            done += len(c)
        per_epoch.append(float(np.mean(losses)) if losses else float("nan"))
        if progress is not None:
            progress(1)
    return per_epoch


def _sgd_rows(weight: Tensor, used: Tensor, step: float) -> None:
    """weight[r] -= step · grad[r] / (times row r was used in the batch), for the rows of a sparse grad."""
    grad = weight.grad.coalesce()
    rows, values = grad.indices()[0], grad.values()
    uses = torch.bincount(used, minlength=weight.shape[0])[rows].clamp_min(1)
    weight.index_add_(0, rows, values / uses[:, None].to(values.dtype), alpha=-step)


def _pairs(tokens: np.ndarray, sent_id: np.ndarray, keep: np.ndarray, window: int, rng) -> tuple:
    """(centre, context) index pairs of one epoch after subsampling, with dynamic windows."""
    kept = rng.random(len(tokens)) < keep[tokens]
    tok, sid = tokens[kept], sent_id[kept]
    b = rng.integers(1, window + 1, size=len(tok))
    centers, contexts = [], []
    for d in range(1, window + 1):
        same = sid[d:] == sid[:-d] if len(tok) > d else np.zeros(0, dtype=bool)
        left = np.nonzero(same & (b[:-d] >= d))[0]  # centre i, context i + d
        right = np.nonzero(same & (b[d:] >= d))[0]  # centre i + d, context i
        centers += [tok[left], tok[right + d]]
        contexts += [tok[left + d], tok[right]]
    return (np.concatenate(centers).astype(np.int64), np.concatenate(contexts).astype(np.int64))
