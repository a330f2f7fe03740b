from zenml import pipeline
from zenml.enums import ExecutionMode

from steps.data import load_dataset, split_dataset, validate_dataset
from steps.deployment import package_model
from steps.promotion import promote_model, write_model_card
from steps.training import evaluate_model, train_model


# Fail fast: after a failed step nothing else should run, least of all promotion.
@pipeline(name="churn_training", execution_mode=ExecutionMode.FAIL_FAST)
def training_pipeline() -> None:
    """Load → validate → split → train → evaluate → promote → model card, package (a Bento, only if promoted).

    Parameters come from configs/training.yaml.
    """
    raw_dataset, dataset_schema = load_dataset()
    clean_dataset, _validation_report, _reference_profile = validate_dataset(raw_dataset, dataset_schema)
    train_set, test_set = split_dataset(clean_dataset, dataset_schema)
    churn_classifier, search_summary = train_model(train_set, dataset_schema)
    evaluation_report, test_predictions = evaluate_model(
        churn_classifier, search_summary, train_set, test_set, dataset_schema
    )
    promotion_decision = promote_model(evaluation_report, test_set, dataset_schema, test_predictions)
    write_model_card(promotion_decision, evaluation_report, search_summary, dataset_schema)
    package_model(promotion_decision, churn_classifier, dataset_schema)
