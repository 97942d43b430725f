"""Distributed ingestion on Ray Data: a build's prepare and embed stages on a Ray cluster.

``RayMapper`` plugs into ``qa.building.build_index(mapper=...)`` (``qa index --ray``):

- prepare: a dataset of the files to redo (id, path, size; their bytes too with
  ``ship_bytes=True``, for workers that do not see the corpus folder), prepared by
  ``map_batches`` tasks with ``qa.preparing.prepare`` (one ``IsolatedParser`` per batch);
- embed: a dataset of the chunks without a stored vector, sorted by length so batches pad
  little, embedded by ``map_batches`` on an actor pool, one actor per CPU of the cluster,
  each loading the model once.

Results stream back to the driver, which plans, assembles and commits exactly as a local build
does: unchanged files are never sent, failures per file come back as reasons, and a dead
worker is retried ``retries`` times before the build fails with the previous generation still
serving. Rows are Arrow columns of strings, integers and bytes (no pickled objects).

Before any work, every node is checked: qa imports there, and the model it finds has the
driver's fingerprint; otherwise one line says which node lacks what.

Needs the ``ray`` extra (``pip install 'qa[ray]'``). Non-goals: autoscaling, GPUs, object
stores other than Ray's own.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from qa.building import Embedded, EmbedItem
from qa.documents import Document, read_source
from qa.embedding import Embedder, SentenceTransformerEmbedder, default_model_path, get_embedder
from qa.errors import BuildError, DocumentError, ModelLoadError, QAError
from qa.parsing import IsolatedParser
from qa.preparing import Chunk, PrepareConfig, Prepared, PrepareTask, TokenStarts, prepare

log = logging.getLogger(__name__)

FILES_PER_BATCH = 16
CHUNKS_PER_BATCH = 128
CHECK_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class EmbedderSpec:
    """How a worker gets the driver's model: the same folder (None: the bundled default
    model, found in the worker's own environment), precision and batch size, one thread."""

    model: str | None
    precision: str
    batch_size: int
    fingerprint: str
    threads: int = 1

    def load(self) -> Embedder:
        """This process's embedder for the spec.

        Raises:
            ModelLoadError: the model is missing here, or differs from the driver's.
        """
        emb = get_embedder(
            Path(self.model) if self.model else None,
            self.threads,
            self.batch_size,
            role="build",
            precision=self.precision,
        )
        if emb.fingerprint != self.fingerprint:
            raise ModelLoadError(
                f"the model at {emb.path} differs from the driver's (fingerprint "
                f"{emb.fingerprint[:12]} vs {self.fingerprint[:12]}): install the same model on every node"
            )
        return emb


def spec_of(embedder: Embedder) -> EmbedderSpec | Embedder:
    """A spec for a sentence-transformers embedder; any other embedder is shipped as it is."""
    if not isinstance(embedder, SentenceTransformerEmbedder):
        return embedder
    default = embedder.path.resolve() == default_model_path().resolve()
    return EmbedderSpec(
        None if default else str(embedder.path), embedder.precision, embedder.batch_size, embedder.fingerprint
    )


def _load(spec: EmbedderSpec | Embedder) -> Embedder:
    return spec.load() if isinstance(spec, EmbedderSpec) else spec


@functools.lru_cache(maxsize=4)
def _tokenizer(path: str) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)
    tok.no_padding()
    tok.no_truncation()
    return tok


def _token_starts(spec: EmbedderSpec | Embedder) -> TokenStarts:
    """The tokenizer prepare chunks with, loaded without torch for the bundled model.

    The bundled model's ``tokenizer.json`` is the tokenizer its embedder uses (the same JSON;
    ``tests/test_ray.py`` checks the offsets agree), so prepare workers read that file in 60 ms
    instead of loading torch and the model (4-16 s here). Any other model is loaded whole.
    """
    if isinstance(spec, EmbedderSpec) and spec.model is None:
        path = _load(spec).path / "tokenizer.json"  # type: ignore[attr-defined]
        if path.is_file():
            tok = _tokenizer(str(path))

            def token_starts(text: str) -> np.ndarray:
                # as SentenceTransformerEmbedder.token_starts: starts of non-empty tokens
                enc = tok.encode(text, add_special_tokens=False)
                return np.fromiter((a for a, b in enc.offsets if b > a), dtype=np.int64)

            return token_starts
    return _load(spec).token_starts


def _check_node(spec: EmbedderSpec | Embedder) -> str:
    """Runs on each node before a build: '' when qa and the model are usable there."""
    try:
        _load(spec).fingerprint  # noqa: B018  # hashes the model folder, no torch import
    except (QAError, OSError) as exc:
        return f"{socket.gethostname()}: {exc}"
    return ""


# ------------------------------------------------------------------------------ row encodings


def _prepared_row(p: Prepared) -> dict[str, Any]:
    doc = p.document
    units = [u for c in p.chunks for u in c.units]
    return {
        "id": p.id,
        "error": p.error,
        "ok": doc is not None,
        "hash": doc.hash if doc else "",
        "text": doc.text if doc else "",
        "format": doc.format if doc else "",
        "size": doc.size if doc else 0,
        "locations": json.dumps(doc.locations if doc else []),
        "note": doc.note if doc else "",
        "spans": np.asarray([(c.start, c.end) for c in p.chunks], np.int64).tobytes(),
        "unit_counts": np.asarray([len(c.units) for c in p.chunks], np.int64).tobytes(),
        "units": np.asarray(units, np.int64).tobytes(),
        "keys": b"".join(p.keys),
    }


def _prepared_from_row(row: dict[str, Any]) -> Prepared:
    if not row["ok"]:
        return Prepared(row["id"], None, error=row["error"])
    doc = Document(
        row["id"],
        row["hash"],
        row["text"],
        row["format"],
        int(row["size"]),
        tuple((int(a), str(b)) for a, b in json.loads(row["locations"])),
        row["note"],
    )
    spans = np.frombuffer(row["spans"], np.int64).reshape(-1, 2).tolist()
    counts = np.frombuffer(row["unit_counts"], np.int64).tolist()
    units = np.frombuffer(row["units"], np.int64).reshape(-1, 2).tolist()
    chunks, at = [], 0
    for (start, end), k in zip(spans, counts, strict=True):
        chunks.append(Chunk(start, end, tuple((a, b) for a, b in units[at : at + k])))
        at += k
    keys = row["keys"]
    return Prepared(row["id"], doc, tuple(chunks), tuple(keys[i : i + 16] for i in range(0, len(keys), 16)))


def _prepare_batch(
    batch: dict[str, np.ndarray], config: PrepareConfig, spec: EmbedderSpec | Embedder
) -> dict[str, list[Any]]:
    """Ray task: prepare a batch of files (a pure function of their bytes and settings)."""
    token_starts = _token_starts(spec)
    out: list[dict[str, Any]] = []
    with IsolatedParser(config.parse_timeout) as parser:
        for i, doc_id in enumerate(batch["id"]):
            data = bytes(batch["data"][i]) if "data" in batch else None
            task = PrepareTask(str(doc_id), str(batch["path"][i]), int(batch["size"][i]), data)
            out.append(_prepared_row(prepare(task, config, parser.parse, token_starts)))
    return {k: [r[k] for r in out] for k in out[0]} if out else {}


class _EmbedActor:
    """Ray actor: loads the model once, then embeds batches of chunks."""

    def __init__(self, spec: EmbedderSpec | Embedder) -> None:
        self.embedder = _load(spec)
        self.embedder.encode(["load the model now, not in the first batch"])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        spans = [np.frombuffer(u, np.int64).reshape(-1, 2).tolist() for u in batch["units"]]
        units = [[(a, b) for a, b in s] for s in spans]
        vecs, unit_vecs = self.embedder.encode_chunks([str(t) for t in batch["text"]], units)
        return {
            "key": [bytes(k) for k in batch["key"]],
            "vector": [np.asarray(v, np.float32).tobytes() for v in vecs],
            # stored as float16 in the index anyway: the same cast the driver would make
            "unit_vectors": [np.asarray(u, np.float16).tobytes() for u in unit_vecs],
        }


# ----------------------------------------------------------------------------------- the mapper


class RayMapper:
    """Runs a build's prepare and embed stages on Ray Data. Use as a context manager.

    Args:
        address: "auto" joins the cluster named by ``RAY_ADDRESS`` when it is set, else starts
            a local Ray instance; any other value is a cluster address to join, e.g.
            "10.0.0.5:6379".
        ship_bytes: send file bytes to the workers instead of paths (workers without the
            corpus folder on a shared filesystem).
        retries: times a task or actor is retried after its worker died.
    """

    name = "ray"

    def __init__(self, address: str = "auto", ship_bytes: bool = False, retries: int = 3) -> None:
        self.address = address
        self.ship_bytes = ship_bytes
        self.retries = retries
        self.cpus = 0
        self.nodes = 0
        self._started = False
        self._checked: set[str] = set()

    def __enter__(self) -> RayMapper:
        self.connect()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def connect(self) -> None:
        """Start or join the cluster.

        Raises:
            BuildError: Ray is not installed, or the address cannot be reached.
        """
        # Ray Data re-reads its log level from here whenever it configures logging: without it,
        # each dataset prints INFO lines into the CLI's output.
        os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")
        # auto: RAY_ADDRESS when set, else a new local instance ("local": plain ray.init() would
        # join whatever /tmp/ray/ray_current_cluster names, even a cluster that died long ago)
        address = (os.environ.get("RAY_ADDRESS") or "local") if self.address == "auto" else self.address
        joining = None if address == "local" else address
        if joining:
            _reachable(joining)  # before Ray is imported: a bad address fails in a second
        if not joining or _is_loopback(joining):
            # Ray rewrites 127.0.0.1 to the machine's outward address and listens on every
            # interface unless this is 0: a local instance, or a loopback cluster, stays local.
            # Ray reads it once, when first imported in the process.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        try:
            import ray
        except ImportError as exc:
            raise BuildError("Ray is not installed: pip install 'qa[ray]' (or ray[data])") from exc
        if ray.is_initialized():
            return self._describe()
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
                configure_logging=False,
            )
        except Exception as exc:  # ConnectionError, RuntimeError, ValueError: all one line
            raise BuildError(f"cannot start or join Ray at {self.address}: {_why(exc)}") from exc
        self._started = True
        logging.getLogger("ray.data").setLevel(os.environ["RAY_DATA_LOG_LEVEL"])
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        self._describe()

    def _describe(self) -> None:
        import ray

        self.nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        self.cpus = int(ray.cluster_resources().get("CPU", 0))
        self.name = f"ray ({self.nodes} node{'s' * (self.nodes != 1)}, {self.cpus} CPUs)"
        if self.cpus < 1:
            raise BuildError(f"the Ray cluster at {self.address} has no CPUs to run on")

    def close(self) -> None:
        """Disconnect (and stop the local instance if this mapper started one)."""
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def check(self, spec: EmbedderSpec | Embedder) -> None:
        """Check every alive node: qa imports and the model matches the driver's.

        Raises:
            BuildError: one line naming the node and what it lacks.
        """
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        key = repr(spec)
        if key in self._checked:
            return
        remote = ray.remote(num_cpus=0, max_retries=0)(_check_node)
        refs = {
            node["NodeManagerAddress"]: remote.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ).remote(spec)
            for node in ray.nodes()
            if node.get("Alive")
        }
        for where, ref in refs.items():
            try:
                problem = ray.get(ref, timeout=CHECK_TIMEOUT_S)
            except Exception as exc:  # qa not importable there, or the node died
                raise BuildError(
                    f"Ray node {where} cannot run qa ({_first_line(exc)}): install qa[ray] and the "
                    "model package on every node"
                ) from exc
            if problem:
                raise BuildError(f"Ray node {where} cannot embed: {problem}")
        self._checked.add(key)

    def prepare(
        self, tasks: Sequence[PrepareTask], config: PrepareConfig, embedder: Embedder
    ) -> Iterator[Prepared]:
        """Prepare ``tasks`` on the cluster; results stream back in completion order."""
        if not tasks:
            return
        import ray

        self.connect()
        spec = spec_of(embedder)
        self.check(spec)
        rows: list[dict[str, Any]] = []
        for t in tasks:
            rows.append({"id": t.id, "path": t.path, "size": t.size})
            if self.ship_bytes:  # read here: the workers may not see the corpus folder
                try:
                    rows[-1]["data"] = read_source(t.source())
                except DocumentError as exc:
                    rows.pop()
                    yield Prepared(t.id, None, error=str(exc))
        ds: Any = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // FILES_PER_BATCH)))
        ds = _map_batches(
            ds,
            _prepare_batch,
            batch_size=FILES_PER_BATCH,
            batch_format="numpy",
            fn_kwargs={"config": config, "spec": spec},
            num_cpus=1,
            max_retries=self.retries,
        )
        with _cluster_errors("preparing documents"):
            for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
                for row in batch.to_dict("records"):
                    yield _prepared_from_row(row)

    def embed(
        self, items: Sequence[EmbedItem], embedder: Embedder, progress: Callable[[int, int], None]
    ) -> Iterator[Embedded]:
        """Embed ``items`` on an actor pool; batches stream back as they are done."""
        if not items:
            return
        import ray

        self.connect()
        spec = spec_of(embedder)
        self.check(spec)
        order = sorted(range(len(items)), key=lambda i: -len(items[i].text))  # similar lengths together
        rows = [
            {"key": it.key, "text": it.text, "units": np.asarray(it.units, np.int64).tobytes()}
            for it in (items[i] for i in order)
        ]
        batches = -(-len(rows) // CHUNKS_PER_BATCH)
        actors = max(1, min(self.cpus, batches))
        ds: Any = ray.data.from_items(rows, override_num_blocks=max(actors, batches))
        ds = _map_batches(
            ds,
            _EmbedActor,
            batch_size=CHUNKS_PER_BATCH,
            batch_format="numpy",
            fn_constructor_kwargs={"spec": spec},
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=1,
            max_restarts=self.retries,
            max_task_retries=self.retries,
        )
        dim = embedder.dimension
        done = 0
        with _cluster_errors("embedding chunks"):
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                keys = [bytes(k) for k in batch["key"]]
                vecs = np.vstack([np.frombuffer(v, np.float32) for v in batch["vector"]]).reshape(-1, dim)
                units = [np.frombuffer(u, np.float16).reshape(-1, dim) for u in batch["unit_vectors"]]
                done += len(keys)
                progress(done, len(items))
                yield keys, vecs, units


class _cluster_errors:
    """Turn whatever Ray raises while a dataset runs into one BuildError line."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if ev is None or isinstance(ev, (QAError, KeyboardInterrupt, GeneratorExit)):
            return
        if isinstance(ev, Exception):
            raise BuildError(
                f"the Ray cluster failed while {self.stage} ({type(ev).__name__}: {_first_line(ev)}); "
                "the previous index is still live"
            ) from ev


def _map_batches(ds: Any, fn: Any, **kwargs: Any) -> Any:
    """``map_batches`` with retry counts: Ray 2.60 takes them as ``ray_remote_args`` and warns
    that these are deprecated, with no named replacement yet (hence ray < 2.64 in the extra)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        return ds.map_batches(fn, **kwargs)


def _why(exc: BaseException) -> str:
    """The reason a connection failed; Ray buries a refused token in the exception chain."""
    seen: BaseException | None = exc
    while seen is not None:
        if "InvalidAuthToken" in str(seen) or type(seen).__name__ == "AuthenticationError":
            return (
                "the cluster refused this client's authentication token: set RAY_AUTH_MODE=token and "
                "RAY_AUTH_TOKEN (or ~/.ray/auth_token) to the cluster's token"
            )
        seen = seen.__cause__ or seen.__context__
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def _is_loopback(address: str) -> bool:
    import ipaddress

    host = address.removeprefix("ray://").rpartition(":")[0].strip("[]")
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast, in one line, when nothing listens at ``address`` (host:port)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise BuildError(f"--ray {address!r} is not an address: use HOST:PORT (e.g. 127.0.0.1:6379) or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise BuildError(
            f"cannot reach the Ray cluster at {address} ({reason}): start it with `ray start --head` "
            "or use --ray auto"
        ) from exc
