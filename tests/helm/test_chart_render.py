"""The Helm chart rendered by the real Helm engine (helm-python-sdk), every manifest validated strictly against
the Kubernetes schemas, for a matrix of values and the ci/ scenarios; bad values fail with clear messages."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import helm_python as helm
import pytest
import yaml
from chart_cases import by_kind, stage_jobs, toy_registry, validate_strict

from posesyn_core.errors import ConfigError
from posesyn_core.launch import chart
from posesyn_core.pipeline import load_run_config

CI_VALUES = sorted((chart.CHART_DIR / "ci").glob("*-values.yaml"))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """(chart dir, RunConfig class) with the toy plugin stages: toy-count (CPU, one pod), toy-square (GPU, shards)."""
    with toy_registry() as run_cls:
        yield chart.prepared_chart(tmp_path_factory.mktemp("chart"), run_cls), run_cls


def test_generated_files_are_up_to_date():
    stale = chart.stale_files()
    assert not stale, f"{[p.name for p in stale]} stale: run `python -m posesyn_core.launch.chart`"


MATRIX = list(itertools.product(["pvc", "s3"], [True, False], [1, 3], [False, True]))


@pytest.mark.parametrize(("storage", "gpu", "shards", "kueue"), MATRIX)
def test_render_matrix(toy, storage, gpu, shards, kueue):
    chart_dir, _ = toy
    values = {
        "run": {"name": "m", "plugins": ["posesyn_toy_stages"], "toy-square": {"shards": shards}},
        "gpu": {"enabled": gpu},
        "kueue": {"enabled": kueue, "queueName": "gpu-queue" if kueue else ""},
    }
    if storage == "s3":
        s3 = {"bucket": "bkt", "endpoint": "http://s3:9000", "credentialsSecret": "s"}
        values["storage"] = {"type": "s3", "s3": s3}
    docs = chart.render(values, chart_dir, release="r1", namespace="ns")
    validate_strict(docs)

    jobs = stage_jobs(docs)
    order = [int(j["metadata"]["annotations"]["posesyn.ai/stage-index"]) for j in jobs.values()]
    assert order == list(range(len(jobs))) and list(jobs)[-2:] == ["toy-count", "toy-square"]
    single, sharded = jobs["toy-count"]["spec"], jobs["toy-square"]["spec"]
    for spec in (single, sharded):
        assert spec["suspend"] is True and spec["template"]["spec"]["restartPolicy"] == "Never"
        rules = spec["podFailurePolicy"]["rules"]
        fail_on = {"containerName": "stage", "operator": "In", "values": [2, 3]}
        assert rules[0] == {"action": "FailJob", "onExitCodes": fail_on}
        assert rules[1]["action"] == "Ignore"
        assert rules[1]["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
        pod = spec["template"]["spec"]
        security = pod["securityContext"]
        assert security["runAsNonRoot"] and security["seccompProfile"]["type"] == "RuntimeDefault"
        ctr = pod["containers"][0]["securityContext"]
        assert ctr["readOnlyRootFilesystem"] and not ctr["allowPrivilegeEscalation"]
        assert ctr["capabilities"]["drop"] == ["ALL"]
        assert not pod["automountServiceAccountToken"]

    # sharded vs single
    assert "completionMode" not in single or single["completionMode"] == "NonIndexed"
    assert single["completions"] == single["parallelism"] == 1
    assert sharded["completionMode"] == "Indexed" and sharded["completions"] == sharded["parallelism"] == shards

    # GPU requests and GPU-only scheduling go together
    res = sharded["template"]["spec"]["containers"][0]["resources"]
    tolerations = sharded["template"]["spec"].get("tolerations", [])
    if gpu:
        assert res["limits"]["nvidia.com/gpu"] == 1 and tolerations[0]["key"] == "nvidia.com/gpu"
    else:
        assert "nvidia.com/gpu" not in res["limits"] and not tolerations
    assert "nvidia.com/gpu" not in single["template"]["spec"]["containers"][0]["resources"]["limits"]

    # storage: PVC mounted (and created) or S3 env + Secret, and the run root to match
    run_yaml = yaml.safe_load(by_kind(docs, "ConfigMap")["r1-posesyn-run"]["data"]["run.yaml"])
    ctr = sharded["template"]["spec"]["containers"][0]
    if storage == "pvc":
        assert run_yaml["root"] == "file:///data/m"
        assert "r1-posesyn-data" in by_kind(docs, "PersistentVolumeClaim")
        assert {"name": "data", "mountPath": "/data"} in ctr["volumeMounts"]
    else:
        assert run_yaml["root"] == "s3://bkt/m"
        assert not by_kind(docs, "PersistentVolumeClaim")
        env = {e["name"]: e.get("value") for e in ctr["env"]}
        assert env["AWS_ENDPOINT_URL"] == "http://s3:9000" and ctr["envFrom"] == [{"secretRef": {"name": "s"}}]

    # Kueue: the queue travels as an annotation the sequencer turns into the label on the stage's turn
    for job in jobs.values():
        annotations = job["metadata"]["annotations"]
        assert annotations.get("posesyn.ai/queue-name") == ("gpu-queue" if kueue else None)
        assert "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"]


def test_sequencer_job_and_least_privilege_role(toy):
    chart_dir, _ = toy
    docs = chart.render({"run": {"stages": ["toy-count", "toy-square"]}}, chart_dir, release="r2", namespace="ns")
    validate_strict(docs)
    seq = by_kind(docs, "Job")["r2-posesyn-sequencer"]["spec"]
    assert "suspend" not in seq
    pod = seq["template"]["spec"]
    assert pod["serviceAccountName"] == "r2-posesyn-sequencer"
    ctr = pod["containers"][0]
    assert ctr["command"] == ["posesyn", "sequence"]
    assert ctr["args"] == [
        "--release=r2", "--namespace=ns", "--stages=toy-count,toy-square", "--status-configmap=r2-posesyn-status",
        "--config=/etc/posesyn/run.yaml",
    ]
    assert "nvidia.com/gpu" not in ctr["resources"]["limits"]
    # It reads the run config and the storage the stage pods write, to check the root and hold its lease.
    mounts = {m["name"]: m["mountPath"] for m in ctr["volumeMounts"]}
    assert mounts["run-config"] == "/etc/posesyn" and mounts["data"] == "/data"
    assert {v["name"]: v for v in pod["volumes"]}["data"]["persistentVolumeClaim"]["claimName"] == "r2-posesyn-data"
    s3 = chart.render({"run": {"stages": ["toy-count"]}, "storage": {"type": "s3", "s3": {
        "bucket": "data", "endpoint": "http://s3:9000", "credentialsSecret": "s"}}}, chart_dir, release="r2")
    s3_ctr = by_kind(s3, "Job")["r2-posesyn-sequencer"]["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in s3_ctr["env"]}["AWS_ENDPOINT_URL"] == "http://s3:9000"
    assert s3_ctr["envFrom"] == [{"secretRef": {"name": "s"}}]
    assert "data" not in {m["name"] for m in s3_ctr["volumeMounts"]}
    role = {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/posesyn"}
    irsa = chart.render({"sequencer": {"serviceAccountAnnotations": role}}, chart_dir, release="r2")
    assert by_kind(irsa, "ServiceAccount")["r2-posesyn-sequencer"]["metadata"]["annotations"] == role
    rules = by_kind(docs, "Role")["r2-posesyn-sequencer"]["rules"]
    granted = {(g, r, v, tuple(rule.get("resourceNames", ())))
               for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert granted == {
        *{("batch", "jobs", v, ()) for v in ("get", "list", "watch", "patch")},
        *{("", r, v, ()) for r in ("pods", "pods/log") for v in ("get", "list", "watch")},
        ("", "events", "get", ()), ("", "events", "list", ()),
        ("", "configmaps", "create", ()),
        *{("", "configmaps", v, ("r2-posesyn-status",)) for v in ("get", "patch", "update")},
    }
    binding = by_kind(docs, "RoleBinding")["r2-posesyn-sequencer"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "r2-posesyn-sequencer", "namespace": "ns"}]


def test_run_configmap_is_a_valid_run_config(toy, tmp_path):
    """What the pods read validates with the same loader `posesyn run` uses, stages and root filled in."""
    chart_dir, run_cls = toy
    values = {"run": {"name": "cm", "seed": 5, "plugins": ["posesyn_toy_stages"], "toy-count": {"n": 3}},
              "storage": {"type": "s3", "prefix": "runs/cm", "s3": {"bucket": "data"}}}
    docs = chart.render(values, chart_dir, release="r3")
    path = tmp_path / "run.yaml"
    path.write_text(by_kind(docs, "ConfigMap")["r3-posesyn-run"]["data"]["run.yaml"])
    with toy_registry():
        run = load_run_config(path)
    assert (run.name, run.seed, run.root) == ("cm", 5, "s3://data/runs/cm")
    assert run.stages == list(run_cls.registry) and run.section("toy-count").n == 3


def test_values_for_run_round_trips(toy, tmp_path):
    chart_dir, _ = toy
    src = tmp_path / "src.yaml"
    src.write_text("name: rt\nroot: s3://bkt/some/prefix\nplugins: [posesyn_toy_stages]\n"
                   "stages: [toy-count, toy-square]\ntoy-square: {shards: 2, offset: 4}\n")
    with toy_registry():
        run = load_run_config(src)
        docs = chart.render(chart.values_for_run(run), chart_dir, release="rt")
        out = tmp_path / "out.yaml"
        out.write_text(by_kind(docs, "ConfigMap")["rt-posesyn-run"]["data"]["run.yaml"])
        again = load_run_config(out)
    assert again.model_dump() == run.model_dump()
    assert stage_jobs(docs)["toy-square"]["spec"]["completions"] == 2


@pytest.mark.parametrize("path", CI_VALUES, ids=lambda p: p.name)
def test_ci_scenarios_render_validate_and_lint_clean(path):
    values = yaml.safe_load(path.read_text()) or {}
    docs = chart.render(values, release="ci", namespace="posesyn")
    validate_strict(docs)
    assert stage_jobs(docs), "no stage Job rendered"
    report = helm.lint(chart.CHART_DIR, values, strict=True, namespace="posesyn")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


def test_default_values_lint_clean():
    report = helm.lint(chart.CHART_DIR, strict=True)
    assert not [m for m in report["messages"] if m["severity"] >= 2] and not report["errors"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"storage": {"s3": {"buckt": "x"}}}, r"storage/s3.*additional properties 'buckt' not allowed"),
        ({"run": {"seeed": 1}}, r"run.*additional properties 'seeed' not allowed"),
        ({"run": {"toy-count": {"nn": 1}}}, r"run/toy-count.*additional properties 'nn' not allowed"),
        ({"stages": {"toy-square": {"parallelism": -1}}}, r"stages/toy-square/parallelism.*minimum"),
        ({"run": {"toy-square": {"shards": 0}}}, r"run/toy-square/shards.*minimum"),
        ({"storage": {"type": "s3"}}, r"storage.s3.bucket is required when storage.type is s3"),
        ({"storage": {"type": "nfs"}}, r"storage/type.*(value must be one of|enum)"),
        ({"run": {"toy-count": {"shards": 2}}}, r"run.toy-count.shards is 2 but stage toy-count cannot be sharded"),
        ({"kueue": {"enabled": True}}, r"kueue.queueName is required when kueue.enabled"),
        ({"storage": {"pvc": {"create": False}}}, r"storage.pvc: set storage.pvc.existingClaim"),
        ({"run": {"stages": ["nope"]}}, r"run/stages"),
        ({"stages": {"toy-count": {"resources": {"cpu": "lots", "memory": "1Gi", "gpu": 0}}}}, r"resources/cpu"),
    ],
    ids=["typo-chart-key", "typo-run-key", "typo-section-key", "negative-parallelism", "zero-shards",
         "s3-without-bucket", "unknown-storage", "shards-unshardable", "kueue-no-queue", "no-pvc", "unknown-stage",
         "bad-quantity"],
)
def test_bad_values_fail_clearly(toy, values, message):
    chart_dir, _ = toy
    with pytest.raises(ConfigError, match=re.compile(message, re.S)):
        chart.render(values, chart_dir)


def test_every_values_key_is_documented():
    """helm-docs style: each key of values.yaml has a `# --` line in the comment block right above it (fields
    of list items, e.g. a toleration's `operator`, belong to their documented list)."""
    lines = (chart.CHART_DIR / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        if not re.match(r"^\s*[\w.-]+:", line) or _in_list_item(lines, i):
            continue
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#") and "# --" not in lines[j]:
            j -= 1
        if j < 0 or "# --" not in lines[j]:
            undocumented.append(f"line {i + 1}: {line.strip()}")
    assert not undocumented, undocumented


def _in_list_item(lines: list[str], i: int) -> bool:
    indent = len(lines[i]) - len(lines[i].lstrip())
    for above in reversed(lines[:i]):
        stripped = above.strip()
        if stripped and not stripped.startswith("#") and len(above) - len(above.lstrip()) < indent:
            return stripped.startswith("- ")
    return False


def test_schema_is_closed_everywhere():
    """Every object in the generated schema either lists its keys with additionalProperties false, or is a
    free-form Kubernetes object (nodeSelector, affinity, tolerations, env ...) passed to the API server."""
    schema = chart.values_schema(__import__("posesyn_core.pipeline", fromlist=["RunConfig"]).RunConfig)
    open_objects = []

    def walk(node, where):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and node.get("additionalProperties") is not False:
                open_objects.append(where)
            for k, v in node.items():
                walk(v, f"{where}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}/{i}")

    walk(schema, "")
    assert not open_objects, open_objects
    assert "root" not in schema["properties"]["run"]["properties"]
    assert Path(chart.CHART_DIR / "values.schema.json").exists()


def test_sequencer_args_parse_with_the_real_command(toy):
    """The rendered command line is accepted by `posesyn sequence` itself (parsed, not run)."""
    from posesyn_core.launch.commands import sequence_cmd

    chart_dir, _ = toy
    docs = chart.render({}, chart_dir, release="r4", namespace="ns")
    ctr = by_kind(docs, "Job")["r4-posesyn-sequencer"]["spec"]["template"]["spec"]["containers"][0]
    ctx = sequence_cmd.make_context("sequence", list(ctr["args"]))
    assert ctx.params["release"] == "r4" and ctx.params["status_configmap"] == "r4-posesyn-status"
    assert ctx.params["stages"].split(",") == chart_dir_pipeline(chart_dir)
    mounted = {m["name"]: m["mountPath"] for m in ctr["volumeMounts"]}["run-config"]
    assert ctx.params["run_yaml"] == Path(mounted) / "run.yaml"


def chart_dir_pipeline(chart_dir: Path) -> list[str]:
    return yaml.safe_load((chart_dir / "values.yaml").read_text())["pipeline"]


def test_resource_overrides_keep_the_chart_defaults_they_do_not_name(tmp_path):
    """A run YAML giving eem only more memory keeps eem's default CPU and GPU from the chart."""
    src = tmp_path / "run.yaml"
    src.write_text("name: res\nroot: s3://bkt/res\nstages: [eem]\neem: {resources: {memory: 16Gi}, shards: 2}\n")
    docs = chart.render(chart.values_for_run(load_run_config(src)))
    validate_strict(docs)
    res = stage_jobs(docs)["eem"]["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert res["limits"] == {"memory": "16Gi", "nvidia.com/gpu": 1}
    defaults = yaml.safe_load((chart.CHART_DIR / "values.yaml").read_text())["stages"]["eem"]["resources"]
    assert res["requests"]["cpu"] == defaults["cpu"]


def test_wan_animate_stage_gets_its_gpu_class_shm_and_read_only_weights():
    """ci/wan-animate-values.yaml: the animate pod asks for an 80 GB-class GPU node, mounts the weights PVC
    read-only where the run config points, and has a memory-backed /dev/shm."""
    values = yaml.safe_load((chart.CHART_DIR / "ci" / "wan-animate-values.yaml").read_text())
    docs = chart.render(values)
    validate_strict(docs)
    jobs = stage_jobs(docs)
    pod = jobs["animate"]["spec"]["template"]["spec"]
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term == [{"matchExpressions": [{"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["79999"]}]}]
    assert pod["nodeSelector"] == {"pool": "gpu-large", "nvidia.com/gpu.present": "true"}
    assert {t["key"] for t in pod["tolerations"]} == {"nvidia.com/gpu", "dedicated"}
    container = pod["containers"][0]
    assert container["resources"]["limits"] == {"memory": "96Gi", "nvidia.com/gpu": 1}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["models"] == {"name": "models", "mountPath": "/models", "readOnly": True}
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "posesyn-models", "readOnly": True}
    assert mounts["dshm"]["mountPath"] == "/dev/shm"
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    # The weights reach every stage, the GPU class and /dev/shm only the animate stage.
    filter_pod = jobs["filter"]["spec"]["template"]["spec"]
    filter_volumes = {v["name"] for v in filter_pod["volumes"]}
    assert "models" in filter_volumes and "dshm" not in filter_volumes
    assert "affinity" not in filter_pod


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"models": {"existingClaim": "w"}, "run": {"animate": {"backend": "wan-animate",
                                                                "wan_animate": {"model_path": "/weights/wan"}}}},
         r'model_path "/weights/wan" is not under models.mountPath "/models"'),
        ({"stages": {"animate": {"gpuMemoryMiB": 80000, "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["a"]}]}]}}}}}},
         r"stages.animate.gpuMemoryMiB and a required nodeAffinity"),
        ({"stages": {"animate": {"shmSize": "lots"}}}, r"stages/animate/shmSize"),
    ],
    ids=["weights-outside-the-volume", "gpu-class-and-own-affinity", "bad-shm-size"],
)
def test_bad_animate_values_fail_clearly(values, message):
    with pytest.raises(ConfigError, match=re.compile(message, re.S)):
        chart.render(values)


def test_a_run_can_turn_a_gpu_stage_to_cpu():
    """animate is a GPU stage by default; a run on the render backend asks for no GPU, and gets none."""
    docs = chart.render({"run": {"name": "cpu-animate", "animate": {"resources": {"gpu": 0}}}})
    res = stage_jobs(docs)["animate"]["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert res["limits"] == {"memory": "4Gi"} and "nvidia.com/gpu" not in res["requests"]


def test_real_run_example_renders_with_its_cluster_values():
    """examples/real-mpii.yaml + examples/values/real-mpii-gpu.yaml, as `posesyn submit -f` merges them: strict
    manifests; the animate pod gets a GPU of the 80 GB class, 96Gi, /dev/shm and the weights read-only where
    the run config's model path points."""
    from posesyn_core.launch.submit import submit_values

    examples = chart.CHART_DIR.parents[1] / "examples"
    run = load_run_config(examples / "real-mpii.yaml")
    docs = chart.render(submit_values(run, [examples / "values" / "real-mpii-gpu.yaml"]))
    validate_strict(docs)
    pod = stage_jobs(docs)["animate"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"] == {"memory": "96Gi", "nvidia.com/gpu": 1}
    assert {m["mountPath"]: m.get("readOnly", False) for m in container["volumeMounts"]}["/models"] is True
    assert run.animate.wan_animate.model_path.startswith("/models/")
    assert "nodeAffinity" in pod["affinity"] and "/dev/shm" in {m["mountPath"] for m in container["volumeMounts"]}
