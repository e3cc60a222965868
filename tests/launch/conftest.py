"""Fixtures: a fake Kubernetes API server per test, and the official client pointed at it."""

from __future__ import annotations

import threading
import time

import pytest
from kube_fake_api import FakeKubeAPI, JobController, job_manifest, now

from posesyn_core.launch.kube import Kube
from posesyn_core.launch.sequencer import Sequencer

RELEASE = "demo"
STAGES = ["world", "tpe-train", "eem"]


@pytest.fixture
def api():
    server = FakeKubeAPI().start()
    yield server
    server.stop()


@pytest.fixture
def kube(api):
    from kubernetes import client

    cfg = client.Configuration(host=api.url)
    return Kube(client.ApiClient(cfg), api.namespace, retry_deadline_s=5)


@pytest.fixture
def kubeconfig(api, tmp_path, monkeypatch):
    """A kubeconfig naming the fake server, so commands go through `Kube.connect()` like on a laptop."""
    path = tmp_path / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: fake, cluster: {{server: "{api.url}"}}}}]
users: [{{name: me, user: {{token: t}}}}]
contexts: [{{name: fake, context: {{cluster: fake, user: me, namespace: {api.namespace}}}}}]
current-context: fake
""")
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return path


def install_release(api: FakeKubeAPI, stages: list[str] = STAGES, shards: dict[str, int] | None = None) -> None:
    """What `helm install` leaves behind: suspended stage Jobs and a sequencer Job (the sequencer creates the
    status ConfigMap)."""
    for i, stage in enumerate(stages):
        api.put("jobs", job_manifest(RELEASE, stage, i, completions=(shards or {}).get(stage, 1)))
    seq_labels = {"app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/component": "sequencer"}
    api.put("jobs", {"metadata": {"name": f"{RELEASE}-sequencer", "labels": seq_labels},
                     "spec": {"template": {"metadata": {"labels": dict(seq_labels)}, "spec": {
                         "restartPolicy": "Never", "containers": [{"name": "sequencer", "image": "posesyn"}]}}},
                     "status": {"active": 1, "startTime": now()}})


@pytest.fixture
def release(api):
    install_release(api)
    return RELEASE


@pytest.fixture
def controller(api):
    return JobController(api)


def invoke(args: list[str], code: int = 0):
    """Run launch commands as the `posesyn` group runs them (errors -> one line + exit code); assert the code."""
    import traceback

    from click.testing import CliRunner

    from posesyn_core.cli import PosesynGroup
    from posesyn_core.launch.commands import LAUNCH_COMMANDS

    group = PosesynGroup("posesyn", commands={c.name: c for c in LAUNCH_COMMANDS})
    result = CliRunner().invoke(group, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError("".join(traceback.format_exception(result.exception))) from result.exception
    assert result.exit_code == code, f"exit {result.exit_code} != {code}\n{result.output}"
    return result


def sequencer(kube: Kube, watch_timeout_s: int = 5) -> Sequencer:
    return Sequencer(kube, RELEASE, list(STAGES), f"{RELEASE}-status", watch_timeout_s=watch_timeout_s)


def status(api: FakeKubeAPI) -> dict:
    """The data of the run's status ConfigMap ({} before the sequencer created it)."""
    return (api.get("configmaps", f"{RELEASE}-status") or {}).get("data") or {}


def wait_for(predicate, timeout: float = 30.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


@pytest.fixture
def in_background(api):
    """Runs sequencers in the background as their pods would: `in_background(seq)` -> (thread, list that receives
    the exit code). Teardown waits for each to end before the fake API server stops: a sequencer still polling a
    stopped server would raise later, inside another test."""
    threads: list[threading.Thread] = []

    def start(seq: Sequencer) -> tuple[threading.Thread, list[int]]:
        result: list[int] = []
        thread = threading.Thread(target=lambda: result.append(seq.run()), daemon=True)
        thread.start()
        threads.append(thread)
        return thread, result

    yield start
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "a sequencer was still running when the test ended"
