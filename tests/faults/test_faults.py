"""Fault injection on whole smoke runs: nothing is lost, and what completes is what an undisturbed run writes.

- S3 behind a proxy that fails a seeded fraction of requests (500, 503, dropped and lost connections, downloads
  cut off midway) -> the run completes with the same bytes as a run on a local disk.
- A SIGKILL at a seeded point inside every stage (a failpoint: after the k-th object committed, or with it
  written but not yet committed), each followed by a re-run -> the same bytes as an uninterrupted run.
- A disk that fills up -> one clear line, exit 1, no `_SUCCESS` for the stage that could not finish.
(Two runs of one root: tests/foundation/test_lease.py.)
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import boto3
import numpy as np
import pytest

from tests.conftest import PIPELINE, posesyn_process, smoke_config
from tests.faults.fault_proxy import FaultProxy

pytestmark = [pytest.mark.slow, pytest.mark.faults]

# Not outputs: manifests (timings, host), logs, and the lease (who ran it).
BOOKKEEPING = ("_SUCCESS", "_logs/", "_LEASE")


def is_output(key: str) -> bool:
    return not any(part in key for part in BOOKKEEPING)


def local_outputs(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and is_output(p.relative_to(root).as_posix())}  # fmt: skip


def s3_outputs(bucket: str, prefix: str) -> dict[str, str]:
    client = boto3.client("s3")  # straight to the server, not through the proxy
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            key = obj["Key"][len(prefix) + 1 :]
            if is_output(key):
                body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                out[key] = hashlib.sha256(body).hexdigest()
    return dict(sorted(out.items()))


@pytest.fixture(scope="module")
def undisturbed(smoke_run) -> dict[str, str]:
    """The outputs of an undisturbed smoke run on a local disk."""
    return local_outputs(smoke_run.root)


def test_flaky_s3_loses_nothing(undisturbed, tmp_path, s3_server, s3_env):
    bucket = "faulty"
    boto3.client("s3").create_bucket(Bucket=bucket)
    with FaultProxy(s3_server, seed=20261202, fraction=0.08) as proxy:
        config = smoke_config(tmp_path, f"s3://{bucket}/smoke")
        proc = posesyn_process("run", str(config), env={"AWS_ENDPOINT_URL": proxy.url})
    assert proc.returncode == 0, proc.stderr[-3000:]
    faults = {k: v for k, v in proxy.counts.items() if k != "requests"}
    print(f"\nS3 faults: {proxy.counts['requests']} requests, {sum(faults.values())} faults injected {faults}")
    assert set(faults) == {"500", "503", "drop", "lost", "truncate"}  # every kind happened
    outputs = s3_outputs(bucket, "smoke")
    assert outputs == undisturbed
    print(f"S3 faults: {len(outputs)} files compared, all identical to the local run")


def test_sigkill_inside_every_stage_then_rerun_is_byte_identical(undisturbed, tmp_path):
    cfg = smoke_config(tmp_path, str(tmp_path / "run"))
    rng = np.random.default_rng(7)
    kills = []
    for stage in PIPELINE:
        files = sum(key.startswith(f"{stage}/") for key in undisturbed)
        point = ("store.after_commit", "store.before_commit")[int(rng.integers(2))]
        k = int(rng.integers(1, files + 1))
        proc = posesyn_process("run", str(cfg), env={"POSESYN_FAILPOINTS": f"{point}@{stage}=kill:{k}"})
        assert proc.returncode == 1, f"{stage}: no kill at {point} #{k} ({files} files)\n{proc.stderr[-2000:]}"
        assert f"stage {stage} failed" in proc.stderr and "killed by signal 9 (SIGKILL)" in proc.stderr
        assert not (tmp_path / "run" / stage / "_SUCCESS").exists()
        kills.append(f"{stage}@{point.split('.')[1]}#{k}")
    proc = posesyn_process("run", str(cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs = local_outputs(tmp_path / "run")
    assert outputs == undisturbed
    assert not list((tmp_path / "run").rglob(".*.tmp-*")), "temp files of killed writers were left behind"
    print(f"\nSIGKILLs survived: {len(kills)} ({', '.join(kills)}); {len(outputs)} files compared, all identical")


def test_full_disk_is_one_clear_line_and_no_success(tmp_path):
    if not shutil.which("unshare"):
        pytest.skip("needs unshare (util-linux) to mount a small tmpfs in a private mount namespace")
    disk = tmp_path / "small-disk"
    disk.mkdir()
    cfg = smoke_config(tmp_path, str(disk / "run"))
    # A private user+mount namespace: a 1 MiB tmpfs without privileges, gone when the command ends, so the
    # command lists the markers on it before it exits.
    script = 'mount -t tmpfs -o size=1m tmpfs "$0" || exit 99; "$@"; rc=$?; find "$0" -name "_SUCCESS*"; exit $rc'
    mount = ("unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, str(disk))
    probe = subprocess.run([*mount, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {probe.stderr.strip()}")
    proc = posesyn_process("run", str(cfg), "--only", "world", prefix=mount)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "stage world failed (exit 1)" in proc.stderr
    assert "no space left on device" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stdout.strip() == "", f"markers on the full disk: {proc.stdout}"
