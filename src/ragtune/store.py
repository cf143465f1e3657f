"""LanceDB storage: one table of chunks per (corpus fingerprint, chunking, embedder, index settings).

A table is built in full and then tagged ``ragtune-complete``; a table without the tag (a build that was killed)
is dropped and rebuilt, so a half-written index is never searched. Any LanceDB URI works; the default is a local
directory.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence

os.environ.setdefault("LANCEDB_LOG", "error")  # lance prints a deprecation line per hybrid query otherwise

import numpy as np
import pyarrow as pa

from ragtune.errors import DataError
from ragtune.types import Chunk

COMPLETE_TAG = "ragtune-complete"
#: ``vector_index: auto`` builds an ANN index from this many rows on (brute force is exact and fast below it).
ANN_MIN_ROWS = 20_000
COLUMNS = ["id", "doc_id", "text", "start", "end"]
#: every chunk is scanned for planted instructions when it is written: its injection score, and the reasons when it
#: was flagged ("" when not); null in a table written without a scan
SCAN_COLUMNS = ["injection_score", "injection_reasons"]


#: search settings on an ANN index: the results re-scored exactly from the stored vectors (``refine``: this many
#: times the results asked for), which undoes the index's quantisation, and HNSW's candidate list (``ef``: at least
#: this, and every candidate the re-scoring reads); BENCHMARKS.md, "A million chunks", measures what they buy: ef 500
#: holds recall@10 at 0.96-0.99 from 100k to 1M chunks for 1-2 ms more than ef 200 (0.92-0.97). Product quantisation
#: loses more of the order, and more as the table grows: on MiniLM vectors of real texts (``benchmarks/ann_recall.py``)
#: re-scoring ten-fold gave recall@10 0.98 at 18,000 rows and 0.92 at 100,000, thirty-fold 0.97 at 100,000 for
#: about 4 ms more, so IVF_PQ's results are re-scored thirty-fold
ANN_EF = 500
ANN_REFINE = 5
PQ_REFINE = 30
#: IVF_PQ trains 256 centroids per sub-vector: a table needs at least that many rows
PQ_MIN_ROWS = 256


def build_ann(table, vector_index: str, rows: int) -> None:
    """Build the ANN index ``vector_index`` asks for: IVF_HNSW_SQ for ``hnsw``, or ``auto`` from ANN_MIN_ROWS rows
    on (LanceDB's partitioning: one HNSW graph per million rows or so); IVF_PQ for ``ivf_pq`` from PQ_MIN_ROWS on."""
    from lancedb.index import HnswSq, IvfPq

    if vector_index == "hnsw" or (vector_index == "auto" and rows >= ANN_MIN_ROWS):
        table.create_index("vector", config=HnswSq(distance_type="cosine"))
    elif vector_index == "ivf_pq" and rows >= PQ_MIN_ROWS:
        table.create_index("vector", config=IvfPq(distance_type="cosine"))


def ann_search(table) -> dict[str, int] | None:
    """How to search ``table``'s ANN index (HNSW: ``ANN_EF`` and ``ANN_REFINE``; IVF_PQ: ``PQ_REFINE``), or None
    when it has none."""
    kinds = [i.index_type for i in table.list_indices() if i.index_type != "FTS" and "vector" in i.columns]
    if not kinds:
        return None
    pq = kinds[0].replace("_", "").lower() == "ivfpq"  # LanceDB names it IvfPq (IVF_PQ in its statistics)
    return {"refine_factor": PQ_REFINE} if pq else {"ef": ANN_EF, "refine_factor": ANN_REFINE}


def sql_in(column: str, values: Iterable[str]) -> str:
    """A LanceDB filter ``column IN ('a', 'b')``, each value quoted as an SQL string literal."""
    return f"{column} IN ({', '.join(sql_text(v) for v in values)})"


def sql_text(value: str) -> str:
    """``value`` as an SQL string literal for a LanceDB filter."""
    return "'" + value.replace("'", "''") + "'"


def connect(uri: str):
    import lancedb

    return lancedb.connect(uri)


def table_name(index_key: str) -> str:
    return f"chunks_{index_key}"


def table_names(db) -> list[str]:
    names, token = [], None
    while True:
        page = db.list_tables(page_token=token)
        names.extend(page.tables)
        token = page.page_token
        if not token:
            return names


def read_arrow(table, columns: list[str]):
    """All rows of ``table`` (at its checked-out version), only ``columns``, as an Arrow table: a scan that leaves the
    vectors on disk, where ``table.to_arrow()`` would load them all."""
    return table.search().select(columns).limit(max(1, table.count_rows())).to_arrow()


def read_columns(table, columns: list[str]) -> list[dict]:
    """``read_arrow`` as Python rows."""
    return read_arrow(table, columns).to_pylist()


def distinct(table, column: str) -> set:
    return {r[column] for r in read_columns(table, [column])}


def open_index(db, index_key: str):
    """The complete table for this key, or None. An incomplete leftover (opened, but never tagged complete) is
    dropped. A table that cannot be opened or read is left alone and the error says so: a passing failure of a remote
    LanceDB must not delete a good index."""
    name = table_name(index_key)
    if name not in table_names(db):
        return None
    try:
        table = db.open_table(name)
        complete = COMPLETE_TAG in table.tags.list()
    except Exception as exc:
        raise DataError(f"index table {name} could not be opened ({type(exc).__name__}: {exc}); it was left as it "
                        "is: retry, or drop it to rebuild") from exc
    if not complete:
        db.drop_table(name)
        return None
    return table


def chunk_schema(dim: int | None, extra: Sequence[str] = (), metadata: dict[str, str] | None = None,
                 multivector: bool = False, dtype: pa.DataType = pa.float32()) -> pa.Schema:
    """The chunk table's columns; ``extra`` names further string columns (the production table's bookkeeping).
    ``dim`` None: a full-text table, without a vector column; ``multivector``: the vector column holds each chunk's
    token vectors (late interaction), which LanceDB searches by MaxSim; ``dtype``: a vector's numbers (float32, or
    float16 for ``vector_dtype: float16``)."""
    vector = []
    if dim is not None:
        vector = [("vector", pa.list_(pa.list_(pa.float32(), dim)) if multivector else pa.list_(dtype, dim))]
    return pa.schema(
        [("id", pa.string()), ("doc_id", pa.string()), ("text", pa.string()), ("start", pa.int64()),
         ("end", pa.int64()), *vector, ("injection_score", pa.float32()),
         ("injection_reasons", pa.string())] + [(n, pa.string()) for n in extra],
        metadata={k.encode(): v.encode() for k, v in (metadata or {}).items()},
    )


#: one step of a table write: chunks, their injection scan ((score, reasons) each, or None for unscanned rows), and
#: their vectors (an array, a list of token-vector matrices, or None: a full-text table)
Step = tuple[Sequence[Chunk], Sequence[tuple[float, str]] | None, np.ndarray | list[np.ndarray] | None]


def chunk_rows(steps: Iterable[Step], extra: Callable[[Chunk], dict] | None = None,
               metadata: dict[str, str] | None = None) -> pa.RecordBatchReader:
    """The chunks with their vectors and scan as a stream of record batches, one per step: LanceDB writes the stream
    as one commit, and only one step is ever in memory, whatever the corpus. ``extra`` adds string columns."""
    steps = (s for s in steps if len(s[0]))
    first = next(steps, None)
    if first is None:
        raise ValueError("no chunks to write")
    names = list(extra(first[0][0])) if extra else []
    vectors = first[2]
    multivector = vectors is not None and not isinstance(vectors, np.ndarray)  # a list of token-vector matrices
    dim = None if vectors is None else int((vectors[0] if multivector else vectors).shape[1])
    half = isinstance(vectors, np.ndarray) and vectors.dtype == np.float16  # the vectors' type is the column's
    schema = chunk_schema(dim, names, metadata, multivector, pa.float16() if half else pa.float32())

    def batches() -> Iterator[pa.RecordBatch]:
        for step in itertools.chain([first], steps):
            chunks, scan, vectors = step
            if (vectors is None) != (dim is None) or (vectors is not None and len(vectors) != len(chunks)):
                raise ValueError(f"{len(chunks)} chunks but {0 if vectors is None else len(vectors)} vectors")
            if scan is not None and len(scan) != len(chunks):
                raise ValueError(f"{len(chunks)} chunks but {len(scan)} scan verdicts")
            yield step_batch(step, schema, extra)

    return pa.RecordBatchReader.from_batches(schema, batches())


def step_batch(step: Step, schema: pa.Schema, extra: Callable[[Chunk], dict] | None = None) -> pa.RecordBatch:
    """One step's rows in the columns of ``schema`` (a ``chunk_schema``)."""
    chunks, scan, vectors = step
    values = [[c.id for c in chunks], [c.doc_id for c in chunks], [c.text for c in chunks],
              [c.start for c in chunks], [c.end for c in chunks]]
    columns = [pa.array(v, schema.field(i).type) for i, v in enumerate(values)]
    if vectors is not None:
        kind = schema.field("vector").type  # one vector per chunk, or each chunk's token vectors
        dim = (kind if pa.types.is_fixed_size_list(kind) else kind.value_type).list_size
        columns.append(vector_column(vectors, dim))
    verdicts = scan if scan is not None else [(None, None)] * len(chunks)
    columns += [pa.array([v[0] for v in verdicts], pa.float32()), pa.array([v[1] for v in verdicts], pa.string())]
    names = schema.names[len(columns):]
    rows = [extra(c) for c in chunks] if names else []
    columns += [pa.array([r[n] for r in rows], pa.string()) for n in names]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def vector_column(vectors: np.ndarray | list[np.ndarray], dim: int) -> pa.Array:
    """One vector per row (an array: float16 stays float16, anything else becomes float32), or each row's token
    vectors (a list of matrices) as a list of float32 vectors."""
    if isinstance(vectors, np.ndarray):
        dtype = np.float16 if vectors.dtype == np.float16 else np.float32
        flat = pa.array(np.ascontiguousarray(vectors, dtype=dtype).reshape(-1), type=pa.from_numpy_dtype(dtype))
        return pa.FixedSizeListArray.from_arrays(flat, dim)
    offsets = np.concatenate([[0], np.cumsum([len(v) for v in vectors])]).astype(np.int32)
    flat = pa.array(np.concatenate(vectors).astype(np.float32).reshape(-1), type=pa.float32())
    return pa.ListArray.from_arrays(pa.array(offsets), pa.FixedSizeListArray.from_arrays(flat, dim))


def write_chunks(db, name: str, steps: Iterable[Step], table=None, *, extra: Callable[[Chunk], dict] | None = None,
                 metadata: dict[str, str] | None = None):
    """The one write of chunk rows, for experiment builds and incremental syncs alike: the steps' chunks with their
    vectors and injection scan, streamed in one commit, into ``table`` or a new table ``name``."""
    rows = chunk_rows(steps, extra, metadata)
    if table is None:
        return db.create_table(name, rows, schema=rows.schema)
    table.add(rows)
    return table


def index_table(table, retrieval) -> None:
    """The search indexes a configuration's ``retrieval`` settings ask for: full text over ``text``, and the ANN
    index when it is due (``build_ann``)."""
    _fts_index(table, retrieval)
    if "vector" in table.schema.names:
        build_ann(table, retrieval.vector_index, table.count_rows())


def _fts_index(table, retrieval) -> None:
    from lancedb.index import FTS

    from ragtune.language import AUTO, fts_analyser

    fts = retrieval.fts
    sample = [r["text"] for r in table.search().select(["text"]).limit(400).to_list()] if fts.language == AUTO else []
    analyser = {"stem": fts.stem, "remove_stop_words": fts.remove_stop_words, **fts_analyser(fts.language, sample)}
    table.create_index("text", config=FTS(**analyser))


def needs_index(table) -> bool:
    """True when rows were written after the last full-text index build (or none was built)."""
    fts = [i for i in table.list_indices() if i.index_type == "FTS"]
    if not fts:
        return True
    stats = table.index_stats(fts[0].name)
    return stats is None or stats.num_unindexed_rows > 0


def reindex(table, retrieval) -> None:
    """Bring the search indexes up to the current rows: build the ones missing (full text; the ANN index once the
    table is large enough), fold the rows written since the last build into the existing ones (LanceDB's
    ``optimize``: an incremental update, not a rebuild; deleted rows leave the results), and compact."""
    kinds = [i.index_type for i in table.list_indices()]
    if "FTS" not in kinds:
        _fts_index(table, retrieval)
    if "vector" in table.schema.names and all(k == "FTS" for k in kinds):
        build_ann(table, retrieval.vector_index, table.count_rows())
    table.optimize()


def build_index(db, index_key: str, steps: Iterable[Step], retrieval, metadata: dict[str, str] | None = None):
    """A complete table in one go: write the chunks (``write_chunks``), build the search indexes, then mark the
    table complete. A failure (of the steps' model too: they are computed as the write consumes them) drops what was
    written."""
    name = table_name(index_key)
    if name in table_names(db):
        db.drop_table(name)
    try:
        table = write_chunks(db, name, steps, metadata=metadata)
        index_table(table, retrieval)
        table.tags.create(COMPLETE_TAG, table.version)
    except BaseException:
        if name in table_names(db):
            db.drop_table(name)
        raise
    return table


def has_scan(table) -> bool:
    return all(c in table.schema.names for c in SCAN_COLUMNS)


def count_flagged(table) -> int:
    return table.count_rows("injection_reasons != ''") if has_scan(table) else 0


def flagged(table) -> list[dict]:
    """The chunks the injection scan flagged when they were written: id, doc_id, score, reasons, text."""
    if not has_scan(table):
        return []
    rows = read_columns(table, ["id", "doc_id", "text", *SCAN_COLUMNS])
    return sorted((r for r in rows if r["injection_reasons"]), key=lambda r: (-r["injection_score"], r["id"]))
