"""Failpoints kill a stage exactly where asked: after the k-th commit, or with the k-th object not yet committed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from posesyn_core import failpoints
from posesyn_core.errors import ConfigError
from tests.conftest import REPO

PLUGINS = REPO / "tests" / "foundation"


def run_draw(tmp_path: Path, spec: str) -> tuple[subprocess.CompletedProcess, Path]:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"name": "t", "root": "out", "seed": 7, "plugins": ["posesyn_test_stages"],
                                   "stages": ["draw"], "draw": {"chunks": 5, "items": 10}}))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{PLUGINS}:{REPO}", failpoints.ENV: spec}
    proc = subprocess.run([sys.executable, "-m", "posesyn_core.cli", "run", str(cfg)], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    return proc, tmp_path / "out" / "draw"


def test_kill_after_the_third_commit(tmp_path):
    proc, out = run_draw(tmp_path, "store.after_commit@draw=kill:3")
    assert proc.returncode == 1 and "killed by signal 9 (SIGKILL)" in proc.stderr
    # commits: _STARTED, chunk-000, chunk-001 -> killed; nothing half-written
    assert sorted(p.name for p in out.iterdir()) == ["_STARTED", "chunk-000.npz", "chunk-001.npz"]


def test_kill_before_the_third_commit_leaves_only_a_temp_file(tmp_path):
    proc, out = run_draw(tmp_path, "store.before_commit=kill:3")
    assert proc.returncode == 1
    names = sorted(p.name for p in out.iterdir())
    assert names[0].startswith(".chunk-001.npz.tmp-") and names[1:] == ["_STARTED", "chunk-000.npz"]


def test_a_failpoint_of_another_stage_does_nothing(tmp_path):
    proc, out = run_draw(tmp_path, "store.after_commit@eem=kill:1")
    assert proc.returncode == 0, proc.stderr
    assert (out / "_SUCCESS").exists()


@pytest.mark.parametrize("bad", ["store.after_commit=kill", "store.after_commit=kill:0", "x=explode:1"])
def test_a_malformed_spec_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="point\\[@stage\\]=kill:N"):
        failpoints.parse(bad)
