"""Materializers for the batch inference pipeline's outputs.

``retention_list``: the list's Parquet parts are copied into the artifact store as they are (no
pandas round trip, so ten million rows cost one file copy), beside a small JSON manifest;
``load`` returns a :class:`RetentionList` whose ``to_pandas()`` / ``dataset()`` read those parts.
A CSV preview of the first rows is the dashboard visualization. ``batch_summary``: JSON plus the
HTML summary page.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from zenml.enums import ArtifactType, VisualizationType
from zenml.materializers.base_materializer import BaseMaterializer
from zenml.metadata.metadata_types import MetadataType

from churnops.batch.output import PARQUET_DIR, RetentionList
from churnops.batch.summary import BatchSummary, render
from materializers.base import JsonReportMaterializer

PREVIEW_ROWS = 100
COPY_BUFFER = 8 << 20


class RetentionListMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (RetentionList,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA
    MANIFEST: ClassVar[str] = "retention_list.json"
    PREVIEW: ClassVar[str] = "preview.csv"

    def _path(self, *names: str) -> str:
        return os.path.join(self.uri, *names)

    def save(self, data: RetentionList) -> None:
        self.artifact_store.makedirs(self._path(PARQUET_DIR))
        names = []
        for file in data.parquet_files:
            name = os.path.basename(file)
            # A local file outside the store: the store refuses copyfile from it, so stream it in.
            with open(file, "rb") as source, self.artifact_store.open(self._path(PARQUET_DIR, name), "wb") as target:
                shutil.copyfileobj(source, target, COPY_BUFFER)
            names.append(name)
        manifest = data.model_dump(mode="json") | {"parquet_files": names, "written_at": data.path}
        with self.artifact_store.open(self._path(self.MANIFEST), "w") as handle:
            handle.write(json.dumps(manifest, indent=2))

    def load(self, data_type: type[Any]) -> RetentionList:
        with self.artifact_store.open(self._path(self.MANIFEST), "r") as handle:
            manifest = json.loads(handle.read())
        folder = self._path(PARQUET_DIR)
        if not os.path.isdir(folder):  # a remote artifact store: bring the parts here first
            local = tempfile.mkdtemp(prefix="retention_list-")
            for name in manifest["parquet_files"]:
                with self.artifact_store.open(os.path.join(folder, name), "rb") as source, \
                        open(os.path.join(local, name), "wb") as target:
                    shutil.copyfileobj(source, target, COPY_BUFFER)
            folder = local
        written_at = manifest.pop("written_at", None)
        manifest["parquet_files"] = [os.path.join(folder, name) for name in manifest["parquet_files"]]
        manifest["path"] = written_at or folder
        return RetentionList.model_validate(manifest)

    def save_visualizations(self, data: RetentionList) -> dict[str, VisualizationType]:
        preview = pq.ParquetFile(data.parquet_files[0]).iter_batches(batch_size=PREVIEW_ROWS)
        table = pa.Table.from_batches([next(preview)])
        uri = self._path(self.PREVIEW)
        with self.artifact_store.open(uri, "wb") as handle:
            pacsv.write_csv(table, handle)
        return {uri: VisualizationType.CSV}

    def extract_metadata(self, data: RetentionList) -> dict[str, MetadataType]:
        return {"rows": data.rows, "contacts": data.contacts, "columns": data.columns, "parts": len(data.parquet_files),
                "written_at": data.path}


class BatchSummaryMaterializer(JsonReportMaterializer):
    SKIP_REGISTRATION: ClassVar[bool] = False
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (BatchSummary,)

    def render(self, data: BatchSummary) -> str:
        return render(data)

    def key_figures(self, data: BatchSummary) -> dict[str, MetadataType]:
        return {k: v for k, v in data.key_figures().items() if v is not None}
