"""Command line and orchestration: ``run`` (Ray Tune + Optuna + ASHA), ``export``, ``retrain``, ``evaluate``."""
