"""The kind integration test (tests/kind/run.sh) under pytest: skipped with the reason where it cannot run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

RUN_SH = Path(__file__).with_name("run.sh")
MISSING = [tool for tool in ("docker", "kind", "kubectl") if shutil.which(tool) is None]


@pytest.mark.kind
@pytest.mark.slow
@pytest.mark.timeout(5400)
@pytest.mark.skipif(bool(MISSING), reason=f"kind integration test needs docker, kind and kubectl (missing: "
                                          f"{', '.join(MISSING)})")
def test_kind_cluster_runs_the_smoke_pipeline():
    proc = subprocess.run(["bash", str(RUN_SH)], capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    if "SKIPPED kind integration test" in output:
        pytest.skip(output.strip().splitlines()[-1])
    assert proc.returncode == 0, output[-5000:]
    assert "kind integration test passed" in output


def test_kind_script_skips_cleanly_without_the_tools(tmp_path):
    """`make kind-test` on a machine without kind says so in one line and succeeds."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "bash").symlink_to(shutil.which("bash"))
    (bin_dir / "dirname").symlink_to(shutil.which("dirname"))
    proc = subprocess.run([str(bin_dir / "bash"), str(RUN_SH)], capture_output=True, text=True,
                          env={"PATH": str(bin_dir)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "SKIPPED kind integration test: needs docker, kind and kubectl on PATH (missing: " \
                                  "docker kind kubectl)"
