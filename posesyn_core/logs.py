"""Structured logging: readable lines on a terminal, one JSON object per line otherwise (pods, CI, pipes).

Extra fields passed as `log.info("msg", extra={"fields": {...}})` land as keys of the JSON object.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        obj = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        obj.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {}) or {}
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {record.levelname[0]} {record.name}: "
        line += record.getMessage() + (f"  {extra}" if extra else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at emit time (not at setup), so a replaced or closed stream (click's test
    runner, a re-exec'd pod) never leaves the root logger writing into a dead file."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # noqa: ANN001
        pass


def setup_logging(level: str | int = "INFO", json_format: bool | None = None) -> None:
    """Configure the root logger once per process. `json_format=None`: JSON unless stderr is a TTY.

    `POSESYN_LOG_FORMAT=json|text` forces a format (the embedded runner sets it for its children).
    """
    forced = os.environ.get("POSESYN_LOG_FORMAT")
    if json_format is None:
        json_format = forced == "json" if forced else not sys.stderr.isatty()
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if json_format else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3", "matplotlib", "PIL", "trimesh", "OpenGL", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
