"""Retargeting: fit body-model pose parameters to synthesized joint motions and place them in reference cameras."""
