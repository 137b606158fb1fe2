"""Corpora, downloads, synthetic languages, tokenizers and batching of papers.language.data."""

from __future__ import annotations

import hashlib
import io
import math
import subprocess
import sys
import urllib.error
import zipfile

import pytest
import torch

import papers.core.download as core_download
from papers.core.errors import PapersError
from papers.language import data
from papers.language.data import downloads
from papers.language.data.batching import (
    IGNORE_INDEX,
    iterate_batches,
    mask_tokens,
    pack_causal_lm,
    restore_spans,
    span_corruption,
)
from papers.language.data.corpora import (
    documentation_texts,
    read_text_files,
    split_documents,
    split_text,
    stdlib_source_texts,
)
from papers.language.data.synthetic import TOY_GRAMMAR, Grammar, sequence_task
from papers.language.data.tokenization import (
    SPECIAL_TOKENS,
    CharTokenizer,
    load_tokenizer,
    train_byte_level_bpe,
    train_wordpiece,
)


def test_importing_the_package_imports_no_heavy_library():
    code = (
        "import sys, papers.language.data\n"
        "heavy = {'torch', 'transformers', 'tokenizers'} & set(sys.modules)\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_public_name_resolves():
    for name in data.__all__:
        assert getattr(data, name) is not None


# corpora


def test_documentation_corpus_is_large_and_sorted():
    texts = documentation_texts()
    assert sum(map(len, texts.values())) >= 400_000
    assert list(texts) == sorted(texts) and len(texts) > 50


def test_stdlib_source_corpus_is_capped_deterministic_and_skips_tests():
    texts = stdlib_source_texts(max_files=20, max_chars=300_000)
    assert 5 <= len(texts) <= 20 and sum(map(len, texts.values())) <= 300_000
    assert texts == stdlib_source_texts(max_files=20, max_chars=300_000)
    assert list(texts) == sorted(texts)
    skipped = {"test", "tests", "site-packages", "pydoc_data"}
    assert not any(skipped & set(path.split("/")) for path in texts)
    assert len({path[0] for path in texts}) > 5  # spread over the library, not one corner
    assert stdlib_source_texts(max_files=20, max_chars=300_000, seed=1) != texts


def test_document_split_is_seeded_disjoint_and_complete():
    documents = {f"doc{index}": f"text {index}" for index in range(50)}
    split = split_documents(documents, (0.8, 0.1, 0.1), seed=3)
    assert split == split_documents(documents, (0.8, 0.1, 0.1), seed=3)
    assert split != split_documents(documents, (0.8, 0.1, 0.1), seed=4)
    names = [set(part) for part in (split.train, split.valid, split.test)]
    assert [len(part) for part in names] == [40, 5, 5]
    assert set.union(*names) == set(documents) and sum(map(len, names)) == len(documents)
    assert all(documents[name] == text for part in (split.train, split.test) for name, text in part.items())


def test_character_split_is_contiguous():
    text = "".join(chr(97 + index % 26) for index in range(1000))
    split = split_text(text, (0.9, 0.05, 0.05))
    parts = [next(iter(part.values())) for part in (split.train, split.valid, split.test)]
    assert [len(part) for part in parts] == [900, 50, 50] and "".join(parts) == text
    assert list(split.valid) == ["text[900:950]"]


def test_read_text_files_reads_files_and_folders(tmp_path):
    (tmp_path / "b.txt").write_text("second", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first é", encoding="utf-8")
    (tmp_path / "skip.md").write_text("not text", encoding="utf-8")
    texts = read_text_files([tmp_path])
    assert list(texts.values()) == ["first é", "second"]
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_text_files([tmp_path / "bad.txt"])


# downloads


def _wikitext_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for part in ("train", "valid", "test"):
            archive.writestr(f"wikitext-2-raw/wiki.{part}.raw", f" = {part} = \n words of {part} \n")
    return buffer.getvalue()


def _serve(monkeypatch, content: bytes) -> list[str]:
    fetched = []
    monkeypatch.setattr(core_download, "fetch", lambda url: fetched.append(url) or content)
    return fetched


def test_download_prints_the_hash_then_uses_the_cache(monkeypatch, tmp_path, capsys):
    content = _wikitext_zip()
    fetched = _serve(monkeypatch, content)
    monkeypatch.setenv("PAPERS_DATA", str(tmp_path))
    split = downloads.load_wikitext("wikitext-2")
    assert split.valid == {"wiki.valid.raw": " = valid = \n words of valid \n"}
    assert hashlib.sha256(content).hexdigest() in capsys.readouterr().err
    assert (tmp_path / "language" / "wikitext-2-raw-v1.zip").read_bytes() == content
    digest = hashlib.sha256(content).hexdigest()
    assert downloads.load_wikitext("wikitext-2", sha256=digest) == split
    assert len(fetched) == 1


def test_checksum_mismatch_saves_nothing(monkeypatch, tmp_path):
    _serve(monkeypatch, b"First Citizen:\nBefore we proceed any further, hear me speak.\n")
    with pytest.raises(PapersError, match="expected 0+: not saved"):
        downloads.download("tiny-shakespeare", sha256="0" * 64, root=tmp_path)
    assert list(tmp_path.iterdir()) == []
    split = downloads.load_tiny_shakespeare((0.5, 0.25, 0.25), root=tmp_path)
    assert "".join(next(iter(part.values())) for part in (split.train, split.valid, split.test)).startswith(
        "First Citizen"
    )
    with pytest.raises(PapersError, match="delete it"):
        downloads.download("tiny-shakespeare", sha256="0" * 64, root=tmp_path)


def test_unreachable_download_says_where_to_put_the_file(monkeypatch, tmp_path):
    def offline(url):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(core_download, "fetch", offline)
    with pytest.raises(PapersError, match="put the file at"):
        downloads.download("wikitext-103", root=tmp_path)


# synthetic languages


@pytest.mark.parametrize("task", ["copy", "reverse", "sort"])
def test_sequence_task_targets(task):
    sources, targets = sequence_task(
        task, num_examples=32, length=12, num_symbols=10, offset=5, generator=torch.Generator().manual_seed(0)
    )
    again, _ = sequence_task(
        task, num_examples=32, length=12, num_symbols=10, offset=5, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(sources, again) and sources.shape == targets.shape == (32, 12)
    assert sources.min() >= 5 and sources.max() < 15
    if task == "copy":
        assert torch.equal(targets, sources)
    if task == "reverse":
        assert torch.equal(targets.flip(1), sources)
    if task == "sort":
        assert (targets[:, 1:] >= targets[:, :-1]).all()
        assert torch.equal(targets, sources.sort(dim=1).values)


def test_grammar_sentences_are_seeded_and_terminal():
    sentences = TOY_GRAMMAR.sentences(200, seed=1, max_words=25)
    assert sentences == TOY_GRAMMAR.sentences(200, seed=1, max_words=25)
    assert sentences != TOY_GRAMMAR.sentences(200, seed=2, max_words=25)
    words = {word for sentence in sentences for word in sentence.split()}
    assert not words & set(TOY_GRAMMAR.rules) and {"the", "cat"} <= words
    assert max(len(sentence.split()) for sentence in sentences) <= 25
    assert len(set(sentences)) > 100  # recursion gives variety


# tokenizers


UNICODE_TEXT = "Grüße, мир! 日本語 🙂\n\ttabs  and   spaces <s> \x00 ß"


def test_byte_level_bpe_round_trips_any_unicode(tmp_path):
    texts = list(documentation_texts().values())[:20]
    tokenizer = train_byte_level_bpe(texts, vocab_size=600, num_sentinels=3)
    assert tokenizer.vocab_size == 600
    assert [tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.mask_id] == [
        0, 1, 2, 3, 4,
    ]  # fmt: skip
    assert tokenizer.sentinel_ids == [5, 6, 7]
    for text in (UNICODE_TEXT, texts[0][:2000], ""):
        assert tokenizer.decode(tokenizer.encode(text)) == text
    assert len(tokenizer.encode(texts[0])) < len(texts[0].encode("utf-8")) / 2  # merges compress
    loaded = load_tokenizer(tokenizer.save(tmp_path / "bpe.json"))
    assert loaded.encode(UNICODE_TEXT) == tokenizer.encode(UNICODE_TEXT)
    assert loaded.special_ids == tokenizer.special_ids and loaded.vocab_size == tokenizer.vocab_size


def test_wordpiece_round_trips_lowercase_words(tmp_path):
    sentences = [sentence + "." for sentence in TOY_GRAMMAR.sentences(300, seed=0)]
    tokenizer = train_wordpiece(sentences, vocab_size=200)
    assert tokenizer.decode(tokenizer.encode("The cat sees a dog.")) == "the cat sees a dog."
    assert tokenizer.unk_id in tokenizer.encode("🙂")
    loaded = load_tokenizer(tokenizer.save(tmp_path / "wordpiece.json"))
    assert loaded.encode(sentences[0]) == tokenizer.encode(sentences[0])


def test_char_tokenizer_round_trip_and_save_load(tmp_path):
    tokenizer = CharTokenizer.train(["hello", "world ✓"], num_sentinels=2)
    assert tokenizer.vocab_size == len(SPECIAL_TOKENS) + 2 + len(set("helloworld ✓"))
    ids = tokenizer.encode("hello world ✓")
    assert min(ids) >= len(SPECIAL_TOKENS) + 2 and tokenizer.decode(ids) == "hello world ✓"
    assert tokenizer.encode("hex") == tokenizer.encode("he") + [tokenizer.unk_id]
    assert tokenizer.decode([tokenizer.bos_id, *ids], skip_special_tokens=True) == "hello world ✓"
    loaded = load_tokenizer(tokenizer.save(tmp_path / "chars.json"))
    assert isinstance(loaded, CharTokenizer) and loaded.vocabulary == tokenizer.vocabulary
    assert loaded.sentinel_ids == [5, 6]


# packing and batching


def test_causal_lm_packing_shifts_labels_by_one():
    blocks = pack_causal_lm([[11, 12, 13], [14, 15]], block_size=3, eos_id=3)
    assert blocks["input_ids"].tolist() == [[11, 12, 13], [3, 14, 15]]
    assert blocks["labels"].tolist() == [[12, 13, 3], [14, 15, 3]]
    documents = [list(range(10, 10 + n)) for n in (50, 7, 130, 1)]
    blocks = pack_causal_lm(documents, block_size=16, eos_id=3)
    assert blocks["input_ids"].shape == blocks["labels"].shape == ((192 - 1) // 16, 16)
    stream = torch.cat([blocks["input_ids"].flatten(), blocks["labels"][-1, -1:]])
    assert torch.equal(blocks["labels"].flatten(), stream[1:])


def test_masked_lm_rates_follow_bert():
    special_ids = list(range(5))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 2000, (64, 256), generator=generator)
    ids[:, -40:] = 0  # padding
    ids[:, 0] = 2
    inputs, labels = mask_tokens(
        ids, mask_id=4, vocab_size=2000, special_ids=special_ids, generator=generator
    )
    ordinary = ids >= 5
    chosen = labels != IGNORE_INDEX
    assert not (chosen & ~ordinary).any() and torch.equal(inputs[~ordinary], ids[~ordinary])
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(inputs[~chosen], ids[~chosen])

    def within_binomial_error(count, total, p):
        return abs(count / total - p) < 4 * math.sqrt(p * (1 - p) / total)

    num_chosen = int(chosen.sum())
    assert within_binomial_error(num_chosen, int(ordinary.sum()), 0.15)
    masked = int((inputs[chosen] == 4).sum())
    kept = int((inputs[chosen] == ids[chosen]).sum())
    assert within_binomial_error(masked, num_chosen, 0.8)
    assert within_binomial_error(kept, num_chosen, 0.1)
    assert within_binomial_error(num_chosen - masked - kept, num_chosen, 0.1)
    assert inputs.min() >= 0 and not torch.isin(inputs[chosen & (inputs != 4)], torch.arange(5)).any()


def test_span_corruption_restores_the_original_exactly():
    sentinel_ids = list(range(2000, 2100))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 2000, (200, 100), generator=generator)
    inputs, targets = span_corruption(ids, sentinel_ids=sentinel_ids, generator=generator)
    assert inputs.shape == (200, 100 - 15 + 5) and targets.shape == (200, 15 + 5)
    assert torch.equal(restore_spans(inputs, targets, sentinel_ids), ids)
    assert targets[:, 0].eq(2000).all() and torch.isin(inputs, torch.arange(2000, 2005)).sum(1).eq(5).all()
    again = span_corruption(ids, sentinel_ids=sentinel_ids, generator=torch.Generator().manual_seed(0))
    inputs_seeded, _ = span_corruption(
        ids, sentinel_ids=sentinel_ids, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(again[0], inputs_seeded)


def test_iterate_batches_covers_every_row_once():
    tensors = {"x": torch.arange(10), "y": torch.arange(10) * 2}
    batches = list(iterate_batches(tensors, 4, generator=torch.Generator().manual_seed(0)))
    assert [len(batch["x"]) for batch in batches] == [4, 4, 2]
    assert sorted(torch.cat([batch["x"] for batch in batches]).tolist()) == list(range(10))
    assert all(torch.equal(batch["y"], batch["x"] * 2) for batch in batches)
    assert len(list(iterate_batches(tensors, 4, drop_last=True))) == 2


# bad input


BAD_INPUTS = [
    (lambda: split_documents({"a": "x"}, (0.5, 0.5, 0.5)), "fractions must be"),
    (lambda: read_text_files(["no/such/file.txt"]), "no text file or folder"),
    (lambda: stdlib_source_texts(max_files=0), "max_files and max_chars"),
    (lambda: downloads.download("penn-treebank"), "unknown corpus 'penn-treebank'"),
    (lambda: sequence_task("shuffle", num_examples=1, length=1, num_symbols=2), "unknown task"),
    (lambda: sequence_task("copy", num_examples=1, length=0, num_symbols=2), "must be >= 1"),
    (lambda: Grammar({"S": ((0.5, "a"),)}), "sum to 1"),
    (lambda: Grammar({"X": ((1.0, "a"),)}), "start symbol"),
    (lambda: train_byte_level_bpe(["abc"], vocab_size=5), "vocab_size must exceed"),
    (lambda: pack_causal_lm([[1, 2]], block_size=8, eos_id=0), "too few for one block"),
    (
        lambda: mask_tokens(torch.ones(2, 2), mask_id=4, vocab_size=9, special_ids=[0], probability=2),
        "probability",
    ),
    (
        lambda: span_corruption(torch.ones(4, dtype=torch.long), sentinel_ids=[9]),
        "must be \\(batch, length\\)",
    ),
    (
        lambda: span_corruption(torch.ones(1, 100, dtype=torch.long), sentinel_ids=[9]),
        "need as many sentinel",
    ),
    (lambda: span_corruption(torch.full((1, 8), 9), sentinel_ids=[9]), "already contain sentinel"),
    (lambda: iterate_batches({"x": torch.ones(3), "y": torch.ones(4)}, 2).__next__(), "equal row counts"),
]


@pytest.mark.parametrize("call, message", BAD_INPUTS)
def test_bad_input_is_a_one_line_value_error(call, message):
    with pytest.raises(ValueError, match=message) as error:
        call()
    assert "\n" not in str(error.value)


def test_load_tokenizer_rejects_other_files(tmp_path):
    (tmp_path / "notes.json").write_text("not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not a saved tokenizer"):
        load_tokenizer(tmp_path / "notes.json")
