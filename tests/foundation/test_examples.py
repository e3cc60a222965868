"""Every shipped example config is a valid run config (the real-run template included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from posesyn_core.pipeline import load_run_config
from tests.conftest import REPO

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def test_there_are_examples():
    assert {p.name for p in EXAMPLES} >= {"demo.yaml", "smoke.yaml", "real-mpii.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_is_valid(path: Path):
    run = load_run_config(path)
    assert run.name and run.stages
