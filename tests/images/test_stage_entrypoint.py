"""The stage images' entry point (`jobs/<stage>.py` -> posesyn_core.launch.entrypoint.main): config from
POSESYN_CONFIG, shard from JOB_COMPLETION_INDEX, and exit codes the chart's podFailurePolicy relies on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helm"))
from chart_cases import toy_registry  # noqa: E402

from posesyn_core import pipeline  # noqa: E402
from posesyn_core.errors import EXIT_DATA, EXIT_OK, EXIT_USAGE  # noqa: E402
from posesyn_core.launch.entrypoint import main  # noqa: E402
from posesyn_core.storage import open_store  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_yaml(tmp_path, monkeypatch):
    """Write a toy run config and point POSESYN_CONFIG at it; returns (path, root dir)."""

    def write(extra: str = "") -> tuple[Path, Path]:
        root = tmp_path / "root"
        path = tmp_path / "run.yaml"
        path.write_text(f"name: ep\nroot: {root.as_uri()}\nplugins: [posesyn_toy_stages]\n"
                        f"stages: [toy-count, toy-square]\ntoy-square: {{shards: 2}}\n{extra}")  # fmt: skip
        monkeypatch.setenv("POSESYN_CONFIG", str(path))
        monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
        return path, root

    with toy_registry():
        yield write


def test_runs_a_stage_and_each_shard_from_the_environment(run_yaml, monkeypatch):
    _, root = run_yaml()
    store = open_store(root.as_uri())
    assert main("toy-count") == EXIT_OK
    counts = store.read_json("toy-count/counts.json")
    assert store.read_json("toy-count/_SUCCESS")["counts"] == {"numbers": 8}

    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    assert main("toy-square") == EXIT_OK
    assert store.exists("toy-square/_SUCCESS.1") and not store.exists("toy-square/_SUCCESS")
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "0")
    assert main("toy-square") == EXIT_OK  # the shard completing the set finalizes
    assert store.read_json("toy-square/squares.json") == [n * n for n in counts]
    assert store.read_json("toy-square/_SUCCESS")["num_shards"] == 2


@pytest.mark.parametrize(
    ("stage", "extra", "index", "message"),
    [
        ("toy-count", "seeed: 1\n", None, "seeed: unknown key"),
        ("toy-square", "", None, "needs 'toy-count', which has not completed"),
        ("toy-square", "", "x", "JOB_COMPLETION_INDEX='x' is not a shard index"),
        ("toy-square", "toy-count: {n: 2}\n", "5", "shard index 5 out of range"),
        ("no-such", "", None, "this image runs stage 'no-such', which is not registered"),
    ],
    ids=["typo", "missing-input", "bad-index", "index-out-of-range", "unknown-stage"],
)
def test_usage_errors_exit_2_with_one_line(run_yaml, monkeypatch, capsys, stage, extra, index, message):
    run_yaml(extra)
    if "toy-count" in extra:  # inputs present, so the shard index is what is wrong
        assert main("toy-count") == EXIT_OK
        capsys.readouterr()
    if index is not None:
        monkeypatch.setenv("JOB_COMPLETION_INDEX", index)
    assert main(stage) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"posesyn {stage}: error: ") and message in err[0], err


def test_stage_not_in_this_run_is_a_usage_error(run_yaml, capsys):
    path, _ = run_yaml()
    path.write_text(path.read_text().replace("stages: [toy-count, toy-square]", "stages: [toy-count]"))
    assert main("toy-square") == EXIT_USAGE
    assert "'toy-square' is not part of this run" in capsys.readouterr().err


def test_too_much_bad_data_exits_3(run_yaml, monkeypatch, capsys):
    """DataError (quarantine over its limit) maps to exit 3, which the Job fails on at once."""
    run_yaml()

    def reject_all(ctx):
        ctx.counts["samples_in"] = 2
        ctx.reject("a", "unreadable")
        ctx.reject("b", "unreadable")

    monkeypatch.setattr(sys.modules["posesyn_toy_stages"], "count", reject_all)
    assert main("toy-count") == EXIT_DATA
    assert "2 of 2 input samples quarantined" in capsys.readouterr().err


def test_every_registered_stage_has_an_entry_point_and_dockerfile():
    """jobs/<stage>.py is the 3-line call of the shared entry point; images/<stage>/Dockerfile is up to date."""
    for name in pipeline.STAGES:
        job = REPO / "jobs" / f"{name}.py"
        assert job.exists(), f"jobs/{name}.py missing"
        assert f'sys.exit(main("{name}"))' in job.read_text()
    out = subprocess.run([sys.executable, str(REPO / "images" / "build.py"), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
