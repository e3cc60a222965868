"""benchmarks/gpu_check.py keeps working between GPU sessions: its dry run (--device cpu) passes every path here,
and asked for CUDA on a machine without one it says so and exits 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_dry_run_runs_every_gpu_path():
    out = _run("--device", "cpu")
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [line for line in out.stdout.splitlines() if line.endswith(" ok")]
    paths = {"tpe finetune steps", "msm sampling", "retarget ik", "animate wan (tiny)", "caption vlm (tiny)"}
    assert {p for p in paths if any(r.startswith(p) for r in rows)} == paths, out.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_cuda_it_refuses():
    out = _run()
    assert out.returncode == 2 and "no CUDA device" in out.stdout + out.stderr
