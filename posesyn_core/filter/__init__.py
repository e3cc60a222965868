"""Filtering: keep the synthetic frames the target pose estimator can explain within tau (the paper's filter)."""
