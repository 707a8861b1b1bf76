"""Drift detection, below both training (drift-aware retraining) and monitoring: the
per-feature tests, the domain classifier, the detector and its report."""
