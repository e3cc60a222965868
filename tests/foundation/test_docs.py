"""The user docs stay true: the configuration reference is the one the models generate, every `posesyn` command
and option the docs show exists in the CLI, every `make` target exists, every linked file exists. (What the
commands do is tested where they are implemented; the demo and test commands run in CI.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from tests.conftest import REPO

DOCS = [REPO / "README.md", REPO / "helm" / "posesyn" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_INLINE = re.compile(r"`((?:posesyn|make) [^`]+)`")
_LINK = re.compile(r"\]\(([^)#:]+)(?:#[^)]*)?\)")


def _commands(path: Path) -> list[str]:
    """`posesyn ...` and `make ...` command lines: indented or fenced code lines, and inline code spans."""
    found = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if line.startswith(("    ", "\t")) and stripped.startswith(("posesyn ", "make ")):
            found.append(stripped)
        found += _INLINE.findall(line)
    commands = []
    for text in found:
        text = text.split(" #")[0]  # trailing comments
        for part in text.split("|"):  # `a | b` lists alternatives or pipes: each is a command
            part = part.split(">")[0].strip()  # redirections
            if part.startswith(("posesyn ", "make ")):
                commands.append(part)
    return commands


ALL = sorted({(p.relative_to(REPO).as_posix(), c) for p in DOCS for c in _commands(p)})


def test_the_docs_show_commands():
    assert len([c for _, c in ALL if c.startswith("posesyn ")]) > 15
    assert {"make demo", "make test"} <= {c for _, c in ALL}


def test_configuration_reference_is_generated_from_the_models():
    from posesyn_core.config_docs import configuration_markdown

    page = (REPO / "docs" / "configuration.md").read_text()
    assert page == configuration_markdown(), "stale: run `posesyn config docs > docs/configuration.md`"
    from posesyn_core.pipeline import RunConfig

    assert all(f"## `{stage}`" in page for stage in RunConfig.registry)
    assert "| `wan_animate.pipelines_per_device` | int | `1` |" in page  # nested options, flattened


@pytest.mark.parametrize(("doc", "command"), [a for a in ALL if a[1].startswith("posesyn ")], ids=lambda v: v)
def test_every_posesyn_command_and_option_exists(doc, command):
    from posesyn_core.cli import cli

    words = shlex.split(command)[1:]
    cmd: click.Command = cli
    while isinstance(cmd, click.Group) and words and words[0] in cmd.commands:
        cmd = cmd.commands[words.pop(0)]
    assert not isinstance(cmd, click.Group) or not words or words[0].startswith("-"), (
        f"{doc}: `{command}`: {words[0]!r} is not a subcommand of `{cmd.name}` ({sorted(cmd.commands)})"
    )
    options = {o for p in cmd.params for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
    options |= {"-h", "--help"}
    for word in words:
        if word.startswith("-") and word not in ("-",):
            assert word.split("=")[0] in options, f"{doc}: `{command}`: no option {word} (has {sorted(options)})"


@pytest.mark.parametrize(("doc", "command"), [a for a in ALL if a[1].startswith("make ")], ids=lambda v: v)
def test_every_make_target_exists(doc, command):
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M))
    for target in shlex.split(command)[1:]:
        if "=" not in target:
            assert target in targets, f"{doc}: `{command}`: no make target {target!r}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_linked_file_exists(doc):
    for link in _LINK.findall(doc.read_text()):
        if not link.startswith(("http", "mailto")):
            assert (doc.parent / link).exists(), f"{doc.relative_to(REPO)}: broken link {link}"


def test_results_page_block_is_replaced_and_the_rest_kept():
    from posesyn_core.errors import ConfigError
    from posesyn_core.report.render import RESULTS_BEGIN, RESULTS_END, results_page

    page = f"# Results\n\nby hand\n\n{RESULTS_BEGIN}\nold table\n{RESULTS_END}\n\n## Timing\nby hand too\n"
    out = results_page(page, "# PoseSyn run `demo`\n| a | b |\n## Results\n", "Generated at commit abc.")
    assert out.startswith("# Results\n\nby hand\n\n") and out.endswith(f"{RESULTS_END}\n\n## Timing\nby hand too\n")
    assert "old table" not in out and "## PoseSyn run `demo`\n| a | b |\n### Results\n" in out
    assert results_page(out, "# PoseSyn run `demo`\n| a | b |\n## Results\n", "Generated at commit abc.") == out
    with pytest.raises(ConfigError, match="markers"):
        results_page("# no markers\n", "x", "y")


def test_results_provenance_names_the_cpu_and_its_vector_instructions():
    # CPU kernels differ between AVX2 and AVX-512: the same code and seed give other figures on each
    import torch

    from posesyn_core.report.commands import provenance

    line = provenance(REPO / "examples" / "demo.yaml")
    assert f", {torch.backends.cpu.get_cpu_capability()}), " in line and " CPU cores (" in line


# Commands the docs show that run offline in a second or two, on the shipped files: run them as written.
_OFFLINE = re.compile(r"^posesyn (config (check|docs|schema)|stage list|submit .*--dry-run)( |$)")
RUNNABLE = sorted({c for _, c in ALL if _OFFLINE.match(c) and all((REPO / w).exists() for w in shlex.split(c)
                                                                  if w.endswith(".yaml"))})  # fmt: skip


def test_the_cluster_dry_runs_of_the_docs_are_runnable():
    assert any("submit examples/demo.yaml" in c for c in RUNNABLE)
    assert any("submit examples/real-mpii.yaml -f examples/values/real-mpii-gpu.yaml" in c for c in RUNNABLE)


@pytest.mark.parametrize("command", RUNNABLE)
def test_offline_docs_commands_run_as_written(command, monkeypatch):
    import yaml

    from tests.conftest import invoke_assert_code

    monkeypatch.chdir(REPO)
    out = invoke_assert_code(shlex.split(command)[1:]).output
    if "--dry-run" in command:
        docs = [d for d in yaml.safe_load_all(out) if d]
        assert sum(d["kind"] == "Job" for d in docs) >= 2  # stage Jobs + the sequencer
