"""Error Extraction Module: find where the target pose estimator fails on in-the-wild 2D data."""
