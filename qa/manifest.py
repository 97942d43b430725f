"""The index manifest as a typed schema: what ``store.verify`` checks and what readers use.

A manifest can be valid JSON with a correct checksum and still be wrong: written by another
tool, edited by hand, or from a bug. Every field qa reads is declared here with its type, and
``parse`` refuses anything else with ``IndexCorruptError`` naming the first problems, so
loading falls back to the previous good generation with a warning instead of failing later
with a KeyError or TypeError. ``files`` must list (and so checksum) every file the format
needs (``REQUIRED_FILES``): a manifest with ``files: {}`` cannot make qa load unchecked files.

Extending: add a field to the model it belongs to (a nested model for a new group, e.g. the
dense index type), with a default when older manifests lack it. The nested objects forbid
unknown keys (a typo or a foreign object is refused); the top level keeps unknown keys
(tools such as ``benchmarks/latency.py`` add notes there) but nothing reads them unvalidated.
Types are strict: ``"many"`` or ``true`` is not a count.

Non-goal: migrating old formats (``format_version`` decides; see ``store``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from qa.errors import IndexCorruptError

# Every file a generation needs to load, relative to its folder (manifest.json aside: it
# carries its own checksum). bm25s reads all five of its files for the "lucene" method.
# Format 2 kept the vectors in vectors.faiss; format 3 in vectors.npy, with dense.faiss as well
# when the dense index is not exact (``DenseInfo.type``).
COMMON_FILES = frozenset(
    {
        "documents.sqlite",
        "chunks.npy",
        "chunk_keys.npy",
        "unit_ptr.npy",
        "units.npy",
        "unit_vectors.npy",
        "bm25/params.index.json",
        "bm25/vocab.index.json",
        "bm25/data.csc.index.npy",
        "bm25/indices.csc.index.npy",
        "bm25/indptr.csc.index.npy",
    }
)
REQUIRED_FILES = {2: COMMON_FILES | {"vectors.faiss"}, 3: COMMON_FILES | {"vectors.npy"}}
DENSE_FILE = "dense.faiss"
# A listed file is a plain relative path inside the generation folder.
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*")

Count = Annotated[int, Field(ge=0)]


class _Part(BaseModel):
    """A nested object of the manifest: strict types, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ModelInfo(_Part):
    """The embedding model that built the index."""

    name: str
    fingerprint: str = Field(min_length=1, description="SHA-256 of the model folder.")
    dimension: int = Field(gt=0)
    max_tokens: int = Field(gt=0)
    precision: Literal["float32", "bfloat16"] = "float32"


class ChunkingInfo(_Part):
    """How documents were parsed and chunked (a change re-parses every document)."""

    max_tokens: int = Field(gt=0)
    overlap_sentences: Count
    splitter: str
    parser_version: Count
    max_chars: int | None = Field(None, gt=0, description="Longest chunk in characters.")


class BM25Info(_Part):
    k1: float
    b: float
    method: str
    stemmer: str
    stopwords: str


class Counts(_Part):
    documents: Count
    chunks: Count
    units: Count
    skipped: Count


class DocumentEntry(_Part):
    id: str = Field(min_length=1)
    hash: str
    format: str
    size: Count
    chunks: Count
    note: str = ""


class SkippedEntry(_Part):
    id: str
    reason: str


class DenseInfo(_Part):
    """The dense search structure (format 3; absent in format 2, which searched exactly)."""

    type: Literal["flat", "ivf", "ivfpq"] = "flat"
    nlist: int | None = Field(None, gt=0)
    nprobe: int | None = Field(None, gt=0)
    pq_m: int | None = Field(None, gt=0)
    pq_bits: int | None = Field(None, gt=0)
    refine: int | None = Field(None, gt=0)
    trained_on: int | None = Field(None, ge=0, description="Vectors in the k-means sample.")
    file: str | None = None


class FileEntry(_Part):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: Count


class Manifest(BaseModel):
    """A generation's manifest.json (see README "Index format")."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    format: Literal["qa-index"]
    format_version: int
    qa_version: str
    created: str
    generation: str
    metric: str
    model: ModelInfo
    chunking: ChunkingInfo
    bm25: BM25Info
    counts: Counts
    documents: list[DocumentEntry]
    skipped: list[SkippedEntry]
    files: dict[str, FileEntry]
    checksum: str
    dense: DenseInfo | None = None
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def raw(self) -> dict[str, Any]:
        """The JSON object as written (validated by this model): unknown keys included and
        nothing added, so comparisons with older manifests stay exact."""
        return self._raw

    @field_validator("files")
    @classmethod
    def _files_are_complete(cls, files: dict[str, FileEntry]) -> dict[str, FileEntry]:
        bad = [name for name in files if not _FILE_NAME.fullmatch(name) or ".." in name.split("/")]
        if bad:
            raise ValueError(f"not a file inside the generation folder: {bad[0]!r}")
        return files

    @model_validator(mode="after")
    def _required_files_are_listed(self) -> Manifest:
        required = set(REQUIRED_FILES.get(self.format_version, ()))
        if not required:
            raise ValueError(f"format_version {self.format_version} is not one this qa reads")
        if self.dense is not None and self.dense.type != "flat":
            required.add(DENSE_FILE)
        missing = sorted(required - set(self.files))
        if missing:
            raise ValueError(f"required files not listed: {', '.join(missing)}")
        return self

    @model_validator(mode="after")
    def _lists_match_counts(self) -> Manifest:
        if len(self.documents) != self.counts.documents:
            raise ValueError(
                f"counts.documents is {self.counts.documents} but {len(self.documents)} documents are listed"
            )
        if len({d.id for d in self.documents}) != len(self.documents):
            raise ValueError("a document id is listed twice")
        return self


def describe(exc: ValidationError, limit: int = 3) -> str:
    """The first ``limit`` problems of a validation error, as ``where: what`` (no input values:
    they may be long or hostile)."""
    parts = []
    for err in exc.errors(include_url=False)[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "manifest"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def parse(body: Any, where: str) -> Manifest:
    """Validate a manifest's JSON ``body``.

    Raises:
        IndexCorruptError: the body does not match the schema (``where`` names the file).
    """
    try:
        checked = Manifest.model_validate(body)
    except ValidationError as exc:
        raise IndexCorruptError(f"{where}: invalid manifest ({describe(exc)})") from None
    checked._raw = body
    return checked
