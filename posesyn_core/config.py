"""Run configuration: one YAML file validated by pydantic before any work starts.

All sections inherit `StrictModel` (`extra="forbid"`), so a typo in a key is an error, not a silently ignored
setting. Each stage has its section class next to its domain code (`posesyn_core/<domain>/config.py`, kept free
of heavy imports); `posesyn_core.pipeline` assembles them into `RunConfig` under the stage names.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from posesyn_core.errors import ConfigError

Device = Literal["auto", "cpu", "cuda"]


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")


class Resources(StrictModel):
    """Kubernetes-style requests for one pod of a stage (also what the embedded runner reports)."""

    cpu: str = Field("1", description="CPU request, e.g. '2' or '500m'.")
    memory: str = Field("4Gi", description="Memory request and limit, e.g. '8Gi'.")
    gpu: int = Field(0, ge=0, description="Number of nvidia.com/gpu to request.")

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, v: str) -> str:
        if not _QUANTITY.match(v):
            raise ValueError(f"{v!r} is not a Kubernetes quantity (e.g. '2', '500m', '8Gi')")
        return v


class StageSection(StrictModel):
    """Keys every stage section has. Stage-specific sections subclass this."""

    # Keys of a subclass that change how the stage runs but never what it writes (e.g. worker counts): they are
    # left out of the stage fingerprint, so changing them does not redo finished work. Dotted names reach into
    # nested option models ("render.workers").
    runtime_keys: ClassVar[frozenset[str]] = frozenset()
    # Keys added to a section after runs were made with it, whose default reproduces those runs' outputs byte for
    # byte: left out of the fingerprint while at their default, so finished runs stay valid across the upgrade.
    added_keys: ClassVar[frozenset[str]] = frozenset()

    resources: Resources | None = Field(None, description="Override the stage's default pod resources.")
    shards: int = Field(1, ge=1, description="Parallel shards (only for shardable stages).")
    device: Device | None = Field(None, description="Override the run's device for this stage.")
    max_bad_fraction: float | None = Field(
        None, ge=0, le=1, description="Override the run's limit on the fraction of quarantined input samples."
    )


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem: `file: key.path: reason`."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}".replace("\n", " ")) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data
