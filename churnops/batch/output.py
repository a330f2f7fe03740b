"""Ranking the scored batch and writing the retention list: sorted Parquet parts and one CSV.

Ranks are global (``targeting.rank_order`` over every row's expected net gain, held in memory as
two float arrays: 16 bytes a customer), the contact decision is ``targeting.contact_mask``. The
list is written in rank order without holding it whole: rows are distributed by rank range into
one bucket per output part (a list of ``part_rows`` rows or fewer skips this), then each bucket
is sorted and written as ``parquet/part-NNNNN.parquet`` and appended to ``retention_list.csv``.
Everything goes to a hidden sibling folder renamed into place at the end, so a failed run leaves
nothing at the output path.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from pydantic import BaseModel

from churnops.batch.errors import BatchDataError
from churnops.batch.scoring import CONTACT, GAIN, PROBABILITY, RANK, ScoredBatch
from churnops.modeling.targeting import TargetingConfig, contact_mask, rank_order

DEFAULT_PART_ROWS = 1_000_000
PARQUET_DIR = "parquet"
CSV_NAME = "retention_list.csv"
HISTOGRAM_BINS = 20


class RetentionList(BaseModel):
    """Where a retention list is, and what it holds; ``to_pandas()`` / ``dataset()`` read it."""

    path: str
    parquet_files: list[str]
    csv_file: str | None = None
    rows: int
    contacts: int
    columns: list[str]
    model_name: str = ""
    model_version: str = ""

    def dataset(self) -> object:
        import pyarrow.dataset as pads

        return pads.dataset(self.parquet_files, format="parquet")

    def to_pandas(self, columns: list[str] | None = None) -> object:
        return pq.read_table(self.parquet_files, columns=columns).to_pandas() if len(self.parquet_files) > 1 \
            else pq.read_table(self.parquet_files[0], columns=columns).to_pandas()


class ListFigures(BaseModel):
    """Figures of the written list for the summary."""

    rows: int
    contacts: int
    expected_net_gain: float
    spend: float
    score_histogram: list[int]
    top_reasons: dict[str, int]


def ranks(scored: ScoredBatch, targeting: TargetingConfig, f1_threshold: float,
          value_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Each row's rank (1 = contact first) and contact decision, in input order."""
    order = rank_order(scored.net_gain, scored.probabilities)
    rank = np.empty(scored.rows, dtype=np.int64)
    rank[order] = np.arange(1, scored.rows + 1)
    mask = contact_mask(scored.probabilities, scored.net_gain, targeting, f1_threshold, value_threshold)
    return rank, mask


def _with_decisions(table: pa.Table, rank: np.ndarray, mask: np.ndarray, id_column: str, top_k: int) -> pa.Table:
    reason_names = [f"reason_{i}" for i in range(1, top_k + 1)]
    contributions = [f"reason_{i}_contribution" for i in range(1, top_k + 1)]
    columns = {RANK: pa.array(rank), id_column: table.column(id_column), PROBABILITY: table.column(PROBABILITY),
               CONTACT: pa.array(mask), GAIN: table.column(GAIN)}
    columns.update({name: table.column(name) for name in [*reason_names, *contributions]})
    return pa.table(columns)


def _sorted(table: pa.Table) -> pa.Table:
    return table.take(pc.sort_indices(table, sort_keys=[(RANK, "ascending")]))


class _Writer:
    """Parquet parts and the CSV, with the list's figures counted on the way."""

    def __init__(self, folder: Path, csv: bool, top_k: int) -> None:
        self.folder = folder
        (folder / PARQUET_DIR).mkdir(parents=True)
        self.files: list[Path] = []
        self.csv: pacsv.CSVWriter | None = None
        self.csv_path = folder / CSV_NAME if csv else None
        self.top_k = top_k
        self.reasons: Counter[str] = Counter()

    def write(self, table: pa.Table) -> None:
        path = self.folder / PARQUET_DIR / f"part-{len(self.files):05d}.parquet"
        # Dictionary-encode only the reason labels (few distinct values); ids are unique, so a
        # dictionary would only cost time.
        reasons = [f"reason_{i}" for i in range(1, self.top_k + 1)]
        pq.write_table(table, path, compression="snappy", use_dictionary=reasons or False)
        self.files.append(path)
        if self.csv_path is not None:
            if self.csv is None:
                self.csv = pacsv.CSVWriter(self.csv_path, table.schema)
            self.csv.write_table(table)
        if self.top_k:
            contacted = table.filter(table.column(CONTACT))
            for i in range(1, self.top_k + 1):
                counts = pc.value_counts(contacted.column(f"reason_{i}")).to_pylist()
                self.reasons.update({c["values"]: c["counts"] for c in counts if c["values"]})

    def close(self) -> None:
        if self.csv is not None:
            self.csv.close()


def write_list(scored: ScoredBatch, rank: np.ndarray, mask: np.ndarray, id_column: str, folder: Path,
               csv: bool = True, part_rows: int = DEFAULT_PART_ROWS) -> tuple[list[Path], Counter[str]]:
    """Write the ranked list into the new folder ``folder``; its Parquet parts in rank order, and
    the reason labels counted over every slot of the contacted customers."""
    writer = _Writer(folder, csv, scored.top_k)
    offsets = np.cumsum([0] + [feather.read_table(p, columns=[PROBABILITY]).num_rows for p in scored.parts])
    buckets = (scored.rows + part_rows - 1) // part_rows
    try:
        if buckets <= 1:
            tables = [_with_decisions(feather.read_table(p), rank[offsets[i]:offsets[i + 1]],
                                      mask[offsets[i]:offsets[i + 1]], id_column, scored.top_k)
                      for i, p in enumerate(scored.parts)]
            # Rows in input order; rank r sits at position order[r - 1], so no second sort is needed.
            order = np.empty(scored.rows, dtype=np.int64)
            order[rank - 1] = np.arange(scored.rows)
            writer.write(pa.concat_tables(tables).take(pa.array(order)))
        else:
            _bucketed(scored, rank, mask, id_column, offsets, buckets, part_rows, folder, writer)
    finally:
        writer.close()
    return writer.files, writer.reasons


def _bucketed(scored: ScoredBatch, rank: np.ndarray, mask: np.ndarray, id_column: str, offsets: np.ndarray,
              buckets: int, part_rows: int, folder: Path, writer: _Writer) -> None:
    """Distribute rows by rank range into ``buckets`` spill files, then sort and write each."""
    spill = folder / ".buckets"
    spill.mkdir()
    streams: dict[int, ipc.RecordBatchStreamWriter] = {}
    for i, part in enumerate(scored.parts):
        table = _with_decisions(feather.read_table(part), rank[offsets[i]:offsets[i + 1]],
                                mask[offsets[i]:offsets[i + 1]], id_column, scored.top_k)
        bucket = (rank[offsets[i]:offsets[i + 1]] - 1) // part_rows
        order = np.argsort(bucket, kind="stable")
        grouped = table.take(pa.array(order))
        bounds = np.searchsorted(bucket[order], np.arange(buckets + 1))
        for b in range(buckets):
            if bounds[b + 1] > bounds[b]:
                if b not in streams:
                    streams[b] = ipc.new_stream(spill / f"{b:05d}.arrows", table.schema)
                streams[b].write_table(grouped.slice(bounds[b], bounds[b + 1] - bounds[b]))
    for stream in streams.values():
        stream.close()
    for b in sorted(streams):
        with pa.memory_map(str(spill / f"{b:05d}.arrows")) as source:
            writer.write(_sorted(ipc.open_stream(source).read_all()))
    shutil.rmtree(spill)


def figures(scored: ScoredBatch, mask: np.ndarray, targeting: TargetingConfig,
            top_reasons: Counter[str]) -> ListFigures:
    histogram, _ = np.histogram(scored.probabilities, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    contacts = int(mask.sum())
    return ListFigures(rows=scored.rows, contacts=contacts,
                       expected_net_gain=round(float(scored.net_gain[mask].sum()), 2),
                       spend=round(contacts * targeting.offer_cost, 2), score_histogram=histogram.tolist(),
                       top_reasons=dict(top_reasons.most_common(10)))


def publish(scored: ScoredBatch, targeting: TargetingConfig, f1_threshold: float, value_threshold: float,
            id_column: str, output: Path, csv: bool = True,
            part_rows: int = DEFAULT_PART_ROWS) -> tuple[RetentionList, ListFigures]:
    """Rank, decide and write the list at ``output`` (which must not exist yet) atomically."""
    if output.exists() and any(output.iterdir()):
        raise BatchDataError(f"output folder {output} already holds files: choose another --output")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.parent / f".{output.name}.partial-{uuid.uuid4().hex[:8]}"
    rank, mask = ranks(scored, targeting, f1_threshold, value_threshold)
    try:
        writer_files, top = write_list(scored, rank, mask, id_column, partial, csv, part_rows)
        if output.exists():
            output.rmdir()
        os.replace(partial, output)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    files = [str(output / PARQUET_DIR / f.name) for f in writer_files]
    columns = pq.read_schema(files[0]).names
    retention = RetentionList(path=str(output), parquet_files=files,
                              csv_file=str(output / CSV_NAME) if csv else None, rows=scored.rows,
                              contacts=int(mask.sum()), columns=columns)
    return retention, figures(scored, mask, targeting, top)

