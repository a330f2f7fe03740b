"""Cleaning fixable defects and enforcing the quality gates of a dataset schema.

Cleaning repairs what can be repaired and counts every repair. The gates then run as a
pandera schema built from the dataset schema; every violated rule is reported with its
column and observed value, and a failing dataset raises :class:`DataValidationError`.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pydantic import BaseModel, Field

from churnops.data.schema import CategoricalFeature, DatasetSchema, NumericFeature

_WHITESPACE = re.compile(r"\s+")


class CleaningAction(BaseModel):
    column: str
    action: str
    count: int


class Violation(BaseModel):
    column: str
    rule: str
    observed: str
    expected: str

    def describe(self) -> str:
        return (f"column '{self.column}': rule '{self.rule}' violated: "
                f"observed {self.observed}, expected {self.expected}")


class ColumnQuality(BaseModel):
    column: str
    missing_rate: float
    distinct: int


class ValidationReport(BaseModel):
    dataset: str
    rows_in: int
    rows_out: int
    actions: list[CleaningAction] = Field(default_factory=list)
    violations: list[Violation] = Field(default_factory=list)
    columns: list[ColumnQuality] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations

    @property
    def total_repairs(self) -> int:
        return sum(a.count for a in self.actions)


class DataValidationError(ValueError):
    """The dataset violates its schema's rules; ``report`` lists every violation."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        lines = "\n".join(f"  - {v.describe()}" for v in report.violations)
        super().__init__(
            f"Data validation failed for dataset '{report.dataset}' with "
            f"{len(report.violations)} violation(s):\n{lines}"
        )


def _map_distinct(values: pd.Series, transform: Any) -> pd.Series:
    """Apply ``transform`` once per distinct non-null value; columns here have few."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    mapped = np.asarray([transform(u) for u in uniques] + [None], dtype=object)
    return pd.Series(mapped[codes], index=values.index, dtype=object)


def _normalise_text(values: pd.Series) -> pd.Series:
    """Trim and collapse whitespace in non-null values; blanks become ``""``."""
    return _map_distinct(values, lambda v: _WHITESPACE.sub(" ", str(v)).strip())


class _Cleaner:
    def __init__(self, schema: DatasetSchema, frame: pd.DataFrame) -> None:
        self.schema = schema
        self.frame = frame.copy()
        self.actions: list[CleaningAction] = []
        self.violations: list[Violation] = []

    def record(self, column: str, action: str, count: int) -> None:
        if count:
            self.actions.append(CleaningAction(column=column, action=action, count=int(count)))

    def violate(self, column: str, rule: str, observed: Any, expected: Any) -> None:
        self.violations.append(Violation(column=column, rule=rule, observed=str(observed), expected=str(expected)))

    def run(self) -> pd.DataFrame:
        missing = [c for c in self.schema.required_columns if c not in self.frame.columns]
        for column in missing:
            self.violate(column, "required_column", "column absent", "column present")
        present = [c for c in self.schema.required_columns if c in self.frame.columns]
        self.frame = self.frame[present]
        if self.schema.id_column in self.frame.columns:
            self._drop_duplicate_ids()
        for feature in self.schema.numeric:
            if feature.name in self.frame.columns:
                self._clean_numeric(feature)
        for feature in self.schema.categorical:
            if feature.name in self.frame.columns:
                self._clean_categorical(feature)
        if self.schema.target.column in self.frame.columns:
            self._clean_target()
        return self.frame.reset_index(drop=True)

    def _drop_duplicate_ids(self) -> None:
        column = self.schema.id_column
        assert column is not None
        ids = self.frame[column]
        self.frame[column] = ids.astype("string").str.strip().astype(object).where(ids.notna(), None)
        duplicated = self.frame[column].duplicated(keep="first") & self.frame[column].notna()
        count = int(duplicated.sum())
        self.record(column, "duplicate_id_dropped", count)
        share = count / max(len(self.frame), 1)
        if share > self.schema.gates.max_duplicate_share:
            self.violate(column, "max_duplicate_share", f"{share:.4f} ({count} rows)",
                         f"<= {self.schema.gates.max_duplicate_share}")
        self.frame = self.frame[~duplicated]

    def _clean_numeric(self, feature: NumericFeature) -> None:
        raw = self.frame[feature.name]
        if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
            values = raw.astype(float)
        else:
            text = _normalise_text(raw)
            blank = text.eq("")
            values = _map_distinct(text.where(~blank), lambda v: pd.to_numeric(v, errors="coerce")).astype(float)
            unparseable = values.isna() & text.notna() & ~blank
            self.record(feature.name, "blank_to_missing", int(blank.sum()))
            self.record(feature.name, "unparseable_to_missing", int(unparseable.sum()))
            non_blank = int((text.notna() & ~blank).sum())
            share = int(unparseable.sum()) / max(non_blank, 1)
            if share > self.schema.gates.max_unparseable_share:
                examples = sorted(set(text[unparseable].head(50)))[:3]
                self.violate(feature.name, "numeric_type", f"{share:.4f} of values unparseable, e.g. {examples}",
                             f"<= {self.schema.gates.max_unparseable_share} unparseable")
        low = values < feature.min if feature.min is not None else pd.Series(False, index=values.index)
        high = values > feature.max if feature.max is not None else pd.Series(False, index=values.index)
        out_of_range = low | high
        count = int(out_of_range.sum())
        if count and feature.out_of_range == "null":
            values = values.mask(out_of_range)
            self.record(feature.name, "out_of_range_to_missing", count)
        elif count and feature.out_of_range == "clip":
            values = values.clip(lower=feature.min, upper=feature.max)
            self.record(feature.name, "out_of_range_clipped", count)
        self.frame[feature.name] = values

    def _clean_categorical(self, feature: CategoricalFeature) -> None:
        raw = self.frame[feature.name]
        lookup = {c.casefold(): c for c in feature.categories}
        lookup.update({k.casefold(): v for k, v in feature.synonyms.items()})

        def canonical(value: Any) -> str | None:
            text = _WHITESPACE.sub(" ", str(value)).strip()
            # Unknown spellings stay as they are, so the domain gate can report them.
            return lookup.get(text.casefold(), text) if text else None

        cleaned = _map_distinct(raw, canonical)
        changed = cleaned.notna() & raw.notna() & cleaned.ne(raw)
        self.record(feature.name, "category_normalised", int(changed.sum()))
        self.record(feature.name, "blank_to_missing", int((cleaned.isna() & raw.notna()).sum()))
        self.frame[feature.name] = cleaned

    def _clean_target(self) -> None:
        spec = self.schema.target
        # Accept numeric labels read as floats ("1.0") and any case or padding.
        text = _map_distinct(
            self.frame[spec.column],
            lambda v: re.sub(r"^(\d+)\.0+$", r"\1", _WHITESPACE.sub(" ", str(v)).strip().casefold()) or None,
        )
        positive = text.isin([v.casefold() for v in spec.positive])
        negative = text.isin([v.casefold() for v in spec.negative])
        missing = text.isna()
        unknown = ~(positive | negative | missing)
        if unknown.any():
            examples = sorted(set(text[unknown].head(50)))[:3]
            self.violate(spec.column, "target_values", f"{int(unknown.sum())} unknown labels, e.g. {examples}",
                         f"one of {spec.positive + spec.negative}")
        self.record(spec.column, "missing_target_dropped", int(missing.sum()))
        keep = ~missing
        self.frame = self.frame[keep].copy()
        self.frame[spec.column] = positive[keep].astype(int)


def _gate_schema(schema: DatasetSchema, columns: list[str]) -> pa.DataFrameSchema:
    """The quality gates as a pandera schema over a cleaned frame."""
    gate_columns: dict[str, pa.Column] = {}
    frame_checks: list[pa.Check] = [
        pa.Check(lambda df: len(df) >= schema.gates.min_rows, name="min_rows"),
    ]
    features: list[NumericFeature | CategoricalFeature] = [*schema.numeric, *schema.categorical]
    for feature in features:
        if feature.name not in columns:
            continue
        frame_checks.append(_missing_rate_check(feature.name, feature.max_missing))
        if isinstance(feature, NumericFeature):
            low = -np.inf if feature.min is None else feature.min
            high = np.inf if feature.max is None else feature.max
            gate_columns[feature.name] = pa.Column(float, pa.Check.in_range(low, high), nullable=True, coerce=True)
        else:
            gate_columns[feature.name] = pa.Column(object, pa.Check.isin(feature.categories), nullable=True)
    target = schema.target.column
    if target in columns:
        gate_columns[target] = pa.Column(int, pa.Check.isin([0, 1]), nullable=False)
        frame_checks.append(
            pa.Check(lambda df: df[target].nunique() == 2, name="target_both_classes"))
        frame_checks.append(pa.Check(
            lambda df: _minority_share(df[target]) >= schema.gates.min_minority_share,
            name="target_min_minority_share"))
    return pa.DataFrameSchema(gate_columns, checks=frame_checks, strict=False)


def _missing_rate_check(column: str, limit: float) -> pa.Check:
    return pa.Check(lambda df: df[column].isna().mean() <= limit, name=f"max_missing_rate:{column}")


def _minority_share(target: pd.Series) -> float:
    return float(min(target.mean(), 1 - target.mean())) if len(target) else 0.0


def _explain(schema: DatasetSchema, frame: pd.DataFrame, failures: pd.DataFrame) -> list[Violation]:
    """Turn pandera's failure cases into one violation per (column, rule) with observed values."""
    violations: list[Violation] = []
    numeric = {f.name: f for f in schema.numeric}
    categorical = {f.name: f for f in schema.categorical}
    target = schema.target.column
    for (column, check), cases in failures.groupby(["column", "check"], dropna=False, sort=False):
        check = str(check)
        values = cases["failure_case"]
        if check == "min_rows":
            violations.append(Violation(column="<dataset>", rule="min_rows", observed=f"{len(frame)} rows",
                                        expected=f">= {schema.gates.min_rows} rows"))
        elif check.startswith("max_missing_rate:"):
            name = check.split(":", 1)[1]
            feature = numeric.get(name) or categorical[name]
            violations.append(Violation(column=name, rule="max_missing_rate",
                                        observed=f"{frame[name].isna().mean():.4f}",
                                        expected=f"<= {feature.max_missing}"))
        elif check == "target_both_classes":
            violations.append(Violation(column=target, rule="target_both_classes",
                                        observed=f"classes {sorted(frame[target].unique().tolist())}",
                                        expected="both 0 and 1"))
        elif check == "target_min_minority_share":
            violations.append(Violation(column=target, rule="target_min_minority_share",
                                        observed=f"{_minority_share(frame[target]):.4f}",
                                        expected=f">= {schema.gates.min_minority_share}"))
        elif check.startswith("in_range"):
            feature = numeric[str(column)]
            observed = pd.to_numeric(values, errors="coerce")
            violations.append(Violation(column=str(column), rule="numeric_range",
                                        observed=f"{len(values)} values in [{observed.min()}, {observed.max()}]",
                                        expected=f"within [{feature.min}, {feature.max}]"))
        elif check.startswith("isin") and column in categorical:
            counts = values.astype(str).value_counts().head(5).to_dict()
            violations.append(Violation(column=str(column), rule="allowed_categories",
                                        observed=f"{len(values)} values outside the domain, e.g. {counts}",
                                        expected=f"one of {categorical[str(column)].categories}"))
        else:
            examples = values.astype(str).head(3).tolist()
            violations.append(Violation(column=str(column), rule=check,
                                        observed=f"{len(values)} failures, e.g. {examples}", expected="pass"))
    return violations


def validate_and_clean(frame: pd.DataFrame, schema: DatasetSchema) -> tuple[pd.DataFrame, ValidationReport]:
    """Clean ``frame`` per ``schema`` and check the gates.

    Returns the cleaned frame and the report; raises :class:`DataValidationError`
    (carrying the report) when any rule is violated.
    """
    cleaner = _Cleaner(schema, frame)
    cleaned = cleaner.run()
    violations = list(cleaner.violations)
    try:
        _gate_schema(schema, list(cleaned.columns)).validate(cleaned, lazy=True)
    except pa.errors.SchemaErrors as errors:
        violations.extend(_explain(schema, cleaned, errors.failure_cases))
    report = ValidationReport(
        dataset=schema.name,
        rows_in=len(frame),
        rows_out=len(cleaned),
        actions=cleaner.actions,
        violations=violations,
        columns=[
            ColumnQuality(column=c, missing_rate=float(cleaned[c].isna().mean()) if len(cleaned) else 0.0,
                          distinct=int(cleaned[c].nunique()))
            for c in cleaned.columns if c != schema.id_column
        ],
    )
    if violations:
        raise DataValidationError(report)
    return cleaned, report

