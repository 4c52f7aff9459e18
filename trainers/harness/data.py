"""Training text: read a corpus, tokenize it, pack it into blocks of at most a given length.

Corpora are JSONL or Parquet files (through the collection readers, so bad records fail with
file:line), BEIR folders (their ``corpus.jsonl``) or datasets saved with ``save_to_disk``. A
pretraining corpus needs no ids: only the text field (and an optional title) is read.

Packing keeps documents apart (a block is one passage, so its sentence embedding has one thing to
say) and cuts long documents at sentence ends where one falls in the second half of a block.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from retrosearch.core.collections import CollectionError
from retrosearch.core.collections.readers import iter_raw_records

_SENTENCE_ENDS = (".", "!", "?", "。")
_TOKENIZE_BATCH = 512


def _join(title: object, text: object, separator: str) -> str:
    title = title if isinstance(title, str) else ""
    return f"{title}{separator}{text}" if title.strip() else str(text)


def _hf_dataset_texts(path: Path, text_field: str, title_field: str | None, separator: str) -> Iterator[str]:
    # lazy: keeps datasets out of the light exports of trainers.harness
    from datasets import DatasetDict, load_from_disk

    data = load_from_disk(str(path))
    if isinstance(data, DatasetDict):
        split = "train" if "train" in data else next(iter(data))
        data = data[split]
    if text_field not in data.column_names:
        raise CollectionError(
            path, None, f"dataset has no text column {text_field!r} (columns: {data.column_names})"
        )
    columns = [text_field] + ([title_field] if title_field and title_field in data.column_names else [])
    for batch in data.select_columns(columns).iter(batch_size=1024):
        titles = batch.get(title_field) if title_field in columns else None
        for i, text in enumerate(batch[text_field]):
            if isinstance(text, str):
                yield _join(titles[i] if titles else "", text, separator)


def read_texts(
    path: str | Path, text_field: str = "text", title_field: str | None = "title", title_separator: str = " "
) -> Iterator[str]:
    """Yield ``title + separator + text`` of every record of a corpus file, BEIR folder or saved dataset."""
    path = Path(path)
    if path.is_dir():
        if (path / "corpus.jsonl").is_file():
            path = path / "corpus.jsonl"
        elif any(
            (path / name).is_file() for name in ("dataset_info.json", "state.json", "dataset_dict.json")
        ):
            yield from _hf_dataset_texts(path, text_field, title_field, title_separator)
            return
        else:
            raise CollectionError(
                path, None, "folder is neither a BEIR collection nor a dataset saved with save_to_disk"
            )
    for number, record in iter_raw_records(path):
        if not isinstance(record, dict):
            raise CollectionError(path, number, f"expected a JSON object, got {type(record).__name__}")
        text = record.get(text_field)
        if not isinstance(text, str):
            raise CollectionError(path, number, f"missing or non-string text field {text_field!r}")
        yield _join(record.get(title_field) if title_field else "", text, title_separator)


def read_corpora(
    paths: Sequence[str | Path], text_field: str = "text", title_field: str | None = "title",
    title_separator: str = " ",
) -> Iterator[str]:
    """:func:`read_texts` of several corpora in turn, one document from each while they last, so a cap
    on blocks (``max_blocks``) takes from every corpus and no corpus fills a stretch of the stream."""
    readers = [read_texts(p, text_field, title_field, title_separator) for p in paths]
    while readers:
        for reader in list(readers):
            text = next(reader, None)
            if text is None:
                readers.remove(reader)
            else:
                yield text


class PackedTokens(Sequence[np.ndarray]):
    """Token blocks stored flat (one int32 array plus offsets): compact to pickle and to ship to workers."""

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray) -> None:
        self.tokens = tokens
        self.offsets = offsets

    @classmethod
    def from_blocks(cls, blocks: Iterable[Sequence[int]]) -> "PackedTokens":
        """Store ``blocks`` (lists or arrays of token ids)."""
        arrays = [np.asarray(b, dtype=np.int32) for b in blocks]
        offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum([len(a) for a in arrays], out=offsets[1:])
        tokens = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int32)
        return cls(tokens, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.tokens[self.offsets[index] : self.offsets[index + 1]]

    @property
    def num_tokens(self) -> int:
        """Tokens over all blocks."""
        return int(self.tokens.size)


def split_document(ids: Sequence[int], max_tokens: int, boundaries: np.ndarray) -> list[Sequence[int]]:
    """Cut one document into blocks of at most ``max_tokens``, after a sentence end where possible."""
    ids_arr = np.asarray(ids)
    ends = np.flatnonzero(np.isin(ids_arr, boundaries)) + 1  # cut positions just after a sentence end
    blocks, start = [], 0
    while len(ids_arr) - start > max_tokens:
        limit = start + max_tokens
        candidates = ends[(ends > start + max_tokens // 2) & (ends <= limit)]
        cut = int(candidates[-1]) if candidates.size else limit
        blocks.append(ids[start:cut])
        start = cut
    blocks.append(ids[start:])
    return blocks


def pack_documents(
    texts: Iterable[str], tokenizer, max_tokens: int, min_tokens: int = 8, max_blocks: int | None = None
) -> PackedTokens:
    """Tokenize ``texts`` (no special tokens) and cut them into blocks of ``min_tokens..max_tokens`` ids."""
    vocab = tokenizer.get_vocab()
    boundaries = np.asarray([vocab[t] for t in _SENTENCE_ENDS if t in vocab], dtype=np.int64)
    blocks: list[Sequence[int]] = []

    def flush(batch: list[str]) -> None:
        for ids in tokenizer(batch, add_special_tokens=False, return_attention_mask=False, verbose=False)[
            "input_ids"
        ]:
            blocks.extend(b for b in split_document(ids, max_tokens, boundaries) if len(b) >= min_tokens)

    pending: list[str] = []
    for text in texts:
        pending.append(text)
        if len(pending) == _TOKENIZE_BATCH:
            flush(pending)
            pending = []
            if max_blocks is not None and len(blocks) >= max_blocks:
                break
    if pending:
        flush(pending)
    return PackedTokens.from_blocks(blocks[:max_blocks] if max_blocks is not None else blocks)
