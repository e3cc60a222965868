"""One storage interface over a local folder (`file:///abs/path`) and S3 (`s3://bucket/prefix`).

Every stage reads and writes through a `Store` rooted at the run's root, with keys like `eem/scores.jsonl`.
Writes are atomic on both backends, so a reader (or a resumed run) never sees half an object:
- local: write to a hidden temp file in the same folder, fsync, `os.replace` (atomic on POSIX);
- S3: a single PUT is atomic; large objects go through a multipart upload that is either completed or aborted,
  and an upload that dies halfway is never completed, so no object appears.

S3 endpoint and credentials come from the standard AWS environment/config (`AWS_ENDPOINT_URL`,
`AWS_ACCESS_KEY_ID`, profiles, IRSA ...), never from the run YAML. Transient errors are retried by botocore's
`standard` retry mode with exponential backoff; permanent ones raise `StorageError` naming the URL.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import urlparse

import numpy as np

from posesyn_core.errors import ConfigError, StorageError

_TMP_MARK = ".tmp-"  # local temp files are `.<name>.tmp-<uuid>`; listing skips them


class NotFound(StorageError, FileNotFoundError):
    """The key does not exist."""


def check_key(key: str) -> str:
    """Reject keys that could escape the root or name nothing (`..`, absolute, empty parts)."""
    if not key or key.startswith("/") or "\\" in key:
        raise StorageError(f"invalid storage key {key!r}: must be a relative path with '/' separators")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts[:-1]) or parts[-1] in (".", ".."):
        raise StorageError(f"invalid storage key {key!r}: empty, '.' or '..' path component")
    return key


def join(*parts: str) -> str:
    """Join key parts with '/', ignoring empty parts."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


class Store(ABC):
    """Keys are relative to the store's root URL; the backend-specific methods are the abstract ones."""

    url: str

    # --- backend primitives -------------------------------------------------------------------------------
    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    @contextmanager
    def open_read(self, key: str) -> Iterator[IO[bytes]]:
        """Stream an object's bytes (large files are never held in memory whole)."""

    @abstractmethod
    @contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        """Stream bytes into an object that appears atomically when the block exits without error."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """All keys under `prefix` (recursive), sorted."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under `prefix`; returns how many."""

    @abstractmethod
    def size(self, key: str) -> int: ...

    # --- conveniences built on the primitives -------------------------------------------------------------
    def url_for(self, key: str) -> str:
        return self.url.rstrip("/") + "/" + check_key(key)

    def read_bytes(self, key: str) -> bytes:
        with self.open_read(key) as f:
            return f.read()

    def write_bytes(self, key: str, data: bytes) -> None:
        with self.open_write(key) as f:
            f.write(data)

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode("utf-8"))

    def read_json(self, key: str) -> Any:
        try:
            return json.loads(self.read_bytes(key))
        except json.JSONDecodeError as e:
            raise StorageError(f"{self.url_for(key)}: not valid JSON ({e})") from e

    def write_json(self, key: str, obj: Any) -> None:
        self.write_bytes(key, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))

    def read_jsonl(self, key: str) -> list[dict]:
        rows = []
        for lineno, line in enumerate(self.read_text(key).splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise StorageError(f"{self.url_for(key)} line {lineno}: not valid JSON ({e})") from e
        return rows

    def write_jsonl(self, key: str, rows: Iterable[dict]) -> None:
        with self.open_write(key) as f:
            for row in rows:
                f.write((json.dumps(row, sort_keys=True) + "\n").encode("utf-8"))

    def save_npz(self, key: str, **arrays: np.ndarray) -> None:
        """Uncompressed, deterministic bytes (np.savez writes no timestamps into the zip)."""
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        self.write_bytes(key, buf.getvalue())

    def load_npz(self, key: str) -> dict[str, np.ndarray]:
        with np.load(io.BytesIO(self.read_bytes(key)), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def download(self, key: str, path: str | os.PathLike) -> Path:
        """Copy an object to a local file (for libraries that want a path, e.g. onnxruntime)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.open_read(key) as src, open(path, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        return path

    def upload(self, path: str | os.PathLike, key: str) -> None:
        with open(path, "rb") as src, self.open_write(key) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


class LocalStore(Store):
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).absolute()
        self.url = self.root.as_uri()

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"{self.url_for(key)}: no such object") from None

    @contextmanager
    def open_read(self, key: str) -> Iterator[IO[bytes]]:
        try:
            f = open(self.path(key), "rb")
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(f"{self.url_for(key)}: no such object") from None
        with f:
            yield f

    @contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}{_TMP_MARK}{uuid.uuid4().hex}")
        try:
            with open(tmp, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self.root / prefix if prefix else self.root
        if base.is_file():
            yield prefix
            return
        keys = []
        for dirpath, _, files in os.walk(base):
            for name in files:
                if name.startswith(".") and _TMP_MARK in name:
                    continue
                keys.append(PurePosixPath(Path(dirpath, name).relative_to(self.root)).as_posix())
        yield from sorted(keys)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        keys = list(self.list(prefix))
        for k in keys:
            self.delete(k)
        target = self.root / prefix if prefix else None
        if target is not None and target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        return len(keys)


class S3Store(Store):
    """S3 or any S3-compatible server (MinIO, Ceph RGW ...), found through the usual AWS configuration."""

    MULTIPART_THRESHOLD = 8 * 1024 * 1024  # bigger objects go up in 8 MiB parts, completed or aborted whole

    def __init__(self, bucket: str, prefix: str = "", client: Any = None):
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.client = client or boto3.client(
            "s3", config=Config(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=10, read_timeout=60)
        )
        self._transfer = TransferConfig(
            multipart_threshold=self.MULTIPART_THRESHOLD, multipart_chunksize=self.MULTIPART_THRESHOLD
        )

    def _k(self, key: str) -> str:
        return join(self.prefix, check_key(key))

    def _fail(self, key: str, err: Exception) -> StorageError:
        code = getattr(err, "response", {}).get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NotFound"):
            return NotFound(f"{self.url_for(key)}: no such object")
        return StorageError(f"{self.url_for(key)}: {code or type(err).__name__}: {err}")

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._k(key))
            return True
        except ClientError as e:
            if isinstance(self._fail(key, e), NotFound):
                return False
            raise self._fail(key, e) from e

    def size(self, key: str) -> int:
        from botocore.exceptions import ClientError

        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=self._k(key))["ContentLength"])
        except ClientError as e:
            raise self._fail(key, e) from e

    @contextmanager
    def open_read(self, key: str) -> Iterator[IO[bytes]]:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._k(key))["Body"]
        except ClientError as e:
            raise self._fail(key, e) from e
        try:
            yield body
        finally:
            body.close()

    @contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        # Spool to a local temp file, then upload: a PUT (small) or a multipart upload that s3transfer aborts on
        # error. Until the upload completes nothing is visible under the key.
        from botocore.exceptions import BotoCoreError, ClientError

        with tempfile.SpooledTemporaryFile(max_size=self.MULTIPART_THRESHOLD) as spool:
            yield spool
            spool.seek(0)
            try:
                self.client.upload_fileobj(spool, self.bucket, self._k(key), Config=self._transfer)
            except (ClientError, BotoCoreError) as e:
                raise self._fail(key, e) from e

    def list(self, prefix: str = "") -> Iterator[str]:
        from botocore.exceptions import ClientError

        full = join(self.prefix, prefix)
        if prefix and not prefix.endswith("/") and not self.exists(prefix):
            full += "/"
        elif full and not full.endswith("/"):
            full += "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
            for page in pages:
                for obj in page.get("Contents", []):
                    yield obj["Key"][strip:]
        except ClientError as e:
            raise self._fail(prefix or ".", e) from e

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._k(key))

    def delete_prefix(self, prefix: str) -> int:
        keys = list(self.list(prefix))
        for i in range(0, len(keys), 1000):
            batch = [{"Key": self._k(k)} for k in keys[i : i + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return len(keys)


def open_store(url: str) -> Store:
    """`file:///abs/path`, a plain local path, or `s3://bucket/prefix`."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigError(f"storage root {url!r}: an s3:// URL needs a bucket (s3://bucket/prefix)")
        return S3Store(parsed.netloc, parsed.path)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"storage root {url!r}: file:// URLs must be absolute (file:///abs/path)")
        return LocalStore(parsed.path)
    if parsed.scheme == "":
        return LocalStore(url)
    raise ConfigError(f"storage root {url!r}: unsupported scheme {parsed.scheme!r} (use file:// or s3://)")
