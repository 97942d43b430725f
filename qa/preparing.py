"""Preparing: one file's bytes -> its document, chunks and chunk keys (a build's prepare stage).

``prepare`` is a pure function of the file's bytes and the settings in ``PrepareConfig``,
given a parser and the model's tokenizer: it keeps no state between calls, so a local build
and a Ray worker make the same chunks, offset for offset, and its inputs and outputs are
plain frozen dataclasses that pickle (Ray ships them between processes).

A document error (empty, corrupt, encrypted...) and any bug while parsing or chunking one file
come back as ``Prepared.error``, never as an exception: one bad file never stops a build.

Example: a 3-sentence file of 600 model tokens with ``max_tokens=200, overlap=1`` gives three
chunks, each a (start, end) span of the parsed text with the sentence spans inside it, and a
16-byte key per chunk (a hash of its text and sentence offsets) that finds its vector again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa import chunking, parsing
from qa.documents import Document, SourceFile, parse_document, read_source
from qa.errors import DocumentError

log = logging.getLogger(__name__)

Parse = Callable[[str, bytes], parsing.Parsed]
TokenStarts = Callable[[str], np.ndarray]


def chunk_key(text: str, units: list[tuple[int, int]]) -> bytes:
    """16-byte key of a chunk's text and its units (relative offsets): equal keys share vectors."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16)
    digest.update(repr(units).encode())
    return digest.digest()


@dataclass(frozen=True, slots=True)  # slots: a 64 MB file has 100k+ chunks
class Chunk:
    """A chunk of one document: its span and its units' spans, in document offsets."""

    start: int
    end: int
    units: tuple[tuple[int, int], ...]

    def relative_units(self) -> list[tuple[int, int]]:
        return [(a - self.start, b - self.start) for a, b in self.units]

    def key(self, text: str) -> bytes:
        return chunk_key(text[self.start : self.end], self.relative_units())


@dataclass(frozen=True)
class PrepareConfig:
    """The settings a prepared document depends on (part of the manifest's ``chunking``)."""

    max_tokens: int
    overlap: int
    parse_timeout: float = 60.0


@dataclass(frozen=True)
class PrepareTask:
    """One file to prepare: read from ``path``, or from ``data`` when the bytes were shipped."""

    id: str
    path: str
    size: int
    data: bytes | None = None

    def source(self) -> SourceFile:
        return SourceFile(self.id, Path(self.path), self.size)


@dataclass(frozen=True)
class Prepared:
    """The prepare stage's result for one file: a document with chunks and keys, or an error."""

    id: str
    document: Document | None
    chunks: tuple[Chunk, ...] = ()
    keys: tuple[bytes, ...] = ()
    error: str = ""


def chunks_of(text: str, token_starts: TokenStarts, max_tokens: int, overlap: int) -> list[Chunk]:
    # Tokenized one segment at a time: the whole text's tokens with offsets took ~600 bytes per token.
    """Chunks of ``text`` with the sentence units each one holds."""
    chunked = chunking.chunk_stream(text, token_starts, max_tokens, overlap)
    units = chunked.units
    out, first = [], 0
    for start, end in chunked.chunks:
        while units[first][0] < start:
            first += 1  # units are sorted and disjoint; each chunk starts at a unit
        k = first
        while k < len(units) and units[k][1] <= end:
            k += 1
        out.append(Chunk(start, end, tuple(units[first:k])))
    return out


def prepare(task: PrepareTask, config: PrepareConfig, parse: Parse, token_starts: TokenStarts) -> Prepared:
    """Read, parse, chunk and key one file.

    Args:
        task: the file (its bytes are read now, or were shipped in ``task.data``).
        config: chunk size and overlap.
        parse: ``IsolatedParser.parse`` or ``parsing.parse``.
        token_starts: the model tokenizer's token start offsets of a text.

    Returns:
        A ``Prepared`` with the document, or with ``error`` saying why the file is skipped.
    """
    try:
        data = task.data if task.data is not None else read_source(task.source())
        doc = parse_document(task.source(), data, parse)
        chunks = chunks_of(doc.text, token_starts, config.max_tokens, config.overlap)
    except DocumentError as exc:
        return Prepared(task.id, None, error=str(exc))
    except Exception as exc:  # a bug on one document must not stop the build: report it
        log.exception("chunking %s failed", task.id)
        return Prepared(task.id, None, error=f"could not be chunked ({type(exc).__name__}: {exc})")
    return Prepared(task.id, doc, tuple(chunks), tuple(c.key(doc.text) for c in chunks))
