"""PoseSyn: synthesize diverse 3D human-pose training data from in-the-wild 2D pose data.

The library behind both runners: the embedded runner (`posesyn run`) and the per-stage container images that
Kubernetes Jobs run. See DESIGN in the README for the pipeline.
"""

__version__ = "0.1.0"
