"""ganpipe orchestration: Prefect flows, data validation, MLflow tracking and registry decisions built on ganmodels."""
