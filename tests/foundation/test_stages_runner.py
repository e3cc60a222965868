"""The stage contract (resume, stale outputs, shards, quarantine) and the embedded runner / CLI."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from posesyn_core.errors import DataError
from posesyn_core.pipeline import load_run_config
from posesyn_core.stages import execute_stage
from posesyn_core.storage import open_store
from tests.conftest import REPO, invoke_assert_code

PLUGIN_DIR = Path(__file__).parent
sys.path.insert(0, str(PLUGIN_DIR))


def write_cfg(tmp_path: Path, name: str = "run.yaml", **sections) -> Path:
    cfg = {"name": "t", "root": "out", "seed": 7, "plugins": ["posesyn_test_stages"],
           "stages": sections.pop("stages", ["draw", "total", "square"]), **sections}  # fmt: skip
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every output file except the timing-bearing manifests and logs."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and "_SUCCESS" not in rel and not rel.startswith("_logs"):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_skip_when_up_to_date_and_rerun_when_config_changes(tmp_path):
    run = load_run_config(write_cfg(tmp_path, draw={"chunks": 3, "items": 10}))
    assert execute_stage(run, "draw").status == "done"
    assert execute_stage(run, "total").status == "done"
    assert execute_stage(run, "draw").status == "skipped"
    # Changing draw's config makes draw stale (outputs wiped and rewritten) and total stale through its input.
    run2 = load_run_config(write_cfg(tmp_path, draw={"chunks": 2, "items": 10}))
    assert execute_stage(run2, "draw").status == "done"
    store = open_store(run2.root)
    assert [k for k in store.list("draw") if k.endswith(".npz")] == ["draw/chunk-000.npz", "draw/chunk-001.npz"]
    assert execute_stage(run2, "total").status == "done"
    assert store.read_json("total/total.json")["n"] == 2
    # Resources / shards / device do not change outputs: still up to date.
    run3 = load_run_config(write_cfg(tmp_path, draw={"chunks": 2, "items": 10, "resources": {"cpu": "4"}}))
    assert execute_stage(run3, "draw").status == "skipped"


def test_sharded_stage_finalizes_after_last_shard(tmp_path):
    run = load_run_config(write_cfg(tmp_path, square={"n": 10, "shards": 3}))
    store = open_store(run.root)
    assert execute_stage(run, "square", shard=2).status == "shard-done"
    assert execute_stage(run, "square", shard=0).status == "shard-done"
    assert not store.exists("square/_SUCCESS")
    res = execute_stage(run, "square", shard=1)  # completes the set: finalizes
    assert res.status == "done" and res.manifest["counts"]["rows"] == 10
    assert [r["i"] for r in store.read_jsonl("square/all.jsonl")] == list(range(10))
    assert execute_stage(run, "square", shard=1).status == "skipped"


def test_quarantine_writes_reasons_and_enforces_fraction(tmp_path):
    run = load_run_config(write_cfg(tmp_path, square={"n": 20, "bad_every": 10, "max_bad_fraction": 0.2}))
    res = execute_stage(run, "square")
    store = open_store(run.root)
    assert res.manifest["rejected"] == 2
    assert store.read_jsonl("square/rejected.jsonl") == [
        {"id": "s0", "reason": "divisible by bad_every"}, {"id": "s10", "reason": "divisible by bad_every"}]
    run_strict = load_run_config(write_cfg(tmp_path, square={"n": 20, "bad_every": 2, "max_bad_fraction": 0.2}))
    with pytest.raises(DataError, match=r"10 of 20 input samples quarantined .*rejected.jsonl"):
        execute_stage(run_strict, "square")


def test_cli_run_then_status_and_skip(tmp_path):
    cfg = write_cfg(tmp_path, draw={"chunks": 2, "items": 10}, square={"n": 4, "shards": 2})
    env = {**os.environ, "PYTHONPATH": f"{PLUGIN_DIR}:{REPO}"}
    posesyn = [sys.executable, "-m", "posesyn_core.cli"]
    first = subprocess.run([*posesyn, "run", str(cfg)], env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "run summary" in first.stderr and "done" in first.stderr
    status = subprocess.run([*posesyn, "status", str(cfg), "--json"], env=env, capture_output=True, text=True)
    assert '"state": "done"' in status.stdout and "pending" not in status.stdout
    again = subprocess.run([*posesyn, "run", str(cfg)], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    for stage in ("draw", "total", "square"):
        assert re.search(rf"│ {stage}\s+│ skipped", again.stderr), again.stderr


@pytest.mark.slow
def test_sigkill_midway_then_rerun_is_byte_identical(tmp_path):
    sections = {"draw": {"chunks": 12, "items": 20_000, "sleep": 0.25}, "square": {"n": 30, "shards": 3}}
    env = {**os.environ, "PYTHONPATH": f"{PLUGIN_DIR}:{REPO}"}
    posesyn = [sys.executable, "-m", "posesyn_core.cli", "run"]
    clean = tmp_path / "clean"
    clean.mkdir()
    subprocess.run([*posesyn, str(write_cfg(clean, **sections))], env=env, check=True, capture_output=True)

    killed = tmp_path / "killed"
    killed.mkdir()
    cfg = write_cfg(killed, **sections)
    proc = subprocess.Popen([*posesyn, str(cfg)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    chunk_dir = killed / "out" / "draw"
    deadline = time.monotonic() + 60
    while len(list(chunk_dir.glob("chunk-*.npz"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # runner and its stage child, mid-stage
    proc.wait()
    assert 4 <= len(list(chunk_dir.glob("chunk-*.npz"))) < 12
    assert not (chunk_dir / "_SUCCESS").exists()
    subprocess.run([*posesyn, str(cfg)], env=env, check=True, capture_output=True)
    assert tree_digest(killed / "out") == tree_digest(clean / "out")


def test_typo_key_is_one_line_exit_2(tmp_path):
    cfg = write_cfg(tmp_path, draw={"chunkz": 3})
    result = invoke_assert_code(["run", str(cfg)], ret_code=2)
    assert "draw.chunkz: unknown key (typo?)" in result.output and str(cfg) in result.output
    assert "Traceback" not in result.output


def test_wrong_type_and_missing_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("root: x\nseed: lots\n")
    out = invoke_assert_code(["config", "check", str(bad)], ret_code=2).output
    assert "name: required key is missing" in out and "seed: Input should be a valid integer" in out


def test_help_everywhere():
    from posesyn_core.cli import cli

    invoke_assert_code(["--help"], output_contains="Examples")

    def walk(group, path):
        for name, cmd in group.commands.items():
            out = invoke_assert_code([*path, name, "--help"]).output
            assert len(out.splitlines()) > 3, f"{path + [name]} help is empty"
            if hasattr(cmd, "commands"):
                walk(cmd, [*path, name])

    walk(cli, [])


def test_config_schema_is_json():
    import json

    schema = json.loads(invoke_assert_code(["config", "schema"]).output)
    assert schema["additionalProperties"] is False and "root" in schema["properties"]


def test_runtime_keys_do_not_change_the_fingerprint():
    from posesyn_core.config import StageSection
    from posesyn_core.stages import section_hash

    class Section(StageSection):
        runtime_keys = frozenset({"workers"})
        workers: int = 1
        size: int = 1

    assert section_hash(Section(workers=4)) == section_hash(Section(workers=1))
    assert section_hash(Section(size=2)) != section_hash(Section(size=1))


def test_an_added_key_at_its_default_keeps_the_fingerprint_of_runs_made_before_it():
    from posesyn_core.config import StageSection
    from posesyn_core.stages import section_hash

    class Before(StageSection):
        size: int = 1

    class After(StageSection):
        added_keys = frozenset({"share"})
        size: int = 1
        share: float = 0.0

    assert section_hash(After()) == section_hash(Before())
    assert section_hash(After(share=0.5)) != section_hash(Before())
    assert section_hash(After(size=2)) == section_hash(Before(size=2)) != section_hash(Before())


def test_dotted_runtime_keys_reach_nested_options():
    from posesyn_core.animate.config import AnimateSection
    from posesyn_core.stages import section_hash

    base = section_hash(AnimateSection())
    assert section_hash(AnimateSection.model_validate({"render": {"workers": 7}})) == base
    assert section_hash(AnimateSection.model_validate({"wan_animate": {"pipelines_per_device": 3}})) == base
    assert section_hash(AnimateSection.model_validate({"render": {"ambient": [0.1, 0.2]}})) != base
