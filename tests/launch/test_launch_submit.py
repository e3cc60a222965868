"""`posesyn submit`: config validation, real Helm rendering (--dry-run), the clobber guard; and the chart's
rendered Jobs driven by the rendered sequencer command against the fake API (the chart/launcher contract)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import RELEASE, install_release, invoke
from kube_fake_api import JobController

from posesyn_core.errors import ConfigError
from posesyn_core.launch.kube import INSTANCE, STAGE, STAGE_INDEX
from posesyn_core.launch.submit import check_release

pytestmark = pytest.mark.timeout(120)  # a hung watch fails fast, not at the suite's limit

RUN = """name: demo
root: s3://posesyn-runs/demo
stages: [tpe-train, eem]
eem:
  shards: 2
"""


@pytest.fixture
def run_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(RUN)
    return path


def manifests(output: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(output) if d]


def test_dry_run_prints_the_manifests_helm_renders(run_yaml, tmp_path):
    values = tmp_path / "cluster.yaml"
    values.write_text("image: {registry: registry.example.com/ml}\n")
    out = invoke(["submit", str(run_yaml), "-f", str(values), "--dry-run", "-n", "posesyn"]).output
    assert out.startswith("---\n# Source: posesyn/templates/")
    docs = manifests(out)
    jobs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Job"}
    assert set(jobs) == {"demo-posesyn-tpe-train", "demo-posesyn-eem", "demo-posesyn-sequencer"}
    eem = jobs["demo-posesyn-eem"]
    # what the sequencer and `watch` select on
    assert eem["spec"]["suspend"] is True and eem["metadata"]["labels"][INSTANCE] == RELEASE
    assert eem["metadata"]["labels"][STAGE] == "eem" and eem["metadata"]["annotations"][STAGE_INDEX] == "1"
    assert eem["spec"]["template"]["metadata"]["labels"][INSTANCE] == RELEASE  # pods are found by release
    assert eem["spec"]["completionMode"] == "Indexed" and eem["spec"]["completions"] == 2
    assert eem["spec"]["template"]["spec"]["containers"][0]["image"].startswith("registry.example.com/ml/")
    seq = jobs["demo-posesyn-sequencer"]["spec"]["template"]["spec"]["containers"][0]
    assert seq["command"] == ["posesyn", "sequence"]
    assert "--stages=tpe-train,eem" in seq["args"] and "--status-configmap=demo-posesyn-status" in seq["args"]
    # the sequencer's Role allows every call it makes
    role = next(d for d in docs if d["kind"] == "Role")
    verbs: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                verbs.setdefault((group, resource), set()).update(rule["verbs"])
    assert {"get", "list", "watch", "patch"} <= verbs[("batch", "jobs")]
    assert {"list"} <= verbs[("", "pods")] and {"get"} <= verbs[("", "pods/log")]
    assert {"create", "get", "patch"} <= verbs[("", "configmaps")]


def test_bad_run_config_fails_before_anything_else(tmp_path):
    bad = tmp_path / "run.yaml"
    bad.write_text(RUN + "eem:\n  shardz: 2\n")
    out = invoke(["submit", str(bad), "--dry-run"], 2).output
    assert out.startswith("error: ") and "run.yaml" in out


def test_bad_chart_value_is_named(run_yaml, tmp_path):
    values = tmp_path / "typo.yaml"
    values.write_text("job: {backofLimit: 3}\n")
    out = invoke(["submit", str(run_yaml), "-f", str(values), "--dry-run"], 2).output
    assert "backofLimit" in out


def test_refuses_to_clobber_a_running_release(api, kube):
    install_release(api)  # its sequencer Job is active: the run is in progress
    with pytest.raises(ConfigError, match="still running .*posesyn cancel demo"):
        check_release(kube, RELEASE, "demo", force=False)
    with pytest.raises(ConfigError, match="holds run 'demo', not 'other'"):
        check_release(kube, RELEASE, "other", force=False)
    assert len(check_release(kube, RELEASE, "demo", force=True)) == 4
    assert check_release(kube, "fresh", "demo", force=False) == []


def rendered_sequencer(api, run_yaml: Path, tmp_path: Path) -> list[str]:
    """Load the chart's stage Jobs into the fake API; return the exact sequencer command line the chart renders,
    its run ConfigMap "mounted" under tmp_path as the kubelet would mount it at /etc/posesyn."""
    docs = manifests(invoke(["submit", str(run_yaml), "--dry-run", "-n", api.namespace]).output)
    for doc in docs:
        if doc["kind"] == "Job" and STAGE in doc["metadata"]["labels"]:
            api.put("jobs", doc)
    seq = next(d for d in docs if d["kind"] == "Job" and STAGE not in d["metadata"]["labels"])
    container = seq["spec"]["template"]["spec"]["containers"][0]
    config_map = next(d for d in docs if d["kind"] == "ConfigMap" and "run.yaml" in d.get("data", {}))
    mounted = tmp_path / "etc-posesyn" / "run.yaml"
    mounted.parent.mkdir()
    mounted.write_text(config_map["data"]["run.yaml"])
    args = [f"--config={mounted}" if a == "--config=/etc/posesyn/run.yaml" else a for a in container["args"]]
    assert args != container["args"], "the chart no longer passes --config to the sequencer"
    return container["command"][1:] + args


def test_rendered_chart_runs_in_order_with_the_rendered_sequencer_command(api, kubeconfig, run_yaml, tmp_path,
                                                                           s3_env):  # fmt: skip
    """Load the chart's Jobs into the fake API and run the exact `posesyn sequence` command the chart renders:
    it checks the run's S3 root, holds its lease while the stages run and releases it at the end."""
    import boto3

    boto3.client("s3").create_bucket(Bucket="posesyn-runs")
    command = rendered_sequencer(api, run_yaml, tmp_path)
    controller = JobController(api)
    invoke(command, 0)
    assert controller.started == ["tpe-train", "eem"]
    assert api.get("jobs", "demo-posesyn-eem")["status"]["succeeded"] == 2
    status = api.get("configmaps", "demo-posesyn-status")
    assert status["metadata"]["labels"][INSTANCE] == RELEASE and status["data"]["run.state"] == "Succeeded"
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket="posesyn-runs", Prefix="demo/_LEASE")


def test_sequencer_refuses_a_root_another_run_holds(api, kubeconfig, run_yaml, tmp_path, s3_env):
    """A laptop run (or another release) holds the root: the sequencer starts no stage, exits 2 (the chart's
    podFailurePolicy fails the Job) and the run's status names the holder."""
    import boto3

    from posesyn_core.lease import acquire
    from posesyn_core.storage import open_store

    boto3.client("s3").create_bucket(Bucket="posesyn-runs")
    command = rendered_sequencer(api, run_yaml, tmp_path)
    controller = JobController(api)
    other = acquire(open_store("s3://posesyn-runs/demo"), owner="process:laptop:42")
    invoke(command, 2)
    assert controller.started == []
    data = api.get("configmaps", "demo-posesyn-status")["data"]
    assert data["run.state"] == "Failed" and "is in use by" in data["run.message"]
    assert "process:laptop:42" in data["run.message"]
    other.release()
    invoke(command, 0)  # released: the same sequencer command now runs the stages
    assert controller.started == ["tpe-train", "eem"]
