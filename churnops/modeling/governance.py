"""The promotion gate as a rule every path obeys: what a model version must show before it may
become production or be served, and how an explicit override is recorded.

Pure functions over what the training pipeline recorded on a model version (its metadata,
docs/contracts.md) and what is observed now (the artifact hashes recomputed from the artifact
store, the contract of the current production version). ``churnops.platform.deployment.authorize`` feeds
them from the Model Control Plane; training promotion, ``rollback``, ``rollback --to``,
``deploy --version`` and retraining all go through it.

Rules, each refused unless overridden with ``--force --reason TEXT``:

* ``never_evaluated`` — the version has no recorded gate verdict (training failed or stopped
  before the promotion step, or the data failed validation);
* ``gate_failed`` — the version failed the absolute gate in training (the failed checks named);
* ``artifact_integrity`` — the SHA-256 of its model or schema artifact, recorded at promotion,
  is missing or no longer matches the artifact store;
* ``input_contract`` — its input contract (the fields and types clients must send) differs from
  the production version's: it would reject the requests production's clients send.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from churnops.data.schema import DatasetSchema

# Model-version metadata keys written by the promotion step and read back here.
VERDICT_KEY = "verdict"
GATE_PASSED_KEY = "gate_passed"
FAILED_RULES_KEY = "gate_failed_rules"
ARTIFACT_HASHES_KEY = "artifact_sha256"
CONTRACT_KEY = "input_contract"
CONTRACT_DIGEST_KEY = "input_contract_sha256"
OVERRIDES_KEY = "gate_overrides"
# When a version last became production (training promotion, rollback, promotion on live evidence).
PRODUCTION_SINCE_KEY = "production_since"
EVALUATED_VERDICTS = frozenset({"promoted", "staged", "rejected", "held", "challenger"})

RULES = ("never_evaluated", "gate_failed", "artifact_integrity", "input_contract")


def was_production(metadata: Mapping[str, Any], stage: str | None = None) -> bool:
    """Whether a version served as production at some time and was not rolled back away from.

    ZenML 0.98 keeps only a version's current stage (no history), so this reads our own metadata:
    promoted by training, or ``production_since`` (rollback, promotion on live evidence). A recorded
    Bento counts for versions packaged before that key existed, but not for a live challenger
    (shadow or canary), which is packaged without ever being production.
    """
    if metadata.get("rollback_role") == "replaced":
        return False
    if stage == "production" or metadata.get(VERDICT_KEY) == "promoted" or metadata.get(PRODUCTION_SINCE_KEY):
        return True
    return (bool(metadata.get("bento_tag")) and metadata.get(VERDICT_KEY) != "challenger"
            and metadata.get("rollout_role") != "challenger")


# ------------------------------------------------------------------------------ input contract


def input_contract(schema: DatasetSchema) -> dict[str, Any]:
    """What a client must send to a model trained on ``schema``: every feature with its type
    (numeric, or categorical with its categories) and the optional id column. Ranges and
    quality gates are cleaning rules, not part of the request contract."""
    fields: dict[str, str] = {feature.name: "numeric" for feature in schema.numeric}
    for feature in schema.categorical:
        fields[feature.name] = "categorical: " + ", ".join(sorted(feature.categories))
    return {"dataset": schema.name, "id_column": schema.id_column, "fields": dict(sorted(fields.items()))}


def contract_digest(contract: Mapping[str, Any]) -> str:
    """A short stable name for a contract (the dataset name is not part of it)."""
    identity = {"id_column": contract.get("id_column"), "fields": contract.get("fields", {})}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def describe_contract(contract: Mapping[str, Any] | None) -> str:
    """``synthetic (12 fields, contract 3f2a…)``, for deploy, rollback and --models."""
    if not contract:
        return "unknown contract (trained before contracts were recorded)"
    return f"{contract.get('dataset', '?')} ({len(contract.get('fields', {}))} fields, " \
           f"contract {contract_digest(contract)})"


@dataclass(frozen=True)
class ContractDifference:
    added: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.missing or self.changed)

    def describe(self) -> str:
        parts = []
        if self.added:
            parts.append(f"adds fields {self.added}")
        if self.missing:
            parts.append(f"drops fields {self.missing}")
        if self.changed:
            parts.append(f"changes the type or categories of {self.changed}")
        return "; ".join(parts) or "no difference"


def contract_difference(production: Mapping[str, Any], candidate: Mapping[str, Any]) -> ContractDifference:
    """How ``candidate``'s input contract differs from ``production``'s."""
    theirs, ours = dict(production.get("fields", {})), dict(candidate.get("fields", {}))
    changed = sorted(name for name in set(theirs) & set(ours) if theirs[name] != ours[name])
    if production.get("id_column") != candidate.get("id_column"):
        changed.append(f"id column {production.get('id_column')!r} -> {candidate.get('id_column')!r}")
    return ContractDifference(added=sorted(set(ours) - set(theirs)), missing=sorted(set(theirs) - set(ours)),
                              changed=changed)


# ------------------------------------------------------------------------------------ review


@dataclass(frozen=True)
class Violation:
    rule: str
    message: str


def review_version(metadata: Mapping[str, Any], current_hashes: Mapping[str, str] | None,
                   production_contract: Mapping[str, Any] | None) -> list[Violation]:
    """Every rule the version breaks, given its recorded metadata and what is observed now.

    ``current_hashes``: artifact name -> SHA-256 recomputed from the artifact store (None when
    the artifacts could not be read at all). ``production_contract``: the contract of the
    production version the target would replace, or None when there is none (or it is the
    target itself).
    """
    violations: list[Violation] = []
    verdict = metadata.get(VERDICT_KEY)
    if verdict not in EVALUATED_VERDICTS or GATE_PASSED_KEY not in metadata:
        violations.append(Violation("never_evaluated", f"it has no recorded gate verdict (verdict: {verdict or 'none'})"
                                                       ": it never finished evaluation"))
    elif not metadata.get(GATE_PASSED_KEY):
        failed = metadata.get(FAILED_RULES_KEY) or []
        detail = ", ".join(map(str, failed)) if failed else str(metadata.get("reason", "see its reason"))
        violations.append(Violation("gate_failed", f"it failed the promotion gate in training ({detail})"))
    violations.extend(_integrity_violations(metadata.get(ARTIFACT_HASHES_KEY), current_hashes))
    recorded_contract = metadata.get(CONTRACT_KEY)
    if production_contract is not None:
        if not isinstance(recorded_contract, Mapping):
            violations.append(Violation("input_contract", "it has no recorded input contract to compare with "
                                                          "production's"))
        else:
            difference = contract_difference(production_contract, recorded_contract)
            if difference:
                violations.append(Violation(
                    "input_contract", f"its input contract differs from production's: it {difference.describe()}"
                                      " — clients of the production model would be refused"))
    return violations


def _integrity_violations(recorded: Any, current: Mapping[str, str] | None) -> list[Violation]:
    if not isinstance(recorded, Mapping) or not recorded:
        return [Violation("artifact_integrity", "no artifact SHA-256 was recorded for it at promotion")]
    if current is None:
        return [Violation("artifact_integrity", "its artifacts could not be read from the artifact store")]
    mismatched = []
    for name, expected in sorted(recorded.items()):
        observed = current.get(name)
        if observed != expected:
            mismatched.append(f"{name}: recorded sha256 {expected}, found {observed or 'nothing'}")
    if mismatched:
        return [Violation("artifact_integrity", "its artifacts no longer match what was promoted ("
                                                + "; ".join(mismatched) + ")")]
    return []


def refusal_message(model_name: str, version: str, action: str, violations: list[Violation]) -> str:
    rules = ", ".join(v.rule for v in violations)
    lines = [f"refused: {action} of {model_name} version {version} breaks the gate ({rules}):"]
    lines += [f"  - {v.rule}: {v.message}" for v in violations]
    lines.append("Nothing was changed. To override after review, repeat the command with "
                 "--force --reason TEXT (recorded on the version).")
    return "\n".join(lines)


def override_record(action: str, violations: list[Violation], reason: str, by: str, at: str) -> dict[str, Any]:
    """What an override leaves on the model version (a list of these under ``gate_overrides``)."""
    return {"action": action, "rules": [v.rule for v in violations], "reason": reason, "by": by, "at": at,
            "details": [v.message for v in violations]}


def describe_overrides(metadata: Mapping[str, Any]) -> str:
    """The overrides recorded on a version, one short phrase each (``-`` when none)."""
    overrides = metadata.get(OVERRIDES_KEY) or []
    if not isinstance(overrides, list) or not overrides:
        return "-"
    return "; ".join(f"{o.get('action')} forced past {','.join(o.get('rules', []))} by {o.get('by')} "
                     f"at {o.get('at')}: {o.get('reason')}" for o in overrides if isinstance(o, Mapping))
