"""The foundation tests register small plugin stages; put the global registry back after each test so that
tests elsewhere (chart generation, images) see only the built-in stages."""

from __future__ import annotations

import sys

import pytest

from posesyn_core import pipeline


@pytest.fixture(autouse=True)
def restore_stage_registry():
    stages, run_config = dict(pipeline.STAGES), pipeline.RunConfig
    yield
    pipeline.STAGES.clear()
    pipeline.STAGES.update(stages)
    pipeline.RunConfig = run_config
    sys.modules.pop("posesyn_test_stages", None)  # so the next load_run_config registers them again
