"""The Helm chart's generated parts, and rendering it with the real Helm engine.

`helm/posesyn` is hand-written except two things derived from the code, so they cannot drift from it:
- `values.schema.json`: the chart keys' schema (below, mirroring `values.yaml`) plus, under `run`, the pydantic
  `RunConfig` schema (`RunConfig.model_json_schema(by_alias=True)`) less `root`, which the chart derives from
  `storage`. Every object is closed (`additionalProperties: false`), so a typo in any key fails `helm install`.
- the `pipeline` and `stages` blocks of `values.yaml`: the registered stages in pipeline order with their image,
  GPU flag, shardability and default resources from their `StageSpec`.

`python -m posesyn_core.launch.chart` rewrites both (run it after registering or changing a stage;
`--check` fails when they are stale). A run with `plugins` stages renders through `prepared_chart`, a copy of the
chart generated for the registry as it is after importing the plugins.

Rendering (`render`) goes through `helm-python-sdk` (the Helm v4 Go SDK), so templates, schema validation and
`fail`s behave exactly as `helm install` would.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from posesyn_core.errors import ConfigError
from posesyn_core.stages import StageSpec

CHART_DIR = Path(__file__).resolve().parents[2] / "helm" / "posesyn"
SCHEMA_DRAFT = "https://json-schema.org/draft/2020-12/schema"
_BLOCK = re.compile(r"(  # BEGIN GENERATED (\w+) [^\n]*\n)(.*?)(  # END GENERATED \2\b[^\n]*\n)", re.S)

# --- schema of the chart's own keys (mirrors values.yaml; the tests check they agree) -----------------------------


def _obj(properties: dict[str, Any], required: Iterable[str] = ()) -> dict[str, Any]:
    """A closed object: unknown keys are errors."""
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _str(description: str, **kw: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **kw}


def _int(description: str, minimum: int = 0, nullable: bool = False) -> dict[str, Any]:
    return {"type": ["integer", "null"] if nullable else "integer", "minimum": minimum, "description": description}


# Kubernetes objects passed through verbatim (validated by the API server, not by us).
_K8S_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_K8S_LIST = {"type": "array", "items": {"type": "object"}}
_K8S_OBJ = {"type": "object"}
_DNS_NAME = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$"
_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"


def _resources(with_gpu: bool) -> dict[str, Any]:
    props = {
        "cpu": _str("CPU request, e.g. '2' or '500m'.", pattern=_QUANTITY),
        "memory": _str("Memory request and limit, e.g. '8Gi'.", pattern=_QUANTITY),
    }
    if with_gpu:
        props["gpu"] = _int("GPUs to request (gpu.resourceName limit).")
    return _obj(props, required=props)


def _scheduling(prefix: str) -> dict[str, Any]:
    return {
        "nodeSelector": {**_K8S_MAP, "description": f"Node labels {prefix} pods must match."},
        "tolerations": {**_K8S_LIST, "description": f"Tolerations of {prefix} pods."},
        "affinity": {**_K8S_OBJ, "description": f"Affinity of {prefix} pods."},
        "priorityClassName": _str(f"PriorityClass of {prefix} pods.", pattern=_DNS_NAME),
    }


STAGE_ENTRY_SCHEMA = _obj(
    {
        "image": _str("Image name (without registry and tag).", minLength=1),
        "gpu": {"type": "boolean", "description": "GPU stage: CUDA image; GPU requests add gpu.* scheduling."},
        "shardable": {"type": "boolean", "description": "Runs as an Indexed Job of run.<stage>.shards pods."},
        "resources": _resources(with_gpu=True),
        "parallelism": _int("Shard pods running at once (null: all shards).", minimum=1, nullable=True),
        **_scheduling("this stage's"),
        "backoffLimit": _int("Retries of a failed pod (null: job.backoffLimit).", nullable=True),
        "activeDeadlineSeconds": _int("Stage wall-clock limit (null: job.activeDeadlineSeconds).", 1, True),
        "gpuMemoryMiB": _int("Least memory of the node's GPUs in MiB (null: any GPU).", 1, True),
        "shmSize": {"type": ["string", "null"], "pattern": _QUANTITY, "description": "Size of /dev/shm (null: none)."},
    },
    required=["image", "gpu", "shardable", "resources"],
)

CHART_KEYS_SCHEMA: dict[str, Any] = {
    "nameOverride": _str("Override the chart name part of resource names.", maxLength=40),
    "fullnameOverride": _str("Override the full resource-name prefix.", pattern=_DNS_NAME, maxLength=40),
    "image": _obj(
        {
            "registry": _str("Registry prefix of every image."),
            "tag": _str("Tag of every image (default: appVersion)."),
            "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"], "description": "Image pull policy."},
        }
    ),
    "imagePullSecrets": {**_K8S_LIST, "description": "Image pull secrets."},
    "storage": _obj(
        {
            "type": {"enum": ["pvc", "s3"], "description": "Storage backend of the run."},
            "prefix": _str("Folder or key prefix of the run (default: run name).", pattern=r"^[^/].*[^/]$|^$"),
            "pvc": _obj(
                {
                    "existingClaim": _str("Existing PVC to use.", pattern=_DNS_NAME),
                    "create": {"type": "boolean", "description": "Create a PVC when no existingClaim is given."},
                    "accessModes": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"enum": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]},
                    },
                    "size": _str("Size of the created PVC.", pattern=_QUANTITY),
                    "storageClassName": _str("StorageClass of the created PVC."),
                    "mountPath": _str("Mount path in stage pods.", pattern=r"^/[^:]*[^/:]$"),
                }
            ),
            "s3": _obj(
                {
                    "endpoint": _str("S3 endpoint URL (empty: AWS).", pattern=r"^(https?://.+)?$"),
                    "bucket": _str("Bucket of the run.", pattern=r"^([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])?$"),
                    "region": _str("Region."),
                    "credentialsSecret": _str("Existing Secret with AWS_* keys.", pattern=_DNS_NAME),
                }
            ),
        }
    ),
    "job": _obj(
        {
            "backoffLimit": _int("Retries of a failed stage pod."),
            "activeDeadlineSeconds": _int("Wall-clock limit of each stage Job.", minimum=1),
            "ttlSecondsAfterFinished": _int("Seconds a finished Job is kept."),
        }
    ),
    "scheduling": _obj(_scheduling("all")),
    "gpu": _obj(
        {
            "enabled": {"type": "boolean", "description": "Request GPUs (false: every stage runs on CPU)."},
            "resourceName": _str("Extended resource name of GPUs.", minLength=1),
            "nodeSelector": {**_K8S_MAP, "description": "Node labels added for GPU pods."},
            "tolerations": {**_K8S_LIST, "description": "Tolerations added for GPU pods."},
            "memoryLabel": _str("Node label holding the GPU memory in MiB (stages.<stage>.gpuMemoryMiB).", minLength=1),
        }
    ),
    "models": _obj(
        {
            "existingClaim": _str("Existing PVC holding model weights (empty: no model volume).", pattern=_DNS_NAME),
            "subPath": _str("Sub-path of the volume to mount (empty: its root)."),
            "mountPath": _str("Where stage pods see it (read-only).", pattern=r"^/[^:]*[^/:]$"),
        }
    ),
    "kueue": _obj(
        {
            "enabled": {"type": "boolean", "description": "Admit stage Jobs through Kueue."},
            "queueName": _str("Kueue LocalQueue name.", pattern=_DNS_NAME),
        }
    ),
    "podSecurity": _obj(
        {
            "runAsUser": _int("Non-zero user id of every container.", minimum=1),
            "runAsGroup": _int("Group id of every container.", minimum=1),
            "tmpSizeLimit": _str("Size limit of /tmp.", pattern=_QUANTITY),
            "cacheSizeLimit": _str("Size limit of /cache.", pattern=_QUANTITY),
        }
    ),
    "env": {**_K8S_LIST, "description": "Extra environment variables of stage containers."},
    "podAnnotations": {**_K8S_MAP, "description": "Extra annotations of stage pods."},
    "stageServiceAccountName": _str("ServiceAccount of stage pods.", pattern=_DNS_NAME),
    "sequencer": _obj(
        {
            "enabled": {"type": "boolean", "description": "Run the in-cluster sequencer Job."},
            "image": _str("Sequencer image name.", minLength=1),
            "serviceAccountAnnotations": {**_K8S_MAP, "description": "Annotations of the sequencer's "
                                          "ServiceAccount (pod identity for the storage root it checks and leases)."},
            "resources": _resources(with_gpu=False),
            "backoffLimit": _int("Retries of the sequencer pod."),
            "activeDeadlineSeconds": _int("Wall-clock limit of the whole run.", minimum=1),
        }
    ),
    "pipeline": {
        "type": "array",
        "minItems": 1,
        "uniqueItems": True,
        "items": {"type": "string"},
        "description": "All stages in pipeline order.",
    },
    "stages": {"type": "object", "additionalProperties": STAGE_ENTRY_SCHEMA, "description": "Per-stage settings."},
}


def run_schema(run_cls: type) -> tuple[dict[str, Any], dict[str, Any]]:
    """(schema of the chart's `run` key, its `$defs`) from the pydantic RunConfig.

    `root` is dropped (the chart derives it from `storage`) and `name` made optional (default: release name).
    """
    schema = run_cls.model_json_schema(by_alias=True)
    defs = schema.pop("$defs", {})
    schema["properties"].pop("root")
    schema["required"] = [k for k in schema.get("required", []) if k not in ("root", "name")]
    if not schema["required"]:
        del schema["required"]
    # Name the valid stages; pydantic's validator checks the order, the chart's validations the shards.
    stages = schema["properties"]["stages"]
    stages["anyOf"][0]["items"] = {"enum": list(run_cls.registry)}
    schema["description"] = "The run config (posesyn RunConfig) less root, which is derived from storage."
    return schema, defs


def values_schema(run_cls: type) -> dict[str, Any]:
    """The whole `values.schema.json`: chart keys plus the run config, closed at every level."""
    run, defs = run_schema(run_cls)
    return {
        "$schema": SCHEMA_DRAFT,
        "title": "posesyn chart values",
        "type": "object",
        "additionalProperties": False,
        "properties": {**copy.deepcopy(CHART_KEYS_SCHEMA), "run": run},
        "$defs": defs,
    }


# --- the generated blocks of values.yaml ---------------------------------------------------------------------------


def stage_entry(spec: StageSpec) -> dict[str, Any]:
    """A stage's chart settings as the registry declares them (the same keys for every stage)."""
    res = spec.resources
    gpus = res.gpu or int(spec.gpu)  # a GPU stage asks for one GPU unless its spec says how many
    return {
        "image": spec.image,
        "gpu": spec.gpu,
        "shardable": spec.shardable,
        "resources": {"cpu": res.cpu, "memory": res.memory, "gpu": gpus},
        "parallelism": None,
        "nodeSelector": {},
        "tolerations": [],
        "affinity": {},
        "priorityClassName": "",
        "backoffLimit": None,
        "activeDeadlineSeconds": None,
        "gpuMemoryMiB": None,
        "shmSize": None,
    }


_STAGE_KEY_DOCS = {
    "image": "Image name (the registry and tag come from `image.*`).",
    "gpu": "GPU stage: built on the CUDA base image; pods requesting GPUs get `gpu.*` scheduling.",
    "shardable": "Runs as an Indexed Job of `run.{stage}.shards` pods (JOB_COMPLETION_INDEX = shard).",
    "resources": "Pod resources: cpu request, memory request = limit, gpu count; `run.{stage}.resources` wins.",
    "parallelism": "Shard pods running at once (null: all shards).",
    "nodeSelector": "Node labels for this stage's pods (merged over `scheduling.nodeSelector`).",
    "tolerations": "Tolerations for this stage's pods (added to `scheduling.tolerations`).",
    "affinity": "Affinity for this stage's pods (replaces `scheduling.affinity`).",
    "priorityClassName": "PriorityClass for this stage's pods (default `scheduling.priorityClassName`).",
    "backoffLimit": "Retries of a failed pod (null: `job.backoffLimit`).",
    "activeDeadlineSeconds": "Wall-clock limit of this stage's Job (null: `job.activeDeadlineSeconds`).",
    "gpuMemoryMiB": "GPU class: least memory per GPU in MiB, a required node affinity on `gpu.memoryLabel` when the "
    "pods request GPUs (e.g. 80000 for 80 GB cards; null: any GPU).",
    "shmSize": "Memory-backed /dev/shm of this size (counts against the memory limit; null: the runtime's 64 MiB).",
}


def _flow(value: Any) -> str:
    """One-line YAML of a value (scalars come with a document-end marker we drop)."""
    return yaml.safe_dump(value, default_flow_style=True, width=1000, sort_keys=False).removesuffix("...\n").strip()


def generated_blocks(specs: Iterable[StageSpec]) -> dict[str, str]:
    """The text of the `pipeline` and `stages` blocks of values.yaml, each key with its `# --` doc line."""
    specs = list(specs)
    pipeline = "".join(f"  - {s.name}\n" for s in specs)
    lines = []
    for s in specs:
        lines.append(f"  # -- Stage `{s.name}`: {s.description.rstrip('.')}.\n")
        lines.append(f"  {s.name}:\n")
        for key, value in stage_entry(s).items():
            lines.append(f"    # -- {_STAGE_KEY_DOCS[key].format(stage=s.name)}\n")
            lines.append(f"    {key}: {_flow(value)}\n")
    return {"pipeline": pipeline, "stages": "".join(lines)}


def regenerate_values(text: str, specs: Iterable[StageSpec]) -> str:
    """values.yaml with its generated blocks replaced (everything else kept byte for byte)."""
    blocks = generated_blocks(specs)
    found = set()

    def sub(m: re.Match) -> str:
        found.add(m.group(2))
        return m.group(1) + blocks[m.group(2)] + m.group(4)

    out = _BLOCK.sub(sub, text)
    if found != set(blocks):
        raise ConfigError(f"values.yaml: generated block markers missing for {sorted(set(blocks) - found)}")
    return out


def generated_files(chart_dir: Path = CHART_DIR, run_cls: type | None = None) -> dict[Path, str]:
    """What the chart's generated files should contain for `run_cls` (default: the current registry)."""
    if run_cls is None:
        from posesyn_core import pipeline

        run_cls = pipeline.RunConfig
    specs = list(run_cls.registry.values())
    return {
        chart_dir / "values.schema.json": json.dumps(values_schema(run_cls), indent=2) + "\n",
        chart_dir / "values.yaml": regenerate_values((chart_dir / "values.yaml").read_text(), specs),
    }


def stale_files(chart_dir: Path = CHART_DIR, run_cls: type | None = None) -> list[Path]:
    """Generated files that differ from what the registry says (empty when up to date)."""
    return [p for p, text in generated_files(chart_dir, run_cls).items() if not p.exists() or p.read_text() != text]


def generate(chart_dir: Path = CHART_DIR, run_cls: type | None = None) -> list[Path]:
    """Rewrite the chart's generated files for `run_cls` (default: the current registry); returns those changed."""
    changed = []
    for path, text in generated_files(chart_dir, run_cls).items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(path)
    return changed


def prepared_chart(dest: Path, run_cls: type, chart_dir: Path = CHART_DIR) -> Path:
    """A copy of the chart under `dest` generated for `run_cls` (e.g. with plugin stages registered)."""
    out = Path(dest) / "posesyn"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(chart_dir, out)
    generate(out, run_cls)
    return out


# --- values from a run config, and rendering -------------------------------------------------------------------


def values_for_run(run: Any) -> dict[str, Any]:
    """Chart values for a validated RunConfig: `run` (all keys but root) and `storage` from its root.

    An `s3://bucket/prefix` root becomes S3 storage; a `file://` root keeps the default PVC storage with the
    run name as prefix (a local folder means nothing inside the cluster). Merge your own values over these.
    """
    # Only what the run YAML set: chart defaults (e.g. a GPU stage's GPU count) fill the rest, and the pods'
    # loader fills the same pydantic defaults back in.
    values: dict[str, Any] = {"run": run.model_dump(mode="json", by_alias=True, exclude={"root"}, exclude_unset=True)}
    if run.root.startswith("s3://"):
        bucket, _, prefix = run.root[len("s3://") :].partition("/")
        values["storage"] = {"type": "s3", "s3": {"bucket": bucket}, "prefix": prefix.strip("/")}
    return values


def render(
    values: dict[str, Any], chart_dir: Path = CHART_DIR, release: str = "posesyn", namespace: str = "default"
) -> list[dict[str, Any]]:
    """Render the chart with the real Helm engine; returns the manifests (parsed) in template order.

    Bad values raise ConfigError with Helm's message (schema errors name the key; `fail`s say what to fix).
    """
    import helm_python as helm

    try:
        with helm.Chart.load(chart_dir) as chart:
            rendered = chart.render(values=values, name=release, namespace=namespace, is_install=True)
    except helm.HelmError as e:
        raise ConfigError(f"helm chart {chart_dir}: {e}") from None
    docs = []
    for name in sorted(rendered):
        if name.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(rendered[name]) if d)
    return docs


def main(argv: list[str] | None = None) -> int:
    """`python -m posesyn_core.launch.chart [--check]`: regenerate (or check) the chart's generated files."""
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["--check"]):
        print("usage: python -m posesyn_core.launch.chart [--check]", file=sys.stderr)
        return 2
    if args:
        stale = [p.name for p in stale_files()]
        if stale:
            print(f"stale generated chart files {stale}: run `python -m posesyn_core.launch.chart`", file=sys.stderr)
            return 1
        return 0
    for path in generate():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
