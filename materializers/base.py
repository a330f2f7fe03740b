"""The base of churnops' report materializers: JSON storage, an HTML page, key figures."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from pydantic import BaseModel
from zenml.enums import ArtifactType, VisualizationType
from zenml.materializers.pydantic_materializer import PydanticMaterializer
from zenml.metadata.metadata_types import MetadataType

VISUALIZATION_FILE = "report.html"


class JsonReportMaterializer(PydanticMaterializer):
    """A pydantic type stored as ``data_v2.json`` (readable, diffable, no pickle), with
    ``render`` (the HTML page the dashboard shows) and ``key_figures`` (artifact metadata)."""

    SKIP_REGISTRATION: ClassVar[bool] = True
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA_ANALYSIS

    def render(self, data: Any) -> str:
        raise NotImplementedError

    def key_figures(self, data: Any) -> dict[str, MetadataType]:
        return {}

    def save_visualizations(self, data: BaseModel) -> dict[str, VisualizationType]:
        uri = os.path.join(self.uri, VISUALIZATION_FILE)
        with self.artifact_store.open(uri, "w") as handle:
            handle.write(self.render(data))
        return {uri: VisualizationType.HTML}

    def extract_metadata(self, data: BaseModel) -> dict[str, MetadataType]:
        return {**super().extract_metadata(data), **self.key_figures(data)}
