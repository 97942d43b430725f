"""The index store: generations of open-format files, a manifest, an atomic pointer and a lock.

Layout of an index folder (documented in README "Index format")::

    index/
      CURRENT              name of the live generation; replaced atomically
      .build.lock          build lock (an OS lock: released if the holder dies)
      gen-000007/
        manifest.json      format version, model, dimension, metric, chunking, counts, checksums
        documents.sqlite   documents(row, id, hash, format, size, text, locations, note)
        chunks.npy         int64 (n, 3): document row, start, end. Row i is vector row i
        chunk_keys.npy     uint8 (n, 16): hash of each chunk's text and units, to reuse vectors
        unit_ptr.npy       int64 (n + 1,): chunk i's sentence units are rows ptr[i]:ptr[i+1]
        units.npy          int64 (m, 2): start, end (document offsets) of each sentence unit
        unit_vectors.npy   float16 (m, d): each unit's vector, pooled in its chunk's context
        vectors.npy        float32 (n, d): chunk vectors, L2-normalised (opened memory-mapped)
        dense.faiss        IVF or IVF-PQ search structure over vectors.npy, ids = chunk rows
                           (absent for exact search; see qa.vectors)
        bm25/              bm25s arrays (.npy) and vocab/params (.json)

Nothing here is ever unpickled: arrays load with ``allow_pickle=False``, SQLite and JSON are
data, and every file's SHA-256 is checked before FAISS, numpy or SQLite read it. Files the
manifest does not list are never opened. Format 2 (vectors only inside
``vectors.faiss``, an IndexIDMap2(IndexFlatIP)) still opens: its vectors are read back from
FAISS and searched exactly, and the next build rewrites it as format 3 without re-embedding.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from qa import manifest as qa_manifest
from qa import vectors as dense_vectors
from qa.documents import Document
from qa.errors import BuildError, BuildLockedError, IndexCorruptError, IndexNotFoundError, ModelMismatchError
from qa.manifest import Manifest

log = logging.getLogger(__name__)

FORMAT = "qa-index"
# 2: chunk_keys.npy holds uint8 (n, 16) instead of |S16. 3: vectors.npy + optional dense.faiss
FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)
POINTER = "CURRENT"
LOCK = ".build.lock"
MANIFEST = "manifest.json"
_GEN_RE = re.compile(r"gen-(\d{6,})")
# Cosine similarity = inner product of L2-normalised vectors: exact, and FAISS's fastest
# metric; the embedder normalises every vector it returns.
METRIC = "inner_product (cosine on L2-normalised vectors)"


@dataclass(frozen=True)
class DocumentInfo:
    """A document's metadata as stored (its text is read on demand)."""

    row: int
    id: str
    hash: str
    format: str
    size: int
    locations: tuple[tuple[int, str], ...]
    note: str


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _manifest_checksum(body: dict[str, Any]) -> str:
    payload = {k: v for k, v in body.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def generation_names(root: Path) -> list[str]:
    """Complete generation folders, oldest first."""
    if not root.is_dir():
        return []
    names = [p.name for p in root.iterdir() if p.is_dir() and _GEN_RE.fullmatch(p.name)]
    return sorted(names, key=lambda n: int(n.split("-")[1]))


def read_pointer(root: Path) -> str | None:
    try:
        name = (root / POINTER).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return name if _GEN_RE.fullmatch(name) else None


def set_live(root: Path, name: str) -> None:
    """Point CURRENT at ``name``: write a temp file, fsync, rename over, fsync the folder."""
    tmp = root / f".{POINTER}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / POINTER)
    _fsync(root)


@contextlib.contextmanager
def build_lock(root: Path) -> Iterator[None]:
    """Hold the index's build lock, or raise BuildLockedError at once.

    The lock is an OS-level file lock, so a build killed with SIGKILL releases it.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(str(root / LOCK), timeout=0)
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:
        raise BuildLockedError(f"another build of {root} is running: wait for it to finish") from None
    except OSError as exc:
        raise BuildError(
            f"cannot take the build lock in {root} ({exc.strerror or exc}): is the folder writable?"
        ) from exc
    try:
        yield
    finally:
        lock.release()


def clean_leftovers(root: Path) -> list[str]:
    """Remove temporary folders and files left by killed builds (call under the build lock)."""
    removed = []
    for p in root.iterdir() if root.is_dir() else []:
        if p.name.startswith(".tmp-") or (p.name.startswith(f".{POINTER}.") and p.name.endswith(".tmp")):
            try:
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
            except OSError as exc:  # e.g. a read-only folder: reported, retried by the next build
                log.warning("cannot remove leftover %s: %s", p, exc)
                continue
            removed.append(p.name)
    return removed


def next_generation_name(root: Path) -> str:
    names = generation_names(root)
    number = int(names[-1].split("-")[1]) + 1 if names else 1
    return f"gen-{number:06d}"


def write_generation(
    root: Path,
    documents: list[Document],
    chunks: np.ndarray,
    chunk_keys: np.ndarray,
    unit_ptr: np.ndarray,
    units: np.ndarray,
    unit_vectors: np.ndarray | Sequence[np.ndarray],
    vectors: np.ndarray,
    bm25: Any,
    manifest: dict[str, Any],
    dense: Any = None,
) -> str:
    """Write a complete generation folder and return its name (it is not live yet).

    Files go into a hidden temp folder, are fsynced, get checksummed into the manifest, and the
    folder is renamed into place only when complete: a killed build leaves only a temp folder.
    ``dense`` is the FAISS structure ``qa.vectors.build`` made for ``manifest["dense"]``
    (None for exact search). ``unit_vectors`` may be a list of per-chunk arrays: they are
    written one after the other, never stacked in memory.
    """
    name = next_generation_name(root)
    tmp = root / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n = len(chunks)
    if not (len(chunk_keys) == n and vectors.shape[0] == n):
        raise ValueError(f"chunks ({n}), keys ({len(chunk_keys)}) and vectors ({vectors.shape[0]}) differ")
    _write_documents(tmp / "documents.sqlite", documents)
    np.save(tmp / "chunks.npy", np.ascontiguousarray(chunks, dtype=np.int64), allow_pickle=False)
    # Raw bytes, not numpy's "S16": that type drops trailing NUL bytes of a digest.
    np.save(
        tmp / "chunk_keys.npy", np.asarray(chunk_keys, dtype=np.uint8).reshape(-1, 16), allow_pickle=False
    )
    if not (len(unit_ptr) == n + 1 and unit_ptr[-1] == len(units) == _rows(unit_vectors)):
        raise ValueError("unit pointers, units and unit vectors disagree")
    np.save(tmp / "unit_ptr.npy", np.asarray(unit_ptr, dtype=np.int64), allow_pickle=False)
    np.save(tmp / "units.npy", np.ascontiguousarray(units, dtype=np.int64), allow_pickle=False)
    _save_stacked(
        tmp / "unit_vectors.npy", unit_vectors, np.dtype(np.float16), int(manifest["model"]["dimension"])
    )
    dim = int(manifest["model"]["dimension"])
    np.save(tmp / "vectors.npy", np.asarray(vectors, dtype=np.float32).reshape(n, dim), allow_pickle=False)
    if dense is not None:
        dense_vectors.write(dense, tmp / dense_vectors.FILE)
    bm25.save(str(tmp / "bm25"), show_progress=False)
    files = {}
    for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
        _fsync(path)
        files[path.relative_to(tmp).as_posix()] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    body = {
        **manifest,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generation": name,
        "metric": METRIC,
        "files": files,
    }
    body["checksum"] = _manifest_checksum(body)
    with open(tmp / MANIFEST, "w", encoding="utf-8") as fh:
        json.dump(body, fh, indent=1, ensure_ascii=False)
        fh.flush()
        os.fsync(fh.fileno())
    _fsync(tmp / "bm25")
    _fsync(tmp)
    os.rename(tmp, root / name)
    _fsync(root)
    return name


def _rows(parts: np.ndarray | Sequence[np.ndarray]) -> int:
    return len(parts) if isinstance(parts, np.ndarray) else sum(len(p) for p in parts)


def _save_stacked(path: Path, parts: np.ndarray | Sequence[np.ndarray], dtype: np.dtype, width: int) -> None:
    """The file ``np.save(path, np.vstack(parts).astype(dtype))`` writes, written part by part.

    Stacking first would hold every row twice: 850k sentence vectors of a 64 MB file are 630 MB.
    """
    if isinstance(parts, np.ndarray):
        np.save(path, np.asarray(parts, dtype=dtype), allow_pickle=False)
        return
    header = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": (_rows(parts), width),
    }
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for part in parts:
            fh.write(np.ascontiguousarray(part, dtype=dtype).reshape(-1, width).data)


def _write_documents(path: Path, documents: list[Document]) -> None:
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA journal_mode=OFF")
        con.execute(
            "CREATE TABLE documents (row INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, "
            "hash TEXT NOT NULL, format TEXT NOT NULL, size INTEGER NOT NULL, text TEXT NOT NULL, "
            "locations TEXT NOT NULL, note TEXT NOT NULL)"
        )
        con.executemany(
            "INSERT INTO documents VALUES (?,?,?,?,?,?,?,?)",
            [
                (i, d.id, d.hash, d.format, d.size, d.text, json.dumps(d.locations), d.note)
                for i, d in enumerate(documents)
            ],
        )
        con.commit()
    finally:
        con.close()


def prune(root: Path, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` generations, never the live one."""
    live = read_pointer(root)
    names = generation_names(root)
    removed = []
    for name in names[:-keep] if keep > 0 else names:
        if name != live:
            shutil.rmtree(root / name, ignore_errors=True)
            removed.append(name)
    return removed


def verify(gen_dir: Path, fingerprint: str | None) -> Manifest:
    """Check a generation's manifest (checksum, version, schema) and every file's checksum;
    return the manifest.

    Raises:
        IndexCorruptError: missing/unknown format, bad checksum, a manifest that does not
            match the schema (``qa.manifest``), a missing or damaged file.
        ModelMismatchError: built with another model than ``fingerprint``.
    """
    try:
        with open(gen_dir / MANIFEST, encoding="utf-8") as fh:
            body = json.load(fh)
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"{gen_dir / MANIFEST}: unreadable manifest ({exc})") from exc
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise IndexCorruptError(f"{gen_dir / MANIFEST}: not a qa index manifest")
    if body.get("checksum") != _manifest_checksum(body):
        raise IndexCorruptError(f"{gen_dir / MANIFEST}: manifest checksum mismatch (corrupted)")
    if body.get("format_version") not in READABLE_VERSIONS:
        raise IndexCorruptError(
            f"{gen_dir}: index format version {body.get('format_version')} is not supported by "
            f"this qa (reads versions {READABLE_VERSIONS[0]}-{FORMAT_VERSION}): "
            "rebuild with `qa index --full`"
        )
    checked = qa_manifest.parse(body, str(gen_dir / MANIFEST))
    if checked.generation != gen_dir.name:
        raise IndexCorruptError(
            f"{gen_dir / MANIFEST}: manifest belongs to generation {checked.generation!r}"
        )
    model = checked.model
    if fingerprint is not None and model.fingerprint != fingerprint:
        raise ModelMismatchError(
            f"{gen_dir} was built with model {model.name!r} "
            f"({model.fingerprint[:12]}), not the configured model "
            f"({fingerprint[:12]}): use the same model or rebuild with `qa index --full`"
        )
    for rel, meta in checked.files.items():
        path = gen_dir / rel
        if not path.is_file() or path.is_symlink():
            raise IndexCorruptError(f"{path}: listed in the manifest but missing")
        try:
            intact = path.stat().st_size == meta.bytes and sha256_file(path) == meta.sha256
        except OSError as exc:
            raise IndexCorruptError(f"{path}: cannot be read ({exc.strerror})") from exc
        if not intact:
            raise IndexCorruptError(f"{path}: checksum mismatch (file corrupted or truncated)")
    return checked


class Generation:
    """One verified, loaded, read-only generation. Safe to share between threads."""

    def __init__(self, gen_dir: Path, manifest: Manifest | dict[str, Any]) -> None:
        """Load a verified generation (``manifest`` as ``verify`` returns it).

        Raises:
            IndexCorruptError: a file does not load, or the counts disagree with the manifest.
        """
        self.dir = gen_dir
        self.name = gen_dir.name
        if not isinstance(manifest, Manifest):
            manifest = qa_manifest.parse(manifest, str(gen_dir / MANIFEST))
        self.meta = manifest
        self.manifest: dict[str, Any] = manifest.raw  # as written (and validated)
        self._db: sqlite3.Connection | None = None
        self._db_lock = threading.Lock()
        try:
            self._load(gen_dir, manifest)
        except IndexCorruptError:
            self.close()
            raise
        except (OSError, ValueError, RuntimeError, sqlite3.Error, KeyError, TypeError, IndexError) as exc:
            # checksums matched, yet a file does not read as what it should be: corrupt too
            self.close()
            raise IndexCorruptError(f"{gen_dir}: cannot load ({type(exc).__name__}: {exc})") from exc
        self.text = lru_cache(maxsize=256)(self._text)

    def _load(self, gen_dir: Path, manifest: Manifest) -> None:
        import bm25s

        counts = manifest.counts
        self.chunks = np.load(gen_dir / "chunks.npy", allow_pickle=False)
        self.chunk_keys = np.load(gen_dir / "chunk_keys.npy", allow_pickle=False)
        self.unit_ptr = np.load(gen_dir / "unit_ptr.npy", allow_pickle=False)
        self.units = np.load(gen_dir / "units.npy", allow_pickle=False)
        self.unit_vectors = np.load(gen_dir / "unit_vectors.npy", allow_pickle=False, mmap_mode="r")
        self.vectors, self.dense = _open_vectors(gen_dir, manifest.raw)
        self.bm25 = bm25s.BM25.load(
            str(gen_dir / "bm25"), allow_pickle=False, show_progress=False, verbosity=0
        )
        self._db = sqlite3.connect(
            f"file:{gen_dir / 'documents.sqlite'}?mode=ro&immutable=1",
            uri=True,
            check_same_thread=False,
        )
        with self._db_lock:
            rows = self._db.execute(
                "SELECT row, id, hash, format, size, locations, note FROM documents ORDER BY row"
            ).fetchall()
        self.documents = [
            DocumentInfo(
                r[0], r[1], r[2], r[3], r[4], tuple((int(a), str(b)) for a, b in json.loads(r[5])), r[6]
            )
            for r in rows
        ]
        problems = []
        if len(self.chunks) != counts.chunks or self.dense.ntotal != counts.chunks:
            problems.append(
                f"{counts.chunks} chunks in the manifest, {len(self.chunks)} in chunks.npy, "
                f"{self.dense.ntotal} vectors"
            )
        if len(self.documents) != counts.documents:
            problems.append(f"{counts.documents} documents in the manifest, {len(self.documents)} stored")
        if self.dense.d != manifest.model.dimension:
            problems.append(f"vector dimension {self.dense.d} != model dimension {manifest.model.dimension}")
        if (
            len(self.units) != counts.units
            or len(self.unit_vectors) != counts.units
            or len(self.unit_ptr) != counts.chunks + 1
            or (len(self.unit_ptr) and self.unit_ptr[-1] != len(self.units))
            or len(self.chunk_keys) != counts.chunks
        ):
            problems.append("unit or chunk-key counts differ from the manifest")
        if problems:
            raise IndexCorruptError(f"{gen_dir}: " + "; ".join(problems))

    def _text(self, row: int) -> str:
        with self._db_lock:
            if self._db is None:
                raise IndexCorruptError(f"{self.dir}: closed")
            found = self._db.execute("SELECT text FROM documents WHERE row = ?", (row,)).fetchone()
        if found is None:
            raise IndexCorruptError(f"{self.dir}: document row {row} missing")
        return str(found[0])

    def document(self, row: int) -> Document:
        """The stored document (text included) at ``row``."""
        info = self.documents[row]
        return Document(info.id, info.hash, self.text(row), info.format, info.size, info.locations, info.note)

    def chunk_text(self, row: int) -> str:
        """The text of chunk ``row``."""
        doc, start, end = (int(x) for x in self.chunks[row])
        return self.text(doc)[start:end]

    def units_in(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """Sentence units of chunk ``row``: spans (k, 2) in document offsets, vectors (k, d)."""
        lo, hi = int(self.unit_ptr[row]), int(self.unit_ptr[row + 1])
        return self.units[lo:hi], self.unit_vectors[lo:hi]

    def close(self) -> None:
        with self._db_lock:
            if self._db is not None:
                self._db.close()


def _open_vectors(gen_dir: Path, manifest: dict[str, Any]) -> tuple[np.ndarray, dense_vectors.DenseIndex]:
    """The chunk vectors (memory-mapped) and their search structure.

    Format 2 kept the vectors only in an IndexIDMap2(IndexFlatIP): they are read back from it
    (ids were the rows 0..n-1) and searched exactly.
    """
    if manifest["format_version"] == 2:
        import faiss

        index: Any = faiss.read_index(str(gen_dir / "vectors.faiss"))
        n, dim = index.ntotal, index.d
        flat = faiss.downcast_index(index.index)
        vecs = flat.reconstruct_n(0, n) if n else np.zeros((0, dim), np.float32)
        ids = faiss.vector_to_array(index.id_map)
        if not np.array_equal(ids, np.arange(n)):
            raise IndexCorruptError(f"{gen_dir / 'vectors.faiss'}: ids are not the chunk rows")
        return vecs, dense_vectors.DenseIndex(dense_vectors.DenseParams(), vecs)
    vecs = np.load(gen_dir / "vectors.npy", allow_pickle=False, mmap_mode="r")
    if vecs.ndim != 2 or vecs.dtype != np.float32:
        raise IndexCorruptError(
            f"{gen_dir / 'vectors.npy'}: expected float32 (n, d), got {vecs.dtype} {vecs.shape}"
        )
    params = dense_vectors.DenseParams.from_manifest(manifest.get("dense"))
    path = gen_dir / dense_vectors.FILE if params.type != "flat" else None
    if path is not None and dense_vectors.FILE not in manifest["files"]:
        raise IndexCorruptError(f"{gen_dir}: the manifest does not list {dense_vectors.FILE}")
    return vecs, dense_vectors.DenseIndex(params, vecs, path)


def open_live(root: Path, fingerprint: str | None) -> tuple[Generation, list[str]]:
    """Load the live generation, falling back to older good ones; return it and warnings.

    Raises:
        IndexNotFoundError: no index at ``root``.
        ModelMismatchError: the index was built with another model.
        IndexCorruptError: no generation passes verification.
    """
    names = generation_names(root)
    if not names:
        raise IndexNotFoundError(f"no index at {root}: build one with `qa index --index {root}`")
    live = read_pointer(root)
    order = sorted(names, key=lambda n: (n != live, -int(n.split("-")[1])))
    warnings: list[str] = []
    if live is None or live not in names:
        warnings.append(f"{root / POINTER} is missing or invalid; using the newest good generation")
    errors = []
    for name in order:
        try:
            manifest = verify(root / name, fingerprint)
            gen = Generation(root / name, manifest)
        except ModelMismatchError:
            raise
        except IndexCorruptError as exc:
            errors.append(str(exc))
            warnings.append(f"skipping generation {name}: {exc}")
            log.warning("skipping generation %s: %s", name, exc)
            continue
        return gen, warnings
    raise IndexCorruptError(f"no usable generation in {root}: " + " | ".join(errors))
