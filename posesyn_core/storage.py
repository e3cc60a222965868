"""One storage interface over a local folder (`file:///abs/path`) and S3 (`s3://bucket/prefix`).

Every stage reads and writes through a `Store` rooted at the run's root, with keys like `eem/scores.jsonl`.
Writes are atomic on both backends, so a reader (or a resumed run) never sees half an object:
- local: write to a hidden temp file in the same folder, fsync, `os.replace` (atomic on POSIX);
- S3: a single PUT is atomic; large objects go through a multipart upload that is either completed or aborted,
  and an upload that dies halfway is never completed, so no object appears.

S3 endpoint and credentials come from the standard AWS environment/config (`AWS_ENDPOINT_URL`,
`AWS_ACCESS_KEY_ID`, profiles, IRSA ...), never from the run YAML. Transient errors are retried by botocore's
`standard` retry mode with exponential backoff, and a download cut off midway is fetched again; permanent ones
raise `StorageError` naming the URL (`StorageAccessError` when the root itself is unusable).

`Store.preflight()` proves a root usable (creatable, writable, bucket reachable, credentials valid) in a second or
two, before a run starts any work.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import urlparse

import numpy as np

from posesyn_core import failpoints
from posesyn_core.errors import ConfigError, StorageAccessError, StorageError, os_error_message

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

    @abstractmethod
    def preflight(self) -> None:
        """Fail fast, in one line, if the root cannot be used: write and delete a probe object. Raises
        StorageAccessError for what retrying cannot fix, StorageError for what it might (a full disk, a network)."""

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
        tmp = final.with_name(f".{final.name}{_TMP_MARK}{uuid.uuid4().hex}")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            failpoints.hit("store.before_commit")
            os.replace(tmp, final)
        except OSError as e:  # a full disk, a read-only mount: one line naming the object, not a traceback
            message = os_error_message(e, f"writing {self.url_for(key)}")
            if message is None:
                raise
            raise StorageError(message) from e
        finally:
            tmp.unlink(missing_ok=True)
        failpoints.hit("store.after_commit")

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

    def preflight(self) -> None:
        probe = self.root / f".preflight{_TMP_MARK}{uuid.uuid4().hex}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(probe, "wb") as f:
                f.write(b"\0" * 4096)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            reason = f"{e.strerror or e}" + (f" ({e.filename})" if e.filename and e.filename != str(probe) else "")
            error = StorageError if e.errno in (errno.ENOSPC, errno.EDQUOT) else StorageAccessError  # may clear up
            raise error(f"storage root {self.url}: cannot create or write it: {reason}") from None
        finally:
            probe.unlink(missing_ok=True)

    def sweep_temp_files(self, prefix: str = "") -> int:
        """Delete temp files left by writers that were killed before their rename; returns how many. Only safe
        while holding the root's lease (no other writer can have a temp file open)."""
        swept = 0
        for dirpath, _, files in os.walk(self.root / prefix if prefix else self.root):
            for name in files:
                if name.startswith(".") and _TMP_MARK in name:
                    Path(dirpath, name).unlink(missing_ok=True)
                    swept += 1
        return swept


class S3Store(Store):
    """S3 or any S3-compatible server (MinIO, Ceph RGW ...), found through the usual AWS configuration."""

    MULTIPART_THRESHOLD = 8 * 1024 * 1024  # bigger objects go up in 8 MiB parts, completed or aborted whole
    READ_ATTEMPTS = 5  # a download cut off midway is fetched again this many times in all

    def __init__(self, bucket: str, prefix: str = "", client: Any = None):
        from boto3.s3.transfer import TransferConfig

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.client = client or s3_client(max_attempts=8, connect_timeout=10, read_timeout=60)
        self._transfer = TransferConfig(
            multipart_threshold=self.MULTIPART_THRESHOLD, multipart_chunksize=self.MULTIPART_THRESHOLD
        )

    def _k(self, key: str) -> str:
        return join(self.prefix, check_key(key))

    def _fail(self, key: str, err: Exception) -> StorageError:
        """The one-line error for a failed request on `key`."""
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        where = self.url_for(key) if key != "." else self.url
        if isinstance(err, NoCredentialsError):
            return StorageAccessError(f"{where}: no AWS credentials found (set AWS_ACCESS_KEY_ID and "
                                      "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or give the pod a role)")  # fmt: skip
        if isinstance(err, EndpointConnectionError):
            return StorageError(f"{where}: cannot reach the S3 endpoint {err.kwargs.get('endpoint_url')} "
                                "(is it up? AWS_ENDPOINT_URL points there)")  # fmt: skip
        if not isinstance(err, ClientError):
            return StorageError(f"{where}: {type(err).__name__}: {err}")
        code = err.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NotFound"):
            return NotFound(f"{where}: no such object")
        if code == "NoSuchBucket":
            return StorageAccessError(f"{where}: bucket {self.bucket!r} does not exist")
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
            return StorageAccessError(f"{where}: access denied ({code}): check the credentials and the bucket policy")
        return StorageError(f"{where}: {code or type(err).__name__}: {err}")

    @contextmanager
    def _requests(self, key: str) -> Iterator[None]:
        """Translate what boto raises (after its retries) into a StorageError naming the object."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (ClientError, BotoCoreError) as e:
            raise self._fail(key, e) from e

    def exists(self, key: str) -> bool:
        try:
            with self._requests(key):
                self.client.head_object(Bucket=self.bucket, Key=self._k(key))
            return True
        except NotFound:
            return False

    def size(self, key: str) -> int:
        with self._requests(key):
            return int(self.client.head_object(Bucket=self.bucket, Key=self._k(key))["ContentLength"])

    @contextmanager
    def open_read(self, key: str) -> Iterator[IO[bytes]]:
        # Downloaded whole into a spool (memory, then a temp file past 8 MiB) before the caller reads, so that a
        # body cut off midway can be fetched again (botocore retries failed requests, not truncated bodies).
        with tempfile.SpooledTemporaryFile(max_size=self.MULTIPART_THRESHOLD) as spool:
            self._get_object(key, spool)
            spool.seek(0)
            yield spool

    def _get_object(self, key: str, sink: IO[bytes]) -> dict:
        """GET `key` into `sink` (rewritten from the start on each attempt); returns the response metadata."""
        from botocore.exceptions import IncompleteReadError, ReadTimeoutError, ResponseStreamingError
        from urllib3.exceptions import ProtocolError

        attempt = 1
        while True:
            sink.seek(0)
            sink.truncate()
            try:
                with self._requests(key):
                    response = self.client.get_object(Bucket=self.bucket, Key=self._k(key))
                    # Read through botocore's StreamingBody, which checks the length it got against the
                    # Content-Length; `with response["Body"]` would hand out the raw urllib3 stream, which
                    # does not, and a body cut off midway would read as a shorter, complete one.
                    body = response["Body"]
                    try:
                        shutil.copyfileobj(body, sink, 1 << 20)
                    finally:
                        body.close()
                return response
            except StorageError as e:
                cut_off = isinstance(e.__cause__, IncompleteReadError | ReadTimeoutError | ResponseStreamingError)
                if not cut_off or attempt == self.READ_ATTEMPTS:
                    raise
            except ProtocolError as e:
                if attempt == self.READ_ATTEMPTS:
                    raise StorageError(f"{self.url_for(key)}: download cut off {attempt} times: {e}") from e
            time.sleep(0.2 * attempt)
            attempt += 1

    @contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        # Spool to a local temp file, then upload: a PUT (small) or a multipart upload that s3transfer aborts on
        # error. Until the upload completes nothing is visible under the key.
        with tempfile.SpooledTemporaryFile(max_size=self.MULTIPART_THRESHOLD) as spool:
            yield spool
            spool.seek(0)
            failpoints.hit("store.before_commit")
            with self._requests(key):
                self.client.upload_fileobj(spool, self.bucket, self._k(key), Config=self._transfer)
        failpoints.hit("store.after_commit")

    def list(self, prefix: str = "") -> Iterator[str]:
        full = join(self.prefix, prefix)
        if prefix and not prefix.endswith("/") and not self.exists(prefix):
            full += "/"
        elif full and not full.endswith("/"):
            full += "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        with self._requests(prefix or "."):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
            for page in pages:
                for obj in page.get("Contents", []):
                    yield obj["Key"][strip:]

    def delete(self, key: str) -> None:
        with self._requests(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._k(key))

    def delete_prefix(self, prefix: str) -> int:
        keys = list(self.list(prefix))
        with self._requests(prefix or "."):
            for i in range(0, len(keys), 1000):
                batch = [{"Key": self._k(k)} for k in keys[i : i + 1000]]
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return len(keys)

    def preflight(self) -> None:
        # Its own client with short timeouts and few retries: an endpoint that is down fails in a second or two,
        # not after the eight patient attempts the stages' client makes.
        quick = S3Store(self.bucket, self.prefix, s3_client(max_attempts=3, connect_timeout=2, read_timeout=5))
        try:
            with quick._requests("."):
                quick.client.head_bucket(Bucket=self.bucket)
        except NotFound:  # HEAD has no body, so S3 answers a missing bucket with a bare 404
            raise StorageAccessError(f"{self.url}: bucket {self.bucket!r} does not exist") from None
        probe = f".preflight-{uuid.uuid4().hex}"
        quick.write_bytes(probe, b"\0")
        quick.delete(probe)

    # --- conditional requests (the run-root lease) ----------------------------------------------------------
    def create_if_absent(self, key: str, data: bytes) -> str | None:
        """PUT with If-None-Match: *; returns the new ETag, or None when the key already exists."""
        return self._conditional_put(key, data, IfNoneMatch="*")

    def replace_if_match(self, key: str, data: bytes, etag: str) -> str | None:
        """PUT with If-Match; returns the new ETag, or None when the object changed or is gone."""
        return self._conditional_put(key, data, IfMatch=etag)

    def _conditional_put(self, key: str, data: bytes, **condition: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            with self._requests(key):
                return self.client.put_object(Bucket=self.bucket, Key=self._k(key), Body=data, **condition)["ETag"]
        except NotFound:
            return None  # If-Match on a deleted object
        except StorageError as e:
            if isinstance(e.__cause__, ClientError) and _precondition_failed(e.__cause__):
                return None
            raise

    def read_with_etag(self, key: str) -> tuple[bytes, str, float] | None:
        """(bytes, ETag, age in seconds) or None when absent. The age is measured on the server's clock (its Date
        header minus the object's Last-Modified), so clocks of the hosts that share the root do not matter."""
        from email.utils import parsedate_to_datetime

        buffer = io.BytesIO()
        try:
            response = self._get_object(key, buffer)
        except NotFound:
            return None
        date = response["ResponseMetadata"]["HTTPHeaders"].get("date")
        server_now = parsedate_to_datetime(date) if date else datetime.now(UTC)
        if server_now.tzinfo is None:  # an HTTP date is always GMT
            server_now = server_now.replace(tzinfo=UTC)
        return buffer.getvalue(), response["ETag"], (server_now - response["LastModified"]).total_seconds()

    def delete_if_match(self, key: str, etag: str) -> bool:
        """DELETE with If-Match; False when the object changed (or is already gone)."""
        from botocore.exceptions import ClientError

        try:
            with self._requests(key):
                self.client.delete_object(Bucket=self.bucket, Key=self._k(key), IfMatch=etag)
            return True
        except NotFound:
            return False
        except StorageError as e:
            if isinstance(e.__cause__, ClientError) and _precondition_failed(e.__cause__):
                return False
            raise

    def abort_incomplete_uploads(self) -> int:
        """Abort multipart uploads under the prefix that a killed writer left open (they hold storage, invisible);
        returns how many. Only safe while holding the root's lease."""
        aborted = 0
        with self._requests("."):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=join(self.prefix, "") + ("/" if self.prefix else ""))
            for page in pages:
                for upload in page.get("Uploads", []):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                       UploadId=upload["UploadId"])  # fmt: skip
                    aborted += 1
        return aborted


def _precondition_failed(err: Exception) -> bool:
    """412 (the condition did not hold) or 409 (a concurrent conditional write won the race)."""
    code = err.response.get("Error", {}).get("Code", "")
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412)


def s3_client(max_attempts: int, connect_timeout: float, read_timeout: float) -> Any:
    """A boto3 S3 client from the standard AWS configuration, with botocore's `standard` retry mode."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": max_attempts}, connect_timeout=connect_timeout,
                    read_timeout=read_timeout)  # fmt: skip
    return boto3.client("s3", config=config)


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
