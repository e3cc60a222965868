"""The `posesyn` command line.

Exit codes (posesyn_core.errors): 0 success, 1 failure (a stage failed; maybe transient), 2 usage/config error,
3 too much bad input data. User errors print one line on stderr, no traceback (`-v` shows it).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from posesyn_core import __version__
from posesyn_core.errors import EXIT_FAIL, EXIT_OK, as_user_error

console = Console(stderr=True)

EPILOG = """\b
Examples:
  posesyn run examples/demo.yaml              run the whole pipeline here
  posesyn run run.yaml --from eem --force     re-run from a stage on
  posesyn status run.yaml                     which stages are done
  posesyn config schema > run.schema.json     the run-config JSON schema
"""


class PosesynGroup(click.Group):
    """Turns expected errors (PosesynError, and a full disk or a dead endpoint met inside a library) into one
    stderr line and its exit code (traceback only with -v)."""

    def invoke(self, ctx: click.Context):  # noqa: ANN201
        try:
            return super().invoke(ctx)
        except Exception as e:
            error = as_user_error(e)
            if error is None:
                raise
            if ctx.find_root().params.get("verbose"):
                console.print_exception()
            click.echo(f"error: {error}", err=True)
            sys.exit(error.exit_code)


def run_config_argument(f):  # noqa: ANN001, ANN201
    """Shared positional argument: the run YAML."""
    return click.argument("run_yaml", type=click.Path(exists=True, dir_okay=False, path_type=Path))(f)


def load(run_yaml: Path):  # noqa: ANN201
    from posesyn_core.pipeline import load_run_config

    return load_run_config(run_yaml)


def lease_options(f):  # noqa: ANN001, ANN201
    """--wait / --force-unlock: what to do when another run holds the root (see posesyn_core.lease)."""
    f = click.option("--force-unlock", is_flag=True,
                     help="Take over the root's lease if its holder stopped renewing it (dead); never a live one.")(f)
    return click.option("--wait", is_flag=True,
                        help="If another run holds the root, wait until it releases it (or its lease expires).")(f)


@click.group(cls=PosesynGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(__version__, prog_name="posesyn")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks and debug logs.")
def cli(verbose: bool) -> None:
    """PoseSyn: synthesize 3D human-pose training data where your pose estimator fails.

    Runs the pipeline (world -> tpe-train -> motion-train -> eem -> caption -> msm -> retarget -> animate ->
    filter -> finetune -> evaluate) embedded on this machine, or as Kubernetes Jobs.
    """
    from posesyn_core.logs import setup_logging

    setup_logging("DEBUG" if verbose else "INFO")


@cli.command("run")
@run_config_argument
@click.option("--from", "start", metavar="STAGE", help="Start at this stage (earlier ones must be done).")
@click.option("--only", metavar="STAGE", help="Run only this stage.")
@click.option("--force", is_flag=True, help="Re-run the selected stages even if their outputs are up to date.")
@lease_options
def run_cmd(run_yaml: Path, start: str | None, only: str | None, force: bool, wait: bool, force_unlock: bool) -> None:
    """Run a synthesis run's stages in order on this machine.

    Each stage runs in its own subprocess; completed stages whose config and inputs did not change are skipped,
    so re-running after a failure or a kill resumes where it stopped. The run holds its root while it writes: a
    second run of the same root is refused (exit 2) and names the first.

    \b
    Example:
      posesyn run examples/demo.yaml --from msm
    """
    from posesyn_core.lease import holding
    from posesyn_core.runner import run_pipeline, select_stages
    from posesyn_core.storage import open_store

    run = load(run_yaml)
    stages = select_stages(run, start, only)
    with holding(open_store(run.root), wait=wait, force_unlock=force_unlock) as lease:
        results = run_pipeline(run_yaml.resolve(), run, stages, lease, force=force, console=console)
    codes = [r.exit_code for r in results if r.exit_code != EXIT_OK]
    sys.exit(codes[0] if codes else EXIT_OK)


@cli.command("status")
@run_config_argument
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status_cmd(run_yaml: Path, as_json: bool) -> None:
    """Show which stages of a run are done, stale (config or inputs changed), partial or pending.

    \b
    Example:
      posesyn status examples/demo.yaml
    """
    from posesyn_core.runner import stage_states
    from posesyn_core.storage import open_store

    run = load(run_yaml)
    rows = stage_states(run, open_store(run.root))
    if as_json:
        click.echo(json.dumps([{"stage": r["stage"], "state": r["state"]} for r in rows], indent=2))
        return
    table = Table(title=f"run {run.name} at {run.root}")
    for col in ("stage", "state", "seconds", "counts"):
        table.add_column(col)
    colours = {"done": "green", "stale": "yellow", "partial": "magenta", "pending": "white"}
    for r in rows:
        m = r["manifest"] or {}
        counts = ", ".join(f"{k}={v}" for k, v in m.get("counts", {}).items())
        table.add_row(r["stage"], f"[{colours[r['state']]}]{r['state']}[/]", str(m.get("seconds", "")), counts[:80])
    Console().print(table)


@cli.group("stage")
def stage_group() -> None:
    """Run or inspect single stages (what each Kubernetes Job runs)."""


@stage_group.command("run")
@click.argument("name")
@run_config_argument
@click.option("--shard", type=int, default=None, help="Run only this shard (default: all shards, then finalize).")
@click.option("--force", is_flag=True, help="Re-run even if up to date.")
@lease_options
def stage_run_cmd(name: str, run_yaml: Path, shard: int | None, force: bool, wait: bool, force_unlock: bool) -> None:
    """Run one stage (or one shard of it) of a run, with resume semantics.

    It holds the run root's lease while it runs, unless `posesyn run` started it under its own.

    \b
    Example:
      posesyn stage run eem run.yaml --shard 3
    """
    from posesyn_core.errors import ConfigError
    from posesyn_core.lease import holding
    from posesyn_core.stages import execute_stage
    from posesyn_core.storage import open_store

    die_with_parent()
    run = load(run_yaml)
    if name not in (run.stages or []):
        raise ConfigError(f"{name!r} is not a stage of this run; its stages are {run.stages}")
    store = open_store(run.root)
    with holding(store, wait=wait, force_unlock=force_unlock):
        result = execute_stage(run, name, shard=shard, force=force, store=store)
    fd = os.environ.get("POSESYN_PROGRESS_FD")
    if fd:
        with os.fdopen(int(fd), "w", closefd=False) as pipe:
            pipe.write(json.dumps({"result": result.status}) + "\n")


def die_with_parent() -> None:
    """In a stage subprocess of `posesyn run`: get SIGKILLed when the runner dies (Linux), so a killed run leaves
    no orphan writing its root beside the next run."""
    parent = os.environ.get("POSESYN_PARENT_PID")
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != int(parent):  # the runner died before the call above: nobody is waiting for us
        sys.exit(EXIT_FAIL)


@stage_group.command("list")
def stage_list_cmd() -> None:
    """List the registered stages in pipeline order, with their inputs and default resources."""
    from posesyn_core.pipeline import STAGES

    table = Table()
    for col in ("stage", "inputs", "gpu", "shardable", "cpu", "memory", "description"):
        table.add_column(col)
    for s in STAGES.values():
        table.add_row(s.name, ",".join(s.inputs), "yes" if s.gpu else "", "yes" if s.shardable else "",
                      s.resources.cpu, s.resources.memory, s.description)  # fmt: skip
    Console().print(table)


@cli.group("config")
def config_group() -> None:
    """Run-config schema and validation."""


@config_group.command("schema")
def config_schema_cmd() -> None:
    """Print the JSON schema of run configs (the Helm chart's values schema embeds it).

    \b
    Example:
      posesyn config schema > run.schema.json
    """
    from posesyn_core.pipeline import RunConfig

    click.echo(json.dumps(RunConfig.model_json_schema(by_alias=True), indent=2))


@config_group.command("docs")
def config_docs_cmd() -> None:
    """Print the configuration reference (markdown): every key of every section, its type, default and meaning.

    \b
    Example:
      posesyn config docs > docs/configuration.md
    """
    from posesyn_core.config_docs import configuration_markdown

    click.echo(configuration_markdown(), nl=False)


@config_group.command("check")
@run_config_argument
def config_check_cmd(run_yaml: Path) -> None:
    """Validate a run config and print it with every default filled in.

    \b
    Example:
      posesyn config check examples/demo.yaml
    """
    from posesyn_core.pipeline import dump_run_config

    click.echo(dump_run_config(load(run_yaml)), nl=False)


@cli.group("experiment")
def experiment_group() -> None:
    """Baselines, ablations and sweeps that reuse a run's completed stages."""


def _run_variants(run_yaml: Path, variants: list, force: bool) -> None:
    from posesyn_core.experiment import load_variant, prepare_variant
    from posesyn_core.lease import holding
    from posesyn_core.runner import run_pipeline
    from posesyn_core.storage import open_store

    failed = []
    for variant in variants:
        path, run = load_variant(run_yaml, variant)
        with holding(open_store(run.root)) as lease:
            shared = prepare_variant(load(run_yaml), run)
            todo = [s for s in run.stages or [] if s not in shared]
            console.rule(f"variant {variant.name}: {variant.description}")
            console.print(f"reusing {', '.join(shared) or 'nothing'}; running {', '.join(todo) or 'nothing'}")
            results = run_pipeline(path, run, todo, lease, force=force, console=console)
        failed += [r for r in results if r.exit_code != EXIT_OK]
    if failed:
        sys.exit(failed[0].exit_code)


@experiment_group.command("ablations")
@run_config_argument
@click.option("--only", "only", default=None, metavar="A,B", help="Comma-separated subset of the variants.")
@click.option("--force", is_flag=True, help="Re-run the variants' own stages even if up to date.")
def ablations_cmd(run_yaml: Path, only: str | None, force: bool) -> None:
    """Run the paper's comparisons next to a completed run: real-only fine-tuning, random selection instead of
    EEM, MSM without MR_init, and a tau sweep (40/80/120/160/200 mm).

    Each variant lives under <root>/experiments/<variant>/ and reuses every stage of the run its overrides
    do not reach. `posesyn report` picks the results up.

    \b
    Example:
      posesyn experiment ablations examples/demo.yaml --only real-only,random
    """
    from posesyn_core.errors import ConfigError
    from posesyn_core.experiment import ABLATIONS

    variants = list(ABLATIONS)
    if only:
        wanted = [w.strip() for w in only.split(",") if w.strip()]
        unknown = sorted(set(wanted) - {v.name for v in variants})
        if unknown:
            raise ConfigError(f"--only: unknown variant(s) {unknown}; known: {[v.name for v in variants]}")
        variants = [v for v in variants if v.name in wanted]
    _run_variants(run_yaml, variants, force)


@experiment_group.command("seeds")
@run_config_argument
@click.option("--seeds", "seed_list", default="0,1,2", show_default=True, metavar="A,B",
              help="Comma-separated seeds; the run's own seed is the run itself.")  # fmt: skip
@click.option("--candidate", default=None, metavar="NAME",
              help="Also run this variant of every seed's run (its keys from --set): a method change measured "
              "against (c) and (d) over the seeds.")  # fmt: skip
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="The candidate's config overrides (repeatable); the value is YAML.")  # fmt: skip
@click.option("--force", is_flag=True, help="Re-run every seed's stages even if up to date.")
def seeds_cmd(run_yaml: Path, seed_list: str, candidate: str | None, overrides: tuple[str, ...], force: bool) -> None:
    """Run the whole pipeline and its baselines (b) real-only and (d) random once per seed, then compare (a)-(d)
    over the seeds: mean and spread, and paired-bootstrap 95% intervals over test samples for (c) vs (d) and
    (c) vs (b).

    The run's own seed is the run itself; seed k runs under <root>/experiments/seed-k/ with a world, models and
    synthesis of its own. Finished seeds and stages are reused, so a re-run resumes. The table is printed,
    written to <root>/report/seeds.md and .json, and `posesyn report` shows it.

    \b
    Examples:
      posesyn experiment seeds examples/demo.yaml --seeds 0,1,2
      posesyn experiment seeds examples/demo.yaml --candidate everyday-33 --set eem.everyday_share=0.33
    """
    from posesyn_core.errors import ConfigError
    from posesyn_core.experiment import ABLATIONS, Variant, load_variant, parse_override, seed_variant
    from posesyn_core.lease import holding
    from posesyn_core.report.build import REPORT
    from posesyn_core.report.seeds import SEEDS_INDEX, over_seeds, seeds_markdown
    from posesyn_core.runner import run_pipeline, select_stages
    from posesyn_core.storage import join, open_store

    try:
        seeds = list(dict.fromkeys(int(s) for s in seed_list.split(",") if s.strip()))
    except ValueError:
        raise ConfigError(f"--seeds {seed_list!r}: expected comma-separated non-negative integers") from None
    if not seeds or min(seeds) < 0:
        raise ConfigError(f"--seeds {seed_list!r}: expected comma-separated non-negative integers")
    if bool(candidate) != bool(overrides):
        raise ConfigError("--candidate NAME and --set KEY=VALUE go together: the candidate is the run with those keys")
    base = load(run_yaml)
    baselines = [v for v in ABLATIONS if v.name in ("real-only", "random")]
    store = open_store(base.root)
    index = store.read_json(SEEDS_INDEX) if store.exists(SEEDS_INDEX) else {}
    candidates = index.get("candidates", {})  # earlier calls' candidates stay in the table
    if candidate:
        if candidate in {v.name for v in ABLATIONS} or candidate.startswith(("seed-", "round-")):
            raise ConfigError(f"--candidate {candidate!r}: that name is taken by a built-in variant")
        candidates[candidate] = dict(parse_override(o) for o in overrides)
    with holding(store) as lease:  # the run's root, for its own seed and the table; each variant holds its own
        for seed in seeds:
            console.rule(f"seed {seed}")
            if seed == base.seed:
                seed_yaml = run_yaml.resolve()
                results = run_pipeline(seed_yaml, base, select_stages(base, None, None), lease, force=force,
                                       console=console)  # fmt: skip
                failed = [r.exit_code for r in results if r.exit_code != EXIT_OK]
                if failed:
                    sys.exit(failed[0])
            else:
                _run_variants(run_yaml, [seed_variant(seed)], force)
                seed_yaml = load_variant(run_yaml, seed_variant(seed))[0]
            _run_variants(seed_yaml, baselines, force)
            if candidate:
                _run_variants(seed_yaml, [Variant(candidate, candidates[candidate], ", ".join(overrides))], force)
        store.write_json(SEEDS_INDEX, {"seeds": seeds, "candidates": candidates})
        result = over_seeds(base, seeds, list(candidates))
        table = seeds_markdown(result)
        store.write_json(join(REPORT, "seeds.json"), result)
        store.write_text(join(REPORT, "seeds.md"), table)
    click.echo(table, nl=False)  # the result, on stdout; progress went to stderr


@experiment_group.command("loop")
@run_config_argument
@click.option("--rounds", type=click.IntRange(min=1), default=None, help="Rounds (default: the config's loop.rounds).")
@click.option("--force", is_flag=True, help="Re-run every round's stages even if up to date.")
def loop_cmd(run_yaml: Path, rounds: int | None, force: bool) -> None:
    """Run PoseSyn in rounds: each round's fine-tuned TPE is the next round's TPE for EEM (the hard set is mined
    again), the filter and fine-tuning. Stops early when a round lowers the watched error by less than
    loop.min_gain.

    The run itself is round 1; round k runs under <root>/experiments/round-k/ and shares the world and the motion
    model. Finished rounds are reused, a killed round resumes. The per-round table is printed, written to
    <root>/report/loop.md, .json and .png, and `posesyn report` shows it.

    \b
    Example:
      posesyn experiment loop examples/demo.yaml --rounds 3
    """
    from posesyn_core.loop.rounds import loop_markdown, run_rounds

    base = load(run_yaml)
    result, code = run_rounds(run_yaml, base, rounds or base.loop.rounds, force, console)
    if code != EXIT_OK:
        sys.exit(code)
    click.echo(loop_markdown(result), nl=False)


@experiment_group.command("keypoints2d")
@run_config_argument
@click.option("--force", is_flag=True, help="Re-run the variants' own stages even if up to date.")
def keypoints2d_cmd(run_yaml: Path, force: bool) -> None:
    """EEM without 2D ground truth, next to a completed run: train a 2D keypoint estimator that never sees the 2D
    dataset's labels (the TPE on lab3d only, variant kp2d-lab3d), run the pipeline with eem.keypoints2d=estimated
    on its keypoints (variant kp2d-estimated), and compare with the run's GT-2D EEM at the same budget: keypoint
    error, hard-set overlap and true 3D error, fine-tuned results.

    The comparison is printed, written to <root>/report/keypoints2d.md and .json, and `posesyn report` shows it.

    \b
    Example:
      posesyn experiment keypoints2d examples/demo.yaml
    """
    from posesyn_core.eem.keypoints2d import KEYPOINT_ESTIMATOR, compare, estimated_variant, keypoints2d_markdown

    base = load(run_yaml)
    _run_variants(run_yaml, [KEYPOINT_ESTIMATOR, estimated_variant(base)], force)
    click.echo(keypoints2d_markdown(compare(base)), nl=False)


@experiment_group.command("variant")
@run_config_argument
@click.argument("name")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE", required=True,
              help="Override a config key (repeatable); the value is YAML.")
@click.option("--force", is_flag=True, help="Re-run the variant's own stages even if up to date.")
def variant_cmd(run_yaml: Path, name: str, overrides: tuple[str, ...], force: bool) -> None:
    """Run one named variant of a run with some keys overridden, reusing the unchanged stages.

    \b
    Example:
      posesyn experiment variant run.yaml k-c-100 --set eem.num_challenging=100
    """
    from posesyn_core.experiment import Variant, parse_override

    parsed = dict(parse_override(o) for o in overrides)
    _run_variants(run_yaml, [Variant(name, parsed, ", ".join(overrides))], force)


def _register_domain_commands() -> None:
    """Command groups that live next to their domain code."""
    from posesyn_core.data.commands import data_group
    from posesyn_core.export.commands import export_cmd
    from posesyn_core.launch.commands import LAUNCH_COMMANDS
    from posesyn_core.report.commands import report_cmd
    from posesyn_core.tpe.commands import tpe
    from posesyn_core.world.commands import world

    for command in (data_group, world, tpe, report_cmd, export_cmd, *LAUNCH_COMMANDS):
        cli.add_command(command)


_register_domain_commands()


def main() -> None:
    try:
        cli.main(prog_name="posesyn", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_FAIL)


if __name__ == "__main__":
    main()
