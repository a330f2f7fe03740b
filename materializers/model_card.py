"""The model card artifact: JSON for reading back, plus the card as Markdown and HTML files
(both shown in the dashboard)."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.metadata.metadata_types import MetadataType

from churnops.reporting.model_card import ModelCard, render_html, render_markdown
from materializers.base import JsonReportMaterializer

MARKDOWN_FILE = "model_card.md"
HTML_FILE = "model_card.html"


class ModelCardMaterializer(JsonReportMaterializer):
    SKIP_REGISTRATION: ClassVar[bool] = False
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (ModelCard,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA_ANALYSIS

    def render(self, data: ModelCard) -> str:
        return render_html(data)

    def save_visualizations(self, data: ModelCard) -> dict[str, VisualizationType]:
        files = {HTML_FILE: (render_html(data), VisualizationType.HTML),
                 MARKDOWN_FILE: (render_markdown(data), VisualizationType.MARKDOWN)}
        visualizations = {}
        for name, (text, kind) in files.items():
            uri = os.path.join(self.uri, name)
            with self.artifact_store.open(uri, "w") as handle:
                handle.write(text)
            visualizations[uri] = kind
        return visualizations

    def key_figures(self, data: ModelCard) -> dict[str, MetadataType]:
        return {"model_version": data.model_version, "verdict": data.verdict,
                "decision_threshold": data.decision_threshold, "reasons_method": data.reasons_method or "none"}
