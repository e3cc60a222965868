"""Shared fixtures: a real S3-protocol server (moto) process on 127.0.0.1, a CLI helper, and one finished smoke
run per session."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
REPO = Path(__file__).resolve().parent.parent
PIPELINE = ["world", "tpe-train", "motion-train", "eem", "caption", "msm", "retarget", "animate", "filter",
            "finetune", "evaluate"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server in its own process; boto3 talks real HTTP to it. Yields the endpoint URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("moto server did not start")
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """Point boto3 (in this process and in children) at the moto server with dummy credentials."""
    env = {"AWS_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture
def s3_bucket(s3_env):
    """A fresh bucket per test; returns its name."""
    import boto3

    name = f"t-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def invoke_assert_code(args: list[str], ret_code: int = 0, output_contains: str | None = None) -> Result:
    """Run the CLI in-process; assert the exit code (and text), re-raising real exceptions with their traceback."""
    from posesyn_core.cli import cli

    result = CliRunner().invoke(cli, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError("".join(traceback.format_exception(result.exception))) from result.exception
    assert result.exit_code == ret_code, f"exit {result.exit_code} != {ret_code}\n{result.output}"
    if output_contains is not None:
        assert output_contains in result.output, result.output
    return result


@pytest.fixture(autouse=True)
def restore_root_logging():
    """`posesyn` commands configure the root logger for their process; in-process CLI tests must not leave that
    configuration behind for the tests after them."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def posesyn_process(*args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = (), timeout: float = 1200,
                    check: bool = False) -> subprocess.CompletedProcess:  # fmt: skip
    """`posesyn ARGS` as a user runs it: a process of its own (after `prefix`, e.g. a namespace wrapper), output
    captured; with `check`, a non-zero exit fails the test showing the command's stderr."""
    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    proc = subprocess.run([*prefix, sys.executable, "-m", "posesyn_core.cli", *args], env=full, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip
    if check:
        assert proc.returncode == 0, f"posesyn {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc


def smoke_config(directory: Path, root: str) -> Path:
    """`examples/smoke.yaml` with its root moved to `root`, written to `directory/smoke.yaml`."""
    cfg = yaml.safe_load((REPO / "examples" / "smoke.yaml").read_text())
    cfg["root"] = root
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "smoke.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@dataclass(frozen=True)
class SmokeRun:
    config: Path
    root: Path


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> SmokeRun:
    """One undisturbed `posesyn run` of the smoke config, shared by the slow tests that need a finished run: they
    read it, or copy it (`shutil.copytree(..., symlinks=True)`) to change it. A whole run costs minutes on 2 cores;
    the suite pays it once."""
    base = tmp_path_factory.mktemp("smoke")
    config = smoke_config(base, str(base / "run"))
    posesyn_process("run", str(config), check=True)
    return SmokeRun(config, base / "run")
