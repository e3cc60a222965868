"""One writer per run root (the lease, locally and on a real S3 server) and the storage preflight's one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from posesyn_core.lease import LEASE_KEY, Holder, LeaseHeld, LeaseLost, acquire
from posesyn_core.storage import S3Store
from tests.conftest import REPO

PLUGIN_DIR = Path(__file__).parent
POSESYN = [sys.executable, "-m", "posesyn_core.cli"]


def env(**extra: str | None) -> dict[str, str]:
    """This environment with the plugin stages importable; a None value removes the variable."""
    merged = {**os.environ, "PYTHONPATH": f"{PLUGIN_DIR}:{REPO}", **extra}
    return {k: v for k, v in merged.items() if v is not None}


def slow_run(tmp_path: Path, root: str = "out", sleep: float = 0.4) -> Path:
    """A run of the plugin stages whose first stage takes ~chunks * sleep seconds."""
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "root": root, "seed": 7, "plugins": ["posesyn_test_stages"],
                                    "stages": ["draw", "total"], "draw": {"chunks": 8, "items": 100, "sleep": sleep}}))
    return path


def wait_until(predicate, timeout: float = 30.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def holder_of(root: Path) -> Holder | None:
    path = root / LEASE_KEY
    return Holder.parse(path.read_bytes()) if path.exists() else None


# --- local roots ------------------------------------------------------------------------------------------------
def test_a_second_run_of_a_root_is_refused_naming_the_first_and_wait_runs_it_after(tmp_path):
    cfg = slow_run(tmp_path)
    first = subprocess.Popen([*POSESYN, "run", str(cfg)], env=env(), cwd=tmp_path, stderr=subprocess.DEVNULL)
    wait_until(lambda: (h := holder_of(tmp_path / "out")) is not None and h.pid == first.pid)

    second = subprocess.run([*POSESYN, "run", str(cfg)], env=env(), cwd=tmp_path, capture_output=True, text=True)
    assert second.returncode == 2
    assert f"is in use by 'posesyn run {cfg}' (process:" in second.stderr and f"pid {first.pid}" in second.stderr
    assert "--wait" in second.stderr and "Traceback" not in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    single = subprocess.run([*POSESYN, "stage", "run", "total", str(cfg)], env=env(), cwd=tmp_path,
                            capture_output=True, text=True)  # fmt: skip
    assert single.returncode == 2 and "is in use by" in single.stderr

    waited = subprocess.run([*POSESYN, "run", str(cfg), "--wait"], env=env(), cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert first.wait(60) == 0
    assert waited.returncode == 0 and "waiting for" in waited.stderr
    assert "skipped" in waited.stderr  # it started after the first run finished everything
    assert (tmp_path / "out" / LEASE_KEY).read_bytes() == b""  # released


def test_a_killed_runner_takes_its_stage_with_it_and_frees_the_root(tmp_path):
    cfg = slow_run(tmp_path, sleep=1.0)
    runner = subprocess.Popen([*POSESYN, "run", str(cfg)], env=env(), cwd=tmp_path, stderr=subprocess.DEVNULL)
    children = Path(f"/proc/{runner.pid}/task/{runner.pid}/children")
    wait_until(lambda: children.read_text().split() and (tmp_path / "out" / "draw" / "chunk-000.npz").exists())
    stage_pid = int(children.read_text().split()[0])
    runner.send_signal(signal.SIGKILL)  # the runner only: its stage child must not go on writing
    runner.wait()
    wait_until(lambda: not Path(f"/proc/{stage_pid}").exists() or "Z" in Path(f"/proc/{stage_pid}/stat").read_text()
               .split()[2], timeout=10)  # fmt: skip
    leftover = tmp_path / "out" / "draw" / ".chunk-007.npz.tmp-deadbeef"  # what a writer killed mid-write leaves
    leftover.write_bytes(b"partial")
    again = subprocess.run([*POSESYN, "run", str(cfg)], env=env(), cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert again.returncode == 0, again.stderr  # no waiting: the kernel dropped the dead runner's lock
    assert not leftover.exists()


# --- S3 roots ---------------------------------------------------------------------------------------------------
@pytest.fixture
def s3_root(s3_bucket) -> S3Store:
    return S3Store(s3_bucket, "runs/lease")


def put_foreign_lease(store: S3Store, ttl_s: float, host: str = "elsewhere") -> Holder:
    holder = Holder(owner=f"process:{host}:4242", token="f" * 32, host=host, pid=4242, command="posesyn run x.yaml",
                    acquired="2026-01-01T00:00:00Z", ttl_s=ttl_s)  # fmt: skip
    store.write_bytes(LEASE_KEY, holder.to_bytes())
    return holder


def test_s3_lease_refuses_a_live_holder_even_with_force_unlock(s3_root):
    lease = acquire(s3_root)
    with pytest.raises(LeaseHeld, match=rf"in use by .*pid {os.getpid()}.*expires \d+ s after its last renewal"):
        acquire(s3_root, owner="process:other:1")
    with pytest.raises(LeaseHeld, match=r"its lease is live \(renewed \d+ s ago, expires in \d+ s\)"):
        acquire(s3_root, owner="process:other:1", force_unlock=True)
    lease.renew()
    lease.release()
    assert not s3_root.exists(LEASE_KEY)
    acquire(s3_root, owner="process:other:1").release()  # free again


def test_s3_expired_lease_needs_force_unlock_and_the_old_holder_then_loses_it(s3_root):
    put_foreign_lease(s3_root, ttl_s=1.0)
    stale = S3Lease_of(s3_root)
    time.sleep(2.2)  # Last-Modified has one-second resolution
    with pytest.raises(LeaseHeld, match=r"expired \d+ s ago .*--force-unlock"):
        acquire(s3_root)
    ours = acquire(s3_root, force_unlock=True)
    assert Holder.parse(s3_root.read_bytes(LEASE_KEY)).token == ours.token
    with pytest.raises(LeaseLost, match=r"lost the lease on .* to '.*' \(process:.*: stopping"):
        stale.renew()  # the dead holder woke up: its conditional PUT fails and it learns it lost the root
    stale.release()  # and its release leaves our lease alone
    assert Holder.parse(s3_root.read_bytes(LEASE_KEY)).token == ours.token
    ours.release()


def S3Lease_of(store: S3Store):  # noqa: N802, ANN201
    """The foreign holder's own handle on the lease it wrote (as that process would have it)."""
    from posesyn_core.lease import S3Lease

    data, etag, _ = store.read_with_etag(LEASE_KEY)
    return S3Lease(store, Holder.parse(data), etag)


def test_s3_wait_takes_the_lease_when_the_holder_releases_it(s3_root):
    holder = acquire(s3_root, owner="process:other:1")
    threading.Timer(1.0, holder.release).start()
    started = time.monotonic()
    lease = acquire(s3_root, wait=True)
    assert 0.9 < time.monotonic() - started < 15
    assert Holder.parse(s3_root.read_bytes(LEASE_KEY)).token == lease.token
    lease.release()


def test_s3_same_owner_reclaims_and_a_dead_local_holder_is_taken_over(s3_root):
    first = acquire(s3_root, owner="release:ns/demo")
    second = acquire(s3_root, owner="release:ns/demo")  # a restarted sequencer pod of the same release
    assert second.token != first.token
    second.release()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    put_foreign_lease(s3_root, ttl_s=600, host=Holder.this_process(None, 1).host)
    s3_root.write_bytes(LEASE_KEY, s3_root.read_bytes(LEASE_KEY).replace(b"4242", dead.stdout.strip().encode()))
    acquire(s3_root).release()  # a process of this host that no longer exists: its lease is provably dead


def test_s3_renewal_whose_own_retry_failed_keeps_the_lease(s3_root):
    """A renewal PUT that succeeded but whose response was lost is retried by botocore with the old ETag and fails
    its condition; the lease still carries our token, so it is still ours."""
    lease = acquire(s3_root)
    old_etag = lease.etag
    lease.renew()
    lease.etag = old_etag  # as if the response carrying the new ETag never arrived
    lease.renew()
    assert Holder.parse(s3_root.read_bytes(LEASE_KEY)).token == lease.token and lease.etag != old_etag
    lease.release()
    assert not s3_root.exists(LEASE_KEY)


def test_s3_run_of_a_held_root_is_refused_by_the_cli(s3_root, s3_env, tmp_path):
    lease = acquire(s3_root, owner="release:ns/other")
    cfg = slow_run(tmp_path, root=s3_root.url)
    proc = subprocess.run([*POSESYN, "run", str(cfg)], env=env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "is in use by" in proc.stderr and "release:ns/other" in proc.stderr
    lease.release()
    proc = subprocess.run([*POSESYN, "run", str(cfg)], env=env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert not s3_root.exists(LEASE_KEY)  # released at the end
    assert json.loads(s3_root.read_bytes("total/_SUCCESS"))["stage"] == "total"


# --- preflight ----------------------------------------------------------------------------------------------------
def preflight_case(tmp_path: Path, root: str, **environment: str | None) -> tuple[subprocess.CompletedProcess, float]:
    cfg = slow_run(tmp_path, root=root)
    started = time.monotonic()
    proc = subprocess.run([*POSESYN, "run", str(cfg)], env=env(**environment), capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    return proc, time.monotonic() - started


def assert_one_line(proc: subprocess.CompletedProcess, code: int, text: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.count("\n") == 1 and text in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_preflight_a_root_that_cannot_be_created(tmp_path):
    proc, seconds = preflight_case(tmp_path, "/proc/forbidden/r3")
    assert_one_line(proc, 2, "error: storage root file:///proc/forbidden/r3: cannot create or write it")
    assert seconds < 10


def test_preflight_an_unreachable_endpoint_fails_in_seconds(tmp_path, s3_env):
    proc, seconds = preflight_case(tmp_path, "s3://posesyn-runs/x", AWS_ENDPOINT_URL="http://127.0.0.1:9")
    assert_one_line(proc, 1, "cannot reach the S3 endpoint http://127.0.0.1:9")
    assert seconds < 10


def test_preflight_a_missing_bucket_and_missing_credentials(tmp_path, s3_env):
    proc, _ = preflight_case(tmp_path, "s3://no-such-bucket-here/x")
    assert_one_line(proc, 2, "bucket 'no-such-bucket-here' does not exist")
    anonymous = {k: None for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")}
    nowhere = str(tmp_path / "none")
    proc, _ = preflight_case(tmp_path, "s3://posesyn-runs/x", AWS_SHARED_CREDENTIALS_FILE=nowhere,
                             AWS_CONFIG_FILE=nowhere, AWS_EC2_METADATA_DISABLED="true", **anonymous)  # fmt: skip
    assert_one_line(proc, 2, "no AWS credentials found")
