"""Loading raw churn tables: synthetic, shipped inside a package, or a user's file."""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

import pandas as pd

from churnops.data.schema import DatasetSchema, FileSource, PackageSource, SyntheticSource
from churnops.data.synthetic import SyntheticSpec, generate_customers


class DataSourceError(RuntimeError):
    """The data could not be found, read or trusted."""


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def locate_package_file(source: PackageSource) -> Path:
    """Find a data file inside an installed distribution and verify its checksum."""
    try:
        distribution = importlib.metadata.distribution(source.distribution)
    except importlib.metadata.PackageNotFoundError as error:
        raise DataSourceError(
            f"package '{source.distribution}' is not installed; run 'make install' "
            f"(it installs it with --no-deps)"
        ) from error
    matches = [f for f in distribution.files or [] if str(f) == source.file]
    if not matches:
        raise DataSourceError(f"'{source.file}' is not part of package '{source.distribution}'")
    path = Path(str(matches[0].locate()))
    actual = sha256_of_file(path)
    if actual != source.sha256:
        raise DataSourceError(
            f"checksum mismatch for {path}: expected sha256 {source.sha256}, got {actual}"
        )
    return path


def read_table(path: Path) -> pd.DataFrame:
    """Read CSV or Parquet as strings-preserving as possible; cleaning does the typing."""
    if not path.is_file():
        raise DataSourceError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        # keep_default_na=False: a blank stays "" so cleaning can count it as coerced.
        return pd.read_csv(path, keep_default_na=False, na_values=["", "NA", "NaN", "null"])
    if suffix in {".parquet", ".pq"}:
        return pd.read_parquet(path)
    raise DataSourceError(f"unsupported data file type '{suffix}' ({path}); use .csv or .parquet")


def load_raw(schema: DatasetSchema, synthetic: SyntheticSpec | None = None) -> tuple[pd.DataFrame, str]:
    """Return the raw table and a human-readable description of where it came from."""
    source = schema.source
    if isinstance(source, SyntheticSource):
        spec = synthetic or SyntheticSpec()
        return generate_customers(spec), f"synthetic(rows={spec.rows}, seed={spec.seed})"
    if isinstance(source, PackageSource):
        path = locate_package_file(source)
        return read_table(path), f"{source.distribution}:{source.file}"
    if isinstance(source, FileSource):
        path = source.resolved_path()
        return read_table(path), str(path)
    raise DataSourceError(f"unknown source {source!r}")


def content_hash(frame: pd.DataFrame) -> str:
    """A stable hash of a frame's columns and values (order-sensitive), fast at 1M rows."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()
