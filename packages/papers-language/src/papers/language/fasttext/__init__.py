"""Enriching Word Vectors with Subword Information.

Piotr Bojanowski, Edouard Grave, Armand Joulin, Tomas Mikolov. *Enriching Word Vectors with Subword
Information*. TACL 2017. arXiv:1607.04606. Catalogue id 001:153:1.

Skip-gram with negative sampling, where a word is the bag of its character n-grams. For a word w with
boundary symbols, "<where>", G_w holds the special sequence "<where>" and its n-grams, 3 <= n <= 6
(n = 3: "<wh", "whe", "her", "ere", "re>"); n-grams are hashed (FNV-1a) into B buckets:

    s(w, c)  = Σ_{g ∈ G_w} z_gᵀ v_c
    loss     = Σ_t Σ_{c ∈ C_t} [ log(1 + e^{-s(w_t, w_c)}) + Σ_{n ∈ N_{t,c}} log(1 + e^{s(w_t, n)}) ]
    P_noise(w) ∝ count(w)^0.75,     P_keep(w) = min(1, sqrt(t / f(w)))

with a context window of size b ~ U{1..5} and 5 negatives. The baseline is word-level skip-gram (one
vector per word; an out-of-vocabulary word has only the null vector). An OOV word's vector is the sum
of its n-gram vectors.

    from papers.language.fasttext import SkipGram, char_ngrams, train_skipgram
    model = SkipGram(words, dim=100, buckets=20000, minn=3, maxn=6)    # buckets=0: word-level
    train_skipgram(model, sentences, counts, epochs=5, lr=0.05)
    model.vectors(["unseenword"])                                     # sum of its n-gram rows
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="fasttext",
    papers=Paper(
        "Enriching Word Vectors with Subword Information",
        "Piotr Bojanowski, Edouard Grave, Armand Joulin, Tomas Mikolov",
        2017,
        venue="TACL",
        arxiv="1607.04606",
        catalog_ids=("001:153:1",),
    ),
    claim=(
        "Representing a word as the sum of its character n-gram vectors beats word-level skip-gram on "
        "rare words, most of all the rarest, and gives useful vectors to out-of-vocabulary words."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Generated morphology (Zipfian stems x prefixes x suffixes, held-out forms): rare-word and OOV "
        "similarity (Spearman), OOV nearest-neighbour stem/class recovery, n-gram range ablation."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "SkipGram": "model",
        "char_ngrams": "model",
        "fnv1a": "model",
        "keep_probability": "model",
        "negative_sampling_loss": "model",
        "ngram_bucket": "model",
        "noise_distribution": "model",
        "subword_ids": "model",
        "subword_strings": "model",
        "train_skipgram": "model",
        "Morphology": "morphology",
        "generate_corpus": "morphology",
        "make_morphology": "morphology",
    },
)
