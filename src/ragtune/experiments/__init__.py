"""Experiments: sweeps of configurations (``sweep``), their comparison (``compare``), the studies' shared steps
(``study``), plots and W&B tracking."""
