"""The gate's rules, exit codes and packaged-file integrity, without a pipeline run."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from churnops.commands.training import exit_code
from churnops.core.errors import ExitCode, describe
from churnops.data.schema import load_schema
from churnops.modeling.governance import (
    RULES,
    contract_difference,
    contract_digest,
    describe_overrides,
    input_contract,
    override_record,
    refusal_message,
    review_version,
)
from churnops.modeling.promotion import GateConfig, decide, held_back
from churnops.serving.packaging import (
    FILES_SHA256_KEY,
    SERVED_FILES,
    ModelCard,
    ModelIntegrityError,
    model_files_sha256,
    verify_model_files,
    write_model_files,
)
from run import build_parser, main
from tests.support import clean_customers

SYNTHETIC = load_schema("synthetic")
CONTRACT = input_contract(SYNTHETIC)
HASHES = {"churn_classifier": "a" * 64, "dataset_schema": "b" * 64}
PASSED = {"verdict": "promoted", "gate_passed": True, "gate_failed_rules": [], "artifact_sha256": HASHES,
          "input_contract": CONTRACT}


def rules(violations) -> list[str]:
    return [v.rule for v in violations]


def test_a_promoted_version_with_matching_artifacts_and_contract_passes():
    assert review_version(PASSED, dict(HASHES), CONTRACT) == []
    # Staged (it passed the gate, lost the comparison) may be restored; no production: no contract rule.
    assert review_version({**PASSED, "verdict": "staged"}, dict(HASHES), None) == []


@pytest.mark.parametrize("metadata, rule", [
    ({}, "never_evaluated"),
    ({"verdict": "invalid_data", "artifact_sha256": HASHES}, "never_evaluated"),
    ({**PASSED, "verdict": "rejected", "gate_passed": False, "gate_failed_rules": ["f1_min", "roc_auc_min"]},
     "gate_failed"),
])
def test_unevaluated_and_rejected_versions_are_refused(metadata, rule):
    violations = review_version(metadata, dict(HASHES), None)
    assert rule in rules(violations)
    if rule == "gate_failed":
        assert "f1_min, roc_auc_min" in violations[0].message


def test_artifacts_that_changed_or_were_never_hashed_are_refused():
    changed = review_version(PASSED, {**HASHES, "churn_classifier": "c" * 64}, None)
    assert rules(changed) == ["artifact_integrity"]
    assert "a" * 64 in changed[0].message and "c" * 64 in changed[0].message
    assert rules(review_version({**PASSED, "artifact_sha256": {}}, dict(HASHES), None)) == ["artifact_integrity"]
    missing = review_version(PASSED, {"dataset_schema": "b" * 64}, None)
    assert "found nothing" in missing[0].message


def test_a_different_input_contract_names_added_missing_and_changed_fields():
    other = {**CONTRACT, "fields": {k: v for k, v in CONTRACT["fields"].items() if k != "age"} | {"region": "numeric"}}
    other["fields"]["contract_type"] = "categorical: Monthly"
    difference = contract_difference(CONTRACT, other)
    assert (difference.added, difference.missing, difference.changed) == (["region"], ["age"], ["contract_type"])
    violations = review_version({**PASSED, "input_contract": other}, dict(HASHES), CONTRACT)
    assert rules(violations) == ["input_contract"]
    assert "adds fields ['region']" in violations[0].message and "drops fields ['age']" in violations[0].message
    assert contract_digest(other) != contract_digest(CONTRACT)
    # The dataset's name is not part of the contract: a renamed schema with the same fields serves the same clients.
    assert contract_digest({**CONTRACT, "dataset": "renamed"}) == contract_digest(CONTRACT)


def test_refusal_message_names_every_rule_and_the_override():
    violations = review_version({}, None, None)
    message = refusal_message("churn_classifier", "3", "rollback --to", violations)
    assert "never_evaluated" in message and "artifact_integrity" in message
    assert "--force --reason TEXT" in message and "Nothing was changed" in message
    assert set(rules(violations)) <= set(RULES)


def test_override_records_who_when_why_and_which_rules():
    violations = review_version({**PASSED, "gate_passed": False, "verdict": "rejected"}, dict(HASHES), None)
    entry = override_record("rollback --to", violations, "incident 42", "ana (ZenML user default)", "2026-12-03T10:00")
    assert entry["rules"] == ["gate_failed"] and entry["reason"] == "incident 42" and entry["by"].startswith("ana")
    shown = describe_overrides({"gate_overrides": [entry]})
    assert "rollback --to forced past gate_failed by ana" in shown and "incident 42" in shown
    assert describe_overrides({}) == "-"


def test_a_winner_held_back_by_its_contract_is_staged_with_the_reason():
    metrics = _metrics()
    decision = decide("churn_classifier", "4", metrics, baseline_f1=0.1, gate=GateConfig(f1=0.1, roc_auc=0.1),
                      champion=None)
    assert decision.verdict == "promoted"
    violations = review_version({**PASSED, "input_contract": {"fields": {}}}, dict(HASHES), CONTRACT)
    held = held_back(decision, violations)
    assert (held.stage, held.verdict, held.promoted) == ("staging", "held", False)
    assert "input_contract" in held.reason and "--force --reason" in held.reason


def _metrics():
    from churnops.modeling.evaluation import compute_metrics

    return compute_metrics(np.array([0, 1, 0, 1, 1, 0]), np.array([0.2, 0.9, 0.3, 0.8, 0.7, 0.1]), 0.5)


@pytest.mark.parametrize("verdict, fail_on_reject, code", [
    ("promoted", False, ExitCode.OK), ("promoted", True, ExitCode.OK),
    ("staged", False, ExitCode.OK), ("staged", True, ExitCode.NOT_PROMOTED),
    ("rejected", False, ExitCode.GATE_REFUSED), ("held", False, ExitCode.NOT_PROMOTED),
])
def test_training_exit_codes(verdict, fail_on_reject, code):
    assert exit_code({"verdict": verdict}, fail_on_reject) == code


def test_every_exit_code_is_documented_in_help():
    text = build_parser().format_help()
    for code in ExitCode:
        assert f"  {int(code)}  " in text
    assert describe().count("\n") >= len(ExitCode) - 1
    assert len({int(c) for c in ExitCode}) == len(ExitCode) and ExitCode.CRASH == 1


def test_force_without_a_reason_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--pipeline", "rollback", "--to", "1", "--force"])
    assert exited.value.code == ExitCode.USAGE
    assert "--force needs --reason" in capsys.readouterr().err


# ---------------------------------------------------------------------- packaged files


def _packaged_folder(tmp_path):
    from tests.test_serving_unit import fit

    cleaned, schema = clean_customers(rows=600)
    pipeline = fit(cleaned, "sklearn.linear_model.LogisticRegression", max_iter=300)
    card = ModelCard(model_name="churn_classifier", model_version="1", threshold=0.5, dataset="synthetic")
    write_model_files(tmp_path, pipeline, schema, card)
    return tmp_path


def test_tampered_model_files_are_refused_naming_the_file_and_both_hashes(tmp_path):
    folder = _packaged_folder(tmp_path)
    recorded = model_files_sha256(folder)
    assert set(recorded) == set(SERVED_FILES)
    verify_model_files(folder, recorded)  # untouched: fine

    pipeline_file = folder / "pipeline.joblib"
    pipeline_file.write_bytes(pipeline_file.read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError) as refused:
        verify_model_files(folder, recorded)
    message = str(refused.value)
    assert str(pipeline_file) in message and recorded["pipeline.joblib"] in message
    assert model_files_sha256(folder)["pipeline.joblib"] in message
    with pytest.raises(ModelIntegrityError, match="no recorded file hashes"):
        verify_model_files(folder, None)
    (folder / "model_card.json").unlink()
    with pytest.raises(ModelIntegrityError, match=r"model_card\.json: expected sha256 .* found \(missing\)"):
        verify_model_files(folder, recorded)


def test_the_bentoml_store_keeps_the_hashes_and_packaging_refuses_a_changed_file(session_paths):
    from churnops.platform import deployment
    from tests.test_serving_unit import fit

    cleaned, schema = clean_customers(rows=600)
    pipeline = fit(cleaned, "sklearn.linear_model.LogisticRegression", max_iter=300)
    card = ModelCard(model_name="churn_classifier", model_version="77", model_version_id=str(uuid.uuid4()),
                     threshold=0.5, dataset="synthetic")
    tag = deployment.save_bento_model(pipeline, schema, card)
    import bentoml

    stored = bentoml.models.get(tag)
    assert stored.info.metadata[FILES_SHA256_KEY] == model_files_sha256(stored.path)
    assert deployment.verify_bento_model(tag) == stored.info.metadata[FILES_SHA256_KEY]
    schema_file = stored.path_of("dataset_schema.json")
    with open(schema_file, "a") as handle:
        handle.write(" ")
    with pytest.raises(deployment.DeploymentError, match=r"dataset_schema\.json: expected sha256 [0-9a-f]{64}, found"):
        deployment.verify_bento_model(tag)
