"""The stage images, built and run for real: a Docker engine (started as DESIGN.md section 6 says), the base
image and stage images built offline by images/build.py, and stage containers run exactly as their rendered Job's
container spec says (image, command, env, envFrom Secret, volume mounts, security context, JOB_COMPLETION_INDEX
for Indexed Jobs) against the moto S3 server on 127.0.0.1 (`--network host`).

Skipped, with the reason, where no Docker engine can be installed or started (tests/images/setup_docker.sh).
The debootstrap root filesystem and wheels are cached in $POSESYN_IMAGE_CACHE (default /var/cache/posesyn-images),
and Docker's layer cache keeps rebuilds short.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helm"))
from chart_cases import stage_jobs, toy_registry  # noqa: E402

from posesyn_core import __version__, pipeline  # noqa: E402
from posesyn_core.launch import chart  # noqa: E402

# A first build on a fresh machine (debootstrap, wheels, base image) takes minutes; later ones hit the caches.
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("POSESYN_IMAGE_CACHE", "/var/cache/posesyn-images"))
SECRET = "posesyn-s3"  # the Secret the chart's envFrom names; its data is what the test hands the container
TAG = __version__


def docker(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


@pytest.fixture(scope="module")
def engine():
    if shutil.which("docker") and docker("info", check=False).returncode == 0:
        return
    setup = subprocess.run(["bash", str(Path(__file__).parent / "setup_docker.sh")], capture_output=True, text=True)
    if setup.returncode != 0:
        pytest.skip(f"no Docker engine: {(setup.stderr or setup.stdout).strip().splitlines()[-1:]}")


@pytest.fixture(scope="module")
def images(engine):
    """Build base + eem + filter (as registered) + the toy plugin image; returns the stages built."""
    wanted = [s for s in ("eem", "filter") if s in pipeline.STAGES]
    CACHE.mkdir(parents=True, exist_ok=True)
    out = subprocess.run([sys.executable, str(REPO / "images" / "build.py"), "--cache", str(CACHE), *wanted],
                         capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    print(out.stdout[out.stdout.rfind("image  "):])
    return wanted


@pytest.fixture(scope="module")
def toy_image(images, tmp_path_factory):
    """A plugin image as a user would make one: FROM posesyn-base, the plugin module, one entry point per stage."""
    ctx = tmp_path_factory.mktemp("toy-image")
    shutil.copy(REPO / "tests" / "helm" / "posesyn_toy_stages.py", ctx)
    lines = [f"FROM posesyn-base:{TAG}", "COPY posesyn_toy_stages.py /opt/posesyn/plugins/",
             "ENV PYTHONPATH=/opt/posesyn/plugins"]  # fmt: skip
    for stage in ("toy-count", "toy-square"):
        entry = f"import sys\nfrom posesyn_core.launch.entrypoint import main\nsys.exit(main({stage!r}))\n"
        (ctx / f"{stage}.py").write_text(entry)
        lines.append(f"COPY {stage}.py /opt/posesyn/jobs/{stage}.py")
    (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
    docker("build", "--network", "none", "-t", f"posesyn-toy-count:{TAG}", "-t", f"posesyn-toy-square:{TAG}", str(ctx))


def run_like_kubernetes(job: dict[str, Any], configmaps: dict[str, dict], secrets: dict[str, dict], index: int | None,
                        workdir: Path) -> subprocess.CompletedProcess:  # fmt: skip
    """`docker run` of a Job's pod exactly as its spec says; refuses anything in the spec it cannot honour."""
    pod = job["spec"]["template"]["spec"]
    (ctr,) = pod["containers"]
    sec = {**pod.get("securityContext", {}), **ctr["securityContext"]}
    args = ["run", "--rm", "--network", "host", "--user", f"{sec['runAsUser']}:{sec['runAsGroup']}"]
    if sec.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if sec.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    args += [f"--cap-drop={c}" for c in sec["capabilities"]["drop"]]
    for env in ctr.get("env", []):
        assert set(env) == {"name", "value"}, f"unsupported env source {env}"
        args += ["-e", f"{env['name']}={env['value']}"]
    for source in ctr.get("envFrom", []):
        for key, value in secrets[source["secretRef"]["name"]].items():
            args += ["-e", f"{key}={value}"]
    if job["spec"].get("completionMode") == "Indexed":
        args += ["-e", f"JOB_COMPLETION_INDEX={index}"]  # what the Job controller adds to Indexed pods
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in ctr["volumeMounts"]:
        vol = volumes[mount["name"]]
        if "configMap" in vol:
            folder = workdir / mount["name"]
            folder.mkdir(exist_ok=True)
            for key, text in configmaps[vol["configMap"]["name"]]["data"].items():
                (folder / key).write_text(text)
            args += ["-v", f"{folder}:{mount['mountPath']}:ro"]
        elif "emptyDir" in vol:
            size = docker_size(vol["emptyDir"]["sizeLimit"])
            args += ["--tmpfs", f"{mount['mountPath']}:rw,exec,mode=1777,size={size}"]
        else:
            raise AssertionError(f"volume {vol} not supported in this test (S3 runs mount no PVC)")
    resources = ctr["resources"]["limits"]
    args += ["--memory", docker_size(resources["memory"])]
    args += ["--entrypoint", ctr["command"][0], ctr["image"], *ctr["command"][1:], *ctr.get("args", [])]
    return docker(*args, check=False)


def docker_size(quantity: str) -> str:
    """A Kubernetes binary quantity ('8Gi', '512Mi') in docker's notation ('8g', '512m')."""
    number, unit = quantity[:-2], quantity[-2:]
    assert unit in ("Ki", "Mi", "Gi") and number.isdigit(), f"unsupported quantity {quantity!r}"
    return number + unit[0].lower()


def run_job(docs: list[dict], stage: str, secrets: dict, workdir: Path) -> list[subprocess.CompletedProcess]:
    job = stage_jobs(docs)[stage]
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    indexed = job["spec"].get("completionMode") == "Indexed"
    indices = range(job["spec"]["completions"]) if indexed else [None]
    return [run_like_kubernetes(job, configmaps, secrets, i, workdir) for i in indices]


def s3_values(endpoint: str, bucket: str, run: dict) -> dict:
    return {"run": run, "storage": {"type": "s3", "prefix": "runs/it",
            "s3": {"endpoint": endpoint, "bucket": bucket, "credentialsSecret": SECRET}},
            "image": {"pullPolicy": "Never"}}  # fmt: skip


def test_stage_containers_run_as_rendered_against_s3(toy_image, s3_server, s3_env, s3_bucket, tmp_path):
    """The toy plugin stages: a single-pod Job, then an Indexed Job of 2 shards (the last one finalizes)."""
    secrets = {SECRET: {k: s3_env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}}
    run = {"name": "it", "plugins": ["posesyn_toy_stages"], "stages": ["toy-count", "toy-square"],
           "toy-count": {"n": 5}, "toy-square": {"shards": 2, "offset": 1}}  # fmt: skip
    with toy_registry() as run_cls:
        docs = chart.render(s3_values(s3_server, s3_bucket, run), chart.prepared_chart(tmp_path, run_cls))
    for stage in ("toy-count", "toy-square"):
        for result in run_job(docs, stage, secrets, tmp_path):
            assert result.returncode == 0, f"{stage}: {result.stderr[-2000:]}"
            assert json.loads(result.stderr.strip().splitlines()[-1])["msg"] == "finished"  # JSON logs in pods

    s3 = boto3.client("s3")

    def get(key: str) -> Any:
        return json.loads(s3.get_object(Bucket=s3_bucket, Key=f"runs/it/{key}")["Body"].read())

    numbers = get("toy-count/counts.json")
    assert len(numbers) == 5 and get("toy-square/squares.json") == [n * n + 1 for n in numbers]
    for stage, counts in (("toy-count", {"numbers": 5}), ("toy-square", {"squares": 5})):
        manifest = get(f"{stage}/_SUCCESS")
        assert manifest["stage"] == stage and manifest["counts"] == counts and len(manifest["fingerprint"]) == 24
        assert manifest["versions"]["posesyn"] == __version__ and manifest["seconds"] >= 0
    assert get("toy-square/_SUCCESS")["inputs"] == {"toy-count": get("toy-count/_SUCCESS")["fingerprint"]}
    assert [get(f"toy-square/_SUCCESS.{i}")["shard"] for i in range(2)] == [0, 1]

    # Run again: every pod finds its outputs up to date and skips (resume after a Job restart).
    again = run_job(docs, "toy-count", secrets, tmp_path)[0]
    assert again.returncode == 0 and "up to date, skipping" in again.stderr


def write_eem_inputs(root: str, n: int) -> None:
    """What world and tpe-train would leave in S3: a small 2D pose dataset and a tiny TPE checkpoint (seed 0)."""
    import numpy as np
    import torch

    from posesyn_core.data.dataset import PoseSample, write_dataset
    from posesyn_core.storage import open_store
    from posesyn_core.tpe.model import TPE, TPEConfig, checkpoint_dict
    from posesyn_core.tpe.train import save_torch

    store = open_store(root)
    rng = np.random.default_rng(0)
    samples, images = [], []
    for i in range(n):
        j2d = np.concatenate([rng.uniform(8, 56, (22, 2)), np.ones((22, 1))], 1)
        samples.append(PoseSample(id=f"s{i:03d}", image=f"images/s{i:03d}.png", width=64, height=64,
                                  bbox=[8, 8, 48, 48], joints2d=j2d.tolist(), meta={"family": "walk"}))  # fmt: skip
        images.append(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    write_dataset(store, "world/wild2d", "wild2d", "smpl22", samples, images, image_ext="png", part_size=8)
    torch.manual_seed(0)
    save_torch(store, "tpe-train/model.pt", checkpoint_dict(TPE(TPEConfig(img_size=32, widths=(4, 8), head_dim=16))))


def test_eem_container_mines_hard_poses_from_s3(images, s3_server, s3_env, s3_bucket, tmp_path):
    """The real eem image, 2 shards as an Indexed Job, on inputs in S3: scores, hard set and manifest in S3."""
    if "eem" not in images:
        pytest.skip("stage 'eem' is not registered yet")
    n = 16
    write_eem_inputs(f"s3://{s3_bucket}/runs/it", n)
    secrets = {SECRET: {k: s3_env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}}
    run = {"name": "it", "stages": ["eem"], "device": "cpu",
           "eem": {"shards": 2, "num_challenging": 3, "num_references": 2, "chunk_size": 8, "batch_size": 8}}
    docs = chart.render(s3_values(s3_server, s3_bucket, run))
    assert stage_jobs(docs)["eem"]["spec"]["completionMode"] == "Indexed"
    for result in run_job(docs, "eem", secrets, tmp_path):
        assert result.returncode == 0, result.stderr[-3000:]

    s3 = boto3.client("s3")

    def get(key: str) -> bytes:
        return s3.get_object(Bucket=s3_bucket, Key=f"runs/it/eem/{key}")["Body"].read()

    manifest = json.loads(get("_SUCCESS"))
    assert manifest["stage"] == "eem" and manifest["num_shards"] == 2 and manifest["counts"]["samples_in"] == n
    assert manifest["versions"]["torch"].startswith("2.") and len(manifest["fingerprint"]) == 24
    hard = [json.loads(line) for line in get("challenging.jsonl").splitlines()]
    assert [h["rank"] for h in hard] == [0, 1, 2]
    assert len(get("scores.jsonl").splitlines()) == n
    assert get("score_histogram.png")[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("stage", ["eem", "filter"])
def test_builtin_stage_image_starts_and_reports_a_usage_error(images, s3_server, s3_env, s3_bucket, tmp_path, stage):
    """The built-in stage images start from their rendered spec, load the run config and map a missing input to
    exit 2 (podFailurePolicy: fail the Job at once) with one clear line."""
    if stage not in images:
        pytest.skip(f"stage {stage!r} is not registered yet")
    spec = pipeline.STAGES[stage]
    upstream = next(s for s in spec.inputs if s in pipeline.STAGES)
    secrets = {SECRET: {k: s3_env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}}
    order = list(pipeline.STAGES)
    run = {"name": "it", "stages": sorted({upstream, stage}, key=order.index)}
    docs = chart.render(s3_values(s3_server, s3_bucket, run))
    results = run_job(docs, stage, secrets, tmp_path)
    for result in results:
        assert result.returncode == 2, result.stderr[-2000:]
        assert f"needs '{upstream}', which has not completed" in result.stderr.strip().splitlines()[-1]
