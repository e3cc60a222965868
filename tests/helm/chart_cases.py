"""Shared by the chart and image tests: the chart with the toy plugin stages, rendering, strict validation."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kubernetes_validate import utils as kv

from posesyn_core import pipeline

# The chart's kubeVersion floor and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ("1.29", kv.latest_version())


@contextmanager
def toy_registry() -> Iterator[type]:
    """The registry with the toy plugin stages added (as `plugins: [posesyn_toy_stages]` does), restored after."""
    saved = dict(pipeline.STAGES), pipeline.RunConfig
    try:
        toys = importlib.import_module("posesyn_toy_stages")
        for spec in toys.TOY_SPECS:
            pipeline.register(spec)
        yield pipeline.RunConfig
    finally:
        pipeline.STAGES.clear()
        pipeline.STAGES.update(saved[0])
        pipeline.RunConfig = saved[1]


def validate_strict(docs: list[dict[str, Any]]) -> None:
    """Every manifest against the Kubernetes schemas, unknown fields rejected (raises on the first problem)."""
    for doc in docs:
        for version in KUBE_VERSIONS:
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as e:
                where = ".".join(str(p) for p in e.path)
                name = f"{doc['kind']}/{doc['metadata']['name']}"
                raise AssertionError(f"{name} (k8s {version}) {where}: {e.message}") from None


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def stage_jobs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Stage Jobs keyed by stage name."""
    return {
        d["metadata"]["labels"]["posesyn.ai/stage"]: d
        for d in docs
        if d["kind"] == "Job" and "posesyn.ai/stage" in d["metadata"]["labels"]
    }

