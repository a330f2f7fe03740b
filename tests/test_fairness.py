"""Group metrics (churnops.modeling.fairness), the schema's slices and the gate's group rule."""

import numpy as np
import pandas as pd
import pytest

from churnops.data.schema import DatasetSchema, load_schema
from churnops.modeling.evaluation import Metrics
from churnops.modeling.fairness import FairnessRule, group_report, slice_gaps, slice_groups
from churnops.modeling.governance import FAILED_RULES_KEY, review_version
from churnops.modeling.promotion import GateConfig, decide


def schema_with(slices: list[dict]) -> DatasetSchema:
    raw = load_schema("synthetic").model_dump(mode="json")
    raw["slices"] = slices
    return DatasetSchema.model_validate(raw)


def hand_made_groups() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Known counts per group, at threshold 0.5.

    Female (200 rows): 100 churners, 80 caught; 100 stayers, 10 flagged -> recall 0.8, FPR 0.1, precision 80/90.
    Male (200 rows): 100 churners, 40 caught; 100 stayers, 20 flagged -> recall 0.4, FPR 0.2, precision 40/60.
    age: Female 25 years old, Male 50, and 30 customers of 70 (all stayers, none flagged): a small group.
    """
    def group(n_pos: int, caught: int, n_neg: int, flagged: int) -> tuple[list[int], list[float]]:
        y = [1] * n_pos + [0] * n_neg
        p = [0.9] * caught + [0.1] * (n_pos - caught) + [0.9] * flagged + [0.1] * (n_neg - flagged)
        return y, p

    y_f, p_f = group(100, 80, 100, 10)
    y_m, p_m = group(100, 40, 100, 20)
    y_o, p_o = [0] * 30, [0.1] * 30
    frame = pd.DataFrame({"gender": ["Female"] * 200 + ["Male"] * 200 + ["Female"] * 30,
                          "age": [25] * 200 + [50] * 200 + [70] * 30})
    return frame, np.array(y_f + y_m + y_o), np.array(p_f + p_m + p_o)


def test_per_group_recall_precision_fpr_selection_rate_and_support_match_the_counts():
    frame, y, p = hand_made_groups()
    schema = schema_with([{"column": "gender"}])
    report = group_report(frame, y, p, 0.5, schema)
    female, male = report.slice("gender").groups
    assert (female.group, female.support, female.positives) == ("Female", 230, 100)
    assert female.recall == pytest.approx(0.8) and female.false_positive_rate == pytest.approx(10 / 130)
    assert female.precision == pytest.approx(80 / 90) and female.selection_rate == pytest.approx(90 / 230)
    assert (male.support, male.recall, male.false_positive_rate) == (200, pytest.approx(0.4), pytest.approx(0.2))
    assert male.precision == pytest.approx(40 / 60) and male.selection_rate == pytest.approx(60 / 200)
    rows = report.table_rows()
    assert rows[0] == {"slice": "gender", "group": "Female", "support": 230, "churners": 100,
                       "recall": pytest.approx(0.8), "precision": pytest.approx(80 / 90),
                       "false_positive_rate": pytest.approx(10 / 130), "selection_rate": pytest.approx(90 / 230)}


def test_numeric_bins_make_interval_groups_and_undefined_metrics_are_none_not_zero():
    frame, y, p = hand_made_groups()
    frame.loc[0, "age"] = np.nan  # a blank is its own group
    schema = schema_with([{"column": "age", "name": "age_band", "bins": [18, 40, 65, 101]}])
    groups = {g.group: g for g in group_report(frame, y, p, 0.5, schema).slice("age_band").groups}
    assert set(groups) == {"[18, 40)", "[40, 65)", "[65, 101)", "missing"}
    assert groups["[65, 101)"].support == 30
    # No churners among the 70-year-olds: recall undefined; nobody flagged: precision undefined.
    assert groups["[65, 101)"].recall is None and groups["[65, 101)"].precision is None
    assert groups["[65, 101)"].false_positive_rate == 0.0 and groups["[65, 101)"].selection_rate == 0.0
    assert list(slice_groups(pd.DataFrame({"age": [17, 18, 101]}), schema.slices[0])) == [
        "outside bins", "[18, 40)", "outside bins"]


def test_the_gap_the_min_support_skip_and_the_rejection_message_name_slice_groups_and_gap():
    frame, y, p = hand_made_groups()
    schema = schema_with([{"column": "gender"}, {"column": "age", "name": "age_band", "bins": [18, 40, 65, 101]}])
    report = group_report(frame, y, p, 0.5, schema)
    rule = FairnessRule(metric="recall", max_gap=0.2, min_support=100)
    gender, age = slice_gaps(report, rule)
    assert gender.gap == pytest.approx(0.4) and gender.breaches(rule)
    assert age.skipped == ["[65, 101) (30 rows)"] and age.gap == pytest.approx(0.4)

    candidate = Metrics(accuracy=0.8, precision=0.7, recall=0.6, f1=0.65, roc_auc=0.85, pr_auc=0.6, brier=0.15,
                        threshold=0.5, confusion_matrix=[[1, 1], [1, 1]])
    gate = GateConfig(f1=0.5, roc_auc=0.7, fairness=rule)
    decision = decide("churn", "5", candidate, 0.3, gate, None, groups=report)
    assert (decision.stage, decision.verdict) == ("none", "rejected")
    assert ("group_gap: slice gender: recall gap 0.4000 between Female (0.8000, 230 rows) and "
            "Male (0.4000, 200 rows) (> 0.2)") in decision.reason
    assert "skipped (below 100 rows): [65, 101) (30 rows)" in decision.reason
    # governance's gate_failed rule names the check when a later deploy or rollback is refused.
    refused = review_version({"verdict": "rejected", "gate_passed": False,
                              FAILED_RULES_KEY: [c.rule for c in decision.checks if not c.passed]}, None, None)
    assert any(v.rule == "gate_failed" and "group_gap" in v.message for v in refused)

    # A looser rule passes, and still says which group it skipped.
    loose = gate.model_copy(update={"fairness": FairnessRule(metric="recall", max_gap=0.5, min_support=100)})
    passed = decide("churn", "5", candidate, 0.3, loose, None, groups=report)
    assert passed.promoted
    assert any("skipped (below 100 rows): [65, 101) (30 rows)" in note for note in passed.notes)


def test_slices_marked_gate_false_are_reported_but_not_judged():
    frame, y, p = hand_made_groups()
    report = group_report(frame, y, p, 0.5, schema_with([{"column": "gender", "gate": False}]))
    assert report.slice("gender").groups and slice_gaps(report, FairnessRule(max_gap=0.0)) == []


def test_a_fairness_rule_without_slices_is_noted_not_silently_passed():
    candidate = Metrics(accuracy=0.8, precision=0.7, recall=0.6, f1=0.65, roc_auc=0.85, pr_auc=0.6, brier=0.15,
                        threshold=0.5, confusion_matrix=[[1, 1], [1, 1]])
    decision = decide("churn", "1", candidate, 0.3, GateConfig(fairness=FairnessRule()), None, groups=None)
    assert decision.promoted and "schema declares no slices" in decision.notes[0]


@pytest.mark.parametrize(("slices", "message"), [
    ([{"column": "favourite_colour"}], "'favourite_colour' is not a feature"),
    ([{"column": "gender", "bins": [0, 1]}], "bins need a numeric feature"),
    ([{"column": "age", "bins": [30, 18]}], "bins must increase strictly"),
    ([{"column": "age", "bins": [18]}], "at least 2 items"),
    ([{"column": "gender"}, {"column": "gender"}], "slices named more than once"),
])
def test_bad_slices_are_refused_naming_the_problem(slices, message):
    with pytest.raises(ValueError, match=message):
        schema_with(slices)


def test_the_shipped_schemas_declare_their_slices():
    synthetic, telco = load_schema("synthetic"), load_schema("telco")
    assert [s.label for s in synthetic.slices] == ["gender", "contract_type", "age_band"]
    assert [s.label for s in telco.slices] == ["gender", "SeniorCitizen", "Contract"]
    assert [s.gate for s in telco.slices] == [True, True, False]
