"""The stage contract: a declaration (`StageSpec`) plus `run(ctx) -> None`, and `execute_stage`, the one function
both runners (embedded and Kubernetes) call to run a stage or one shard of it.

Layout of a stage's outputs under the run root:

    <stage>/...                  outputs (unsharded stages write here; sharded stages' `finalize` writes here)
    <stage>/_STARTED             fingerprint of the attempt in progress; a different one means stale outputs
    <stage>/_SUCCESS             manifest (JSON): fingerprint, input fingerprints, counts, versions, timing
    <stage>/rejected.jsonl       quarantined input samples with reasons
    <stage>/shards/<i>-of-<n>/   a sharded stage's per-shard outputs (+ `_STARTED`, `rejected.jsonl`)
    <stage>/_SUCCESS.<i>         shard i done (same manifest format)

Resume: a stage (or shard) whose marker holds the current fingerprint is skipped. The fingerprint hashes the
stage's config section (less keys that cannot change outputs: resources, shards, device, limits), the run
seed, the package version and the fingerprints of the upstream stages it reads. A stage killed midway keeps its
atomically written partial outputs; stage code may skip chunks that already exist, which is safe because
outputs of an attempt with another fingerprint are wiped before work starts.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from posesyn_core import __version__, failpoints
from posesyn_core.config import Resources, StageSection
from posesyn_core.errors import ConfigError, DataError
from posesyn_core.storage import Store, join, open_store

if TYPE_CHECKING:
    from posesyn_core.pipeline import RunConfig

SUCCESS = "_SUCCESS"
STARTED = "_STARTED"
REJECTED = "rejected.jsonl"
# Section keys that change how a stage runs, not what it writes.
_NON_SEMANTIC = {"resources", "shards", "device", "max_bad_fraction"}


@dataclass(frozen=True)
class StageSpec:
    """What the runners, the Helm chart and the docs need to know about a stage, without importing it."""

    name: str
    section: type[StageSection]
    run: str  # "module:function" taking a StageContext; imported only when the stage runs
    description: str
    inputs: tuple[str, ...] = ()  # upstream stages whose outputs it reads (when they are part of the run)
    outputs: tuple[str, ...] = ()  # what it writes under <stage>/, for docs and `posesyn status`
    resources: Resources = field(default_factory=Resources)
    gpu: bool = False  # runs on a CUDA image and requests GPUs by default on Kubernetes
    shardable: bool = False
    finalize: str | None = None  # "module:function" run once after all shards (sharded stages only)
    extra_image_packages: tuple[str, ...] = ()  # pip requirements its image adds to the base image

    @property
    def image(self) -> str:
        return f"posesyn-{self.name}"


def _load(target: str) -> Callable[[StageContext], None]:
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


class Progress:
    """Counts work items. In the embedded runner events go to a pipe the parent draws a progress bar from;
    elsewhere (a pod) a progress line is logged at most every 15 s."""

    def __init__(self, stage: str, total: int | None, unit: str, log: logging.Logger):
        self.stage, self.total, self.unit, self.done, self.log = stage, total, unit, 0, log
        self._last_log = 0.0
        fd = os.environ.get("POSESYN_PROGRESS_FD")
        self._pipe = os.fdopen(int(fd), "w", buffering=1, closefd=False) if fd else None
        self._emit(force=True)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._emit(force=self.total is not None and self.done >= self.total)

    def _emit(self, force: bool = False) -> None:
        event = {"stage": self.stage, "done": self.done, "total": self.total, "unit": self.unit}
        if self._pipe is not None:
            try:
                self._pipe.write(json.dumps(event) + "\n")
            except (BrokenPipeError, OSError):
                self._pipe = None
            return
        now = time.monotonic()
        if force or now - self._last_log > 15:
            self._last_log = now
            self.log.info("progress", extra={"fields": event})


@dataclass
class StageContext:
    """Everything a stage's `run` gets. Stages never look at which runner called them."""

    spec: StageSpec
    run: RunConfig
    config: Any  # the stage's section (a StageSection subclass)
    store: Store
    fingerprint: str
    shard: int = 0
    num_shards: int = 1
    finalizing: bool = False
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("posesyn"))
    counts: Counter = field(default_factory=Counter)
    rejects: list[dict] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form facts for the manifest (e.g. metrics)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def prefix(self) -> str:
        """Where this stage (or this shard of it) writes."""
        if self.spec.shardable and not self.finalizing:
            return join(self.name, "shards", f"{self.shard}-of-{self.num_shards}")
        return self.name

    def key(self, *parts: str) -> str:
        """An output key of this stage/shard: `ctx.key("scores.jsonl")`."""
        return join(self.prefix, *parts)

    def input_key(self, stage: str, *parts: str) -> str:
        return join(stage, *parts)

    def shard_keys(self, *parts: str) -> list[str]:
        """In `finalize`: the same output key in every shard, in shard order."""
        return [join(self.name, "shards", f"{i}-of-{self.num_shards}", *parts) for i in range(self.num_shards)]

    def shard_slice(self, n: int) -> range:
        """The contiguous part of `n` items this shard owns (the whole range when unsharded)."""
        lo = n * self.shard // self.num_shards
        hi = n * (self.shard + 1) // self.num_shards
        return range(lo, hi)

    @property
    def seed(self) -> int:
        """A seed for this stage derived from the run seed (independent of the shard)."""
        digest = hashlib.sha256(f"{self.run.seed}:{self.name}".encode()).digest()
        return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF

    def rng(self, *keys: int) -> np.random.Generator:
        """A generator for one unit of work (e.g. a chunk index), so results do not depend on which chunks
        ran before: a resumed run draws the same numbers as an uninterrupted one."""
        return np.random.default_rng([self.seed, *keys])

    @property
    def device(self) -> str:
        wanted = self.config.device or self.run.device
        if wanted != "auto":
            return wanted
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def progress(self, total: int | None, unit: str = "items") -> Progress:
        return Progress(self.name, total, unit, self.log)

    def reject(self, sample_id: str, reason: str, **details: Any) -> None:
        """Quarantine one bad input sample; counted against `max_bad_fraction` of `counts['samples_in']`."""
        self.rejects.append({"id": sample_id, "reason": reason, **details})
        self.log.warning("rejected sample", extra={"fields": {"id": sample_id, "reason": reason}})

    @property
    def max_bad_fraction(self) -> float:
        own = self.config.max_bad_fraction
        return self.run.max_bad_fraction if own is None else own


def section_hash(section: StageSection) -> str:
    data = section.model_dump(mode="json", exclude=_NON_SEMANTIC)
    for key in type(section).runtime_keys:  # "workers", or dotted into a nested options model: "render.workers"
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node[part]
        del node[leaf]
    for key in type(section).added_keys:
        if getattr(section, key) == type(section).model_fields[key].get_default(call_default_factory=True):
            del data[key]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def input_fingerprints(spec: StageSpec, run: RunConfig, store: Store) -> dict[str, str]:
    found = {}
    for upstream in spec.inputs:
        marker = join(upstream, SUCCESS)
        if store.exists(marker):
            found[upstream] = store.read_json(marker)["fingerprint"]
        elif upstream in run.stages:
            raise ConfigError(f"stage {spec.name!r} needs {upstream!r}, which has not completed (run it first)")
    return found


def fingerprint(spec: StageSpec, run: RunConfig, inputs: dict[str, str]) -> str:
    payload = {
        "stage": spec.name,
        "section": section_hash(run.section(spec.name)),
        "seed": run.seed,
        "version": __version__,
        "inputs": inputs,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def _versions() -> dict[str, str]:
    versions = {"posesyn": __version__, "python": platform.python_version()}
    for mod in ("torch", "numpy"):
        if mod in sys.modules:
            versions[mod] = getattr(sys.modules[mod], "__version__", "?")
    return versions


def read_marker(store: Store, key: str) -> dict | None:
    return store.read_json(key) if store.exists(key) else None


def _write_manifest(ctx: StageContext, key: str, inputs: dict[str, str], started: float,
                    earlier_seconds: float = 0.0) -> dict:
    manifest = {
        "stage": ctx.name,
        "fingerprint": ctx.fingerprint,
        "config_hash": section_hash(ctx.config),
        "inputs": inputs,
        "counts": dict(sorted(ctx.counts.items())),
        "rejected": len(ctx.rejects),
        "shard": None if ctx.finalizing or not ctx.spec.shardable else ctx.shard,
        "num_shards": ctx.num_shards,
        "versions": _versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(earlier_seconds + time.time() - started, 3),  # a sharded stage: shards + finalize
        "host": platform.node(),
        **({"extra": ctx.extra} if ctx.extra else {}),
    }
    ctx.store.write_json(key, manifest)
    return manifest


def _check_rejects(ctx: StageContext) -> None:
    if ctx.rejects:
        ctx.store.write_jsonl(ctx.key(REJECTED), ctx.rejects)
    seen = ctx.counts.get("samples_in", 0)
    if seen and len(ctx.rejects) / seen > ctx.max_bad_fraction:
        raise DataError(
            f"stage {ctx.name}: {len(ctx.rejects)} of {seen} input samples quarantined "
            f"({len(ctx.rejects) / seen:.1%} > max_bad_fraction {ctx.max_bad_fraction:.1%}); "
            f"reasons in {ctx.store.url_for(ctx.key(REJECTED))}"
        )


@dataclass
class StageResult:
    stage: str
    status: str  # "skipped" | "done" | "shard-done"
    manifest: dict | None


def execute_stage(
    run: RunConfig, name: str, shard: int | None = None, force: bool = False, store: Store | None = None
) -> StageResult:
    """Run stage `name` (or one shard of it) with resume semantics. Raises PosesynError subclasses on failure.

    `shard` None on a shardable stage runs every shard in turn, then finalize (embedded runner); an index runs
    only that shard, and the shard that completes the set runs finalize (Kubernetes Indexed Jobs).
    """
    spec = type(run).registry[name]
    store = store or open_store(run.root)
    failpoints.enter_stage(name)
    section = run.section(name)
    num_shards = section.shards
    if num_shards > 1 and not spec.shardable:
        raise ConfigError(f"{name}.shards: stage {name!r} cannot be sharded (set shards: 1)")
    inputs = input_fingerprints(spec, run, store)
    fp = fingerprint(spec, run, inputs)
    log = logging.getLogger(f"posesyn.{name}")
    done = read_marker(store, join(name, SUCCESS))
    if done and done.get("fingerprint") == fp and not force:
        log.info("up to date, skipping", extra={"fields": {"fingerprint": fp}})
        return StageResult(name, "skipped", done)

    def context(**kw: Any) -> StageContext:
        return StageContext(spec=spec, run=run, config=section, store=store, fingerprint=fp,
                            num_shards=num_shards, log=log, **kw)  # fmt: skip

    if not spec.shardable:
        ctx = context()
        _prepare(store, name, fp, force, keep=())
        started = time.time()
        log.info("starting", extra={"fields": {"fingerprint": fp, "device": section.device or run.device}})
        _load(spec.run)(ctx)
        _check_rejects(ctx)
        return StageResult(name, "done", _write_manifest(ctx, join(name, SUCCESS), inputs, started))

    shards = range(num_shards) if shard is None else [shard]
    for i in shards:
        if not 0 <= i < num_shards:
            raise ConfigError(f"shard index {i} out of range for {name}.shards={num_shards}")
        marker = join(name, f"{SUCCESS}.{i}")
        prev = read_marker(store, marker)
        if prev and prev.get("fingerprint") == fp and prev.get("num_shards") == num_shards and not force:
            log.info("shard up to date, skipping", extra={"fields": {"shard": i}})
            continue
        ctx = context(shard=i)
        store.delete(join(name, SUCCESS))
        _prepare(store, ctx.prefix, fp, force, keep=())
        started = time.time()
        log.info("starting shard", extra={"fields": {"shard": i, "of": num_shards, "fingerprint": fp}})
        _load(spec.run)(ctx)
        _check_rejects(ctx)
        _write_manifest(ctx, marker, inputs, started)

    # Whoever sees the last shard marker finalizes (idempotent: deterministic outputs, atomic writes).
    markers = [read_marker(store, join(name, f"{SUCCESS}.{i}")) for i in range(num_shards)]
    if not all(m and m.get("fingerprint") == fp and m.get("num_shards") == num_shards for m in markers):
        return StageResult(name, "shard-done", None)
    ctx = context(finalizing=True)
    for m in markers:
        ctx.counts.update(m["counts"])
    started = time.time()
    _prepare(store, name, fp, force=True, keep=("shards/", f"{SUCCESS}."))
    rejects = [r for key in ctx.shard_keys(REJECTED) if store.exists(key) for r in store.read_jsonl(key)]
    if spec.finalize:
        _load(spec.finalize)(ctx)
    ctx.rejects = rejects + ctx.rejects
    if ctx.rejects:
        store.write_jsonl(ctx.key(REJECTED), ctx.rejects)
    shard_seconds = sum(m["seconds"] for m in markers)
    return StageResult(name, "done", _write_manifest(ctx, join(name, SUCCESS), inputs, started, shard_seconds))


def _prepare(store: Store, prefix: str, fp: str, force: bool, keep: tuple[str, ...]) -> None:
    """Wipe outputs of an attempt with another fingerprint (stale), then mark this attempt as started."""
    started_key = join(prefix, STARTED)
    prev = store.read_text(started_key).strip() if store.exists(started_key) else None
    if force or (prev is not None and prev != fp) or keep:
        for key in list(store.list(prefix)):
            rel = key[len(prefix) + 1 :]
            if not any(rel.startswith(k) for k in keep):
                store.delete(key)
    store.write_text(started_key, fp + "\n")
