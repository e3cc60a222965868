"""`docs/configuration.md`, generated from the run-config models: every key, its type, default and meaning.

The pydantic models are the one source of truth (the CLI validates with them, the chart's schema embeds them), so
the reference page is written from them too: `posesyn config docs > docs/configuration.md`, and a test fails when
the page is stale. Nested option models (e.g. `animate.wan_animate`) are flattened into dotted keys.
"""

from __future__ import annotations

import json
import re
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

HEADER = """# Configuration reference

Generated from the run-config models by `posesyn config docs > docs/configuration.md` (a test keeps it in sync);
do not edit by hand. A run is one YAML file: the top-level keys, then one section per stage, keyed by the stage
name. Unknown keys are errors; `posesyn config check RUN.yaml` prints a run with every default filled in.
"""


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The options model a field holds (also through `X | None`), or None for a plain value."""
    candidates = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    models = [a for a in candidates if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if len(models) == 1 else None


def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("NoneType", "None")
    if isinstance(annotation, type) and not typing.get_args(annotation):
        text = annotation.__name__
    text = re.sub(r"\b(?:[a-z_]+\.)+([A-Z]\w*)", r"\1", text)  # posesyn_core.config.Resources -> Resources
    text = re.sub(r"^Optional\[(.*)\]$", r"\1 | None", text)
    return text.replace("Literal[", "one of [").replace("|", "\\|")


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(see below)"
    return f"`{json.dumps(value, default=str)}`"


def _rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) of every key of `model`, nested models' keys after their own row."""
    rows, nested = [], []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        sub = _model_of(field.annotation)
        description = " ".join((field.description or "").split())
        if sub is not None and not field.is_required() and field.get_default(call_default_factory=True) is not None:
            nested.append((key, sub))
            rows.append((f"`{key}`", sub.__name__, "(see below)", description))
            continue
        rows.append((f"`{key}`", _type_name(field.annotation), _default(field), description))
    for key, sub in nested:
        rows += _rows(sub, key + ".")
    return rows


def _table(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| {k} | {t} | {d} | {m} |" for k, t, d, m in rows]
    return "\n".join(lines) + "\n"


def configuration_markdown(run_cls: type | None = None) -> str:
    """The whole reference page for `run_cls` (default: the RunConfig of the current stage registry)."""
    if run_cls is None:
        from posesyn_core.pipeline import RunConfig

        run_cls = RunConfig
    from posesyn_core.config import Resources
    from posesyn_core.pipeline import RunConfigBase

    parts = [HEADER, "\n## Top-level keys\n\n", _table(_rows(RunConfigBase)),
             "\n## `resources` (any stage)\n\nA stage's pod resources on Kubernetes (the chart's defaults per stage: "
             "`posesyn stage list`); the embedded runner only reports them.\n\n", _table(_rows(Resources))]  # fmt: skip
    for name, spec in run_cls.registry.items():
        parts.append(f"\n## `{name}`\n\n{' '.join(spec.description.split())}\n\n")
        parts.append(_table(_rows(spec.section)))
    return "".join(parts)
