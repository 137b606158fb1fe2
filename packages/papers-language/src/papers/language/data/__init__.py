"""The text data layer: corpora, synthetic languages, tokenizers and training examples.

    corpora        the documentation (``pydoc_data.topics``) and standard-library source corpora, user
                   text files, and deterministic document or character-range splits
    downloads      WikiText-2/103 (raw) and tiny Shakespeare: download, checksum, cache, split
    synthetic      copy / reverse / sort sequence tasks and a probabilistic context-free grammar
    tokenization   character, byte-level BPE and WordPiece tokenizers with one interface
    batching       causal LM packing, BERT masking, T5 span corruption, batches

Names are imported on first use: importing this package imports neither torch nor ``tokenizers``.
"""

from papers.core.lazy import lazy_exports

_MODULE_OF = {
    "corpora": (
        "TextSplit", "documentation_texts", "read_text_files", "split_documents", "split_text",
        "stdlib_source_texts",
    ),
    "downloads": (
        "DOWNLOADS", "DownloadSpec", "data_dir", "download", "load_tiny_shakespeare", "load_wikitext",
    ),
    "synthetic": ("Grammar", "SEQUENCE_TASKS", "TOY_GRAMMAR", "sequence_task"),
    "tokenization": (
        "CharTokenizer", "HFTokenizer", "SPECIAL_TOKENS", "load_tokenizer", "sentinel_tokens",
        "train_byte_level_bpe", "train_wordpiece",
    ),
    "batching": (
        "IGNORE_INDEX", "iterate_batches", "mask_tokens", "pack_causal_lm", "restore_spans",
        "span_corruption",
    ),
}  # fmt: skip

__getattr__, __all__ = lazy_exports(
    __name__, {name: module for module, names in _MODULE_OF.items() for name in names}
)
