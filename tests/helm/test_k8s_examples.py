"""The k8s/ examples: the user RBAC validates strictly, the kind cluster has a labelled and tainted "gpu"
worker, the Kueue example queues name the LocalQueue and GPU resource the chart uses."""

from __future__ import annotations

from pathlib import Path

import yaml
from chart_cases import validate_strict

K8S = Path(__file__).resolve().parents[2] / "k8s"


def load(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_user_rbac_is_valid_and_namespaced():
    docs = load(K8S / "rbac" / "user.yaml")
    validate_strict(docs)
    assert {d["kind"] for d in docs} == {"Role", "RoleBinding"}  # nothing cluster-wide
    rules = docs[0]["rules"]
    assert any("jobs" in r["resources"] and "patch" in r["verbs"] for r in rules)
    assert any("pods/log" in r["resources"] for r in rules)


def test_kind_cluster_has_a_tainted_gpu_worker():
    (cluster,) = load(K8S / "kind" / "cluster.yaml")
    workers = [n for n in cluster["nodes"] if n["role"] == "worker"]
    gpu = [n for n in workers if n.get("labels", {}).get("pool") == "gpu"]
    assert len(gpu) == 1 and any(n.get("labels", {}).get("pool") == "cpu" for n in workers)
    join = yaml.safe_load(gpu[0]["kubeadmConfigPatches"][0])
    assert join["nodeRegistration"]["taints"][0]["key"] == "nvidia.com/gpu"


def test_kueue_example_queues():
    docs = {d["kind"]: d for d in load(K8S / "kueue" / "queues.yaml")}
    assert docs["LocalQueue"]["spec"]["clusterQueue"] == docs["ClusterQueue"]["metadata"]["name"]
    covered = {r for g in docs["ClusterQueue"]["spec"]["resourceGroups"] for r in g["coveredResources"]}
    assert {"cpu", "memory", "nvidia.com/gpu"} <= covered
