"""Filtering: keep the synthetic frames the target pose estimator can explain within tau (paper section 3.4)."""
