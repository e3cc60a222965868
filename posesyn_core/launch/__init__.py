"""Running PoseSyn on Kubernetes: the per-stage container entry point, the Helm chart's generated files, and
the in-cluster sequencer and launcher."""
