"""One writer per run root: a run holds a lease on its root while it writes, and a second run of the root is refused.

Two runs writing one root side by side would each wipe what it takes for the other's stale outputs and
interleave their files. So every writer takes the lease first:
- `posesyn run` and `posesyn experiment ...` hold it for the whole run; their stage subprocesses inherit it
  (`POSESYN_LEASE_TOKEN`) instead of taking it again;
- `posesyn stage run` alone takes it for the stage;
- on Kubernetes the sequencer holds it for the release (owner `release:<namespace>/<name>`, so a restarted
  sequencer pod takes its own release's lease back at once), and its stage pods write under it.

Backends:
- local root: `fcntl.flock` on `<root>/_LEASE`, which holds the holder's description. The kernel drops the lock
  when the holder dies, however it dies, so a killed run never blocks the next one. The file is never replaced or
  deleted (a new inode would be a second, independent lock), only rewritten in place.
- S3 root: the object `<prefix>/_LEASE`, created with a conditional PUT (`If-None-Match: *`), renewed every
  ttl/4 with `If-Match` on its ETag and deleted with `If-Match` when released. A holder that stops renewing
  (killed, cut off) leaves a lease that expires `ttl` seconds after its last renewal, measured on the server's
  clock; taking it over is a conditional PUT too, so of two runs racing for it exactly one wins.

A run that finds the root held exits 2 naming the holder. `--wait` waits until the lease is released or
expires; `--force-unlock` takes over an expired lease at once (a dead holder's), never a live one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import platform
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from posesyn_core.errors import EXIT_USAGE, PosesynError, StorageError, os_error_message
from posesyn_core.storage import LocalStore, S3Store, Store

log = logging.getLogger("posesyn.lease")

LEASE_KEY = "_LEASE"
TOKEN_ENV = "POSESYN_LEASE_TOKEN"  # set for the stage subprocesses of a run that holds the lease
DEFAULT_TTL_S = 60.0
POLL_S = 2.0


class LeaseHeld(PosesynError):
    """Another run holds the root. Not retried: the user decides (wait, or take over a dead holder's lease)."""

    exit_code = EXIT_USAGE


class LeaseLost(PosesynError):
    """This run's lease was taken over (it could not renew it for a whole ttl): it must stop writing."""


@dataclass(frozen=True)
class Holder:
    """Who holds a root: shown to whoever is refused, and compared to decide who may take a lease back."""

    owner: str  # "process:<host>:<pid>" or "release:<namespace>/<name>": the same owner may always reclaim
    token: str  # this acquisition; a retried request that finds its own token knows it already succeeded
    host: str
    pid: int
    command: str
    acquired: str
    ttl_s: float

    @classmethod
    def this_process(cls, owner: str | None, ttl_s: float) -> Holder:
        host = platform.node()
        prog = os.path.basename(sys.argv[0])
        prog = "posesyn" if prog == "posesyn" or sys.argv[0].endswith(os.path.join("posesyn_core", "cli.py")) else prog
        return cls(owner=owner or f"process:{host}:{os.getpid()}", token=uuid.uuid4().hex, host=host,
                   pid=os.getpid(), command=" ".join([prog, *sys.argv[1:]])[:200],
                   acquired=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), ttl_s=ttl_s)  # fmt: skip

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        try:
            return cls(**{k: v for k, v in json.loads(data).items() if k in cls.__dataclass_fields__})
        except (ValueError, TypeError):
            return None  # empty (released) or being rewritten

    def to_bytes(self, renewals: int = 0) -> bytes:
        renewed = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return (json.dumps({**asdict(self), "renewed": renewed, "renewals": renewals}, sort_keys=True) + "\n").encode()

    def describe(self) -> str:
        return f"{self.command!r} ({self.owner}, pid {self.pid} on {self.host}, since {self.acquired})"

    def is_dead_local_process(self) -> bool:
        """True when the holder was a process on this host that no longer exists (its lease is provably dead)."""
        if not self.owner.startswith("process:") or self.host != platform.node() or self.pid == os.getpid():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


class Lease:
    """A held lease. `keep()` renews it in a background thread while the block runs."""

    renews = True  # False where the lease cannot expire while its holder lives (a kernel lock)
    fd: int | None = None  # a local lease's locked file, which stage subprocesses inherit

    def __init__(self, store: Store, holder: Holder):
        self.store, self.holder = store, holder
        self.lost = threading.Event()  # set when a renewal finds the lease taken over: stop writing

    @property
    def token(self) -> str:
        return self.holder.token

    def renew(self) -> None:
        """Extend the lease; raises LeaseLost when someone else holds it now."""

    def release(self) -> None:
        """Give the lease up (idempotent)."""

    @contextmanager
    def keep(self) -> Iterator[Lease]:
        """Hold (and renew) the lease for the block; released after it, however it ends. Watch `lost`."""
        stop = threading.Event()

        def renew_forever() -> None:
            while not stop.wait(self.holder.ttl_s / 4):
                try:
                    self.renew()
                except LeaseLost as e:
                    log.error(str(e))
                    self.lost.set()
                    return
                except PosesynError as e:  # a storage hiccup: try again next time, the lease is still ours
                    log.warning("could not renew the lease; retrying", extra={"fields": {"error": str(e)}})

        thread = threading.Thread(target=renew_forever, name="lease-renewal", daemon=True)
        if self.renews:
            thread.start()
        try:
            yield self
        finally:
            stop.set()
            if thread.is_alive():
                thread.join(timeout=30)
            if not self.lost.is_set():
                self.release()


class LocalLease(Lease):
    renews = False

    def __init__(self, store: LocalStore, holder: Holder, fd: int):
        super().__init__(store, holder)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # drops the flock
            self.fd = None


class S3Lease(Lease):
    store: S3Store

    def __init__(self, store: S3Store, holder: Holder, etag: str):
        super().__init__(store, holder)
        self.etag = etag
        self.renewals = 0

    def renew(self) -> None:
        self.renewals += 1
        etag = self.store.replace_if_match(LEASE_KEY, self.holder.to_bytes(self.renewals), self.etag)
        if etag is None:
            etag = self._still_ours()
        self.etag = etag

    def _still_ours(self) -> str:
        """After a failed conditional PUT: our own retried request may have succeeded first (same token)."""
        current = self.store.read_with_etag(LEASE_KEY)
        holder = Holder.parse(current[0]) if current else None
        if holder is None or holder.token != self.token:
            raise LeaseLost(f"lost the lease on {self.store.url} to "
                            f"{holder.describe() if holder else 'nobody (it was deleted)'}: stopping")  # fmt: skip
        return current[1]

    def release(self) -> None:
        if self.etag and not self.store.delete_if_match(LEASE_KEY, self.etag):
            current = self.store.read_with_etag(LEASE_KEY)
            holder = Holder.parse(current[0]) if current else None
            if holder is not None and holder.token == self.token:
                self.store.delete_if_match(LEASE_KEY, current[1])
        self.etag = ""


def acquire(store: Store, *, owner: str | None = None, wait: bool = False, force_unlock: bool = False,
            ttl_s: float = DEFAULT_TTL_S) -> Lease:  # fmt: skip
    """Take the lease on `store`'s root, or raise LeaseHeld naming who holds it."""
    holder = Holder.this_process(owner, ttl_s)
    if isinstance(store, LocalStore):
        return _acquire_local(store, holder, wait, force_unlock)
    if isinstance(store, S3Store):
        return _acquire_s3(store, holder, wait, force_unlock)
    raise TypeError(f"no lease for {type(store).__name__}")


def _refusal(url: str, holder: Holder | None, detail: str) -> LeaseHeld:
    who = holder.describe() if holder else "another process"
    return LeaseHeld(f"run root {url} is in use by {who}{detail}; wait for it with --wait, or stop it first")


def _acquire_local(store: LocalStore, holder: Holder, wait: bool, force_unlock: bool) -> LocalLease:
    path = store.root / LEASE_KEY
    try:
        store.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise StorageError(os_error_message(e, f"lease {path}") or f"lease {path}: {e}") from e
    announced = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                os.close(fd)
                raise StorageError(f"lease {path}: cannot lock it: {e.strerror}") from e
        current = Holder.parse(path.read_bytes())
        if not wait:
            os.close(fd)
            detail = ("; the kernel lock of a live process cannot be broken (--force-unlock only takes over expired "
                      "S3 leases)") if force_unlock else ""  # fmt: skip
            raise _refusal(store.url, current, detail)
        if not announced:
            log.warning(f"waiting for {store.url}, held by {current.describe() if current else 'another process'}")
            announced = True
        time.sleep(POLL_S / 4)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.to_bytes(), 0)
    except OSError as e:
        os.close(fd)
        raise StorageError(os_error_message(e, f"writing lease {path}") or f"lease {path}: {e}") from e
    return LocalLease(store, holder, fd)


def _acquire_s3(store: S3Store, holder: Holder, wait: bool, force_unlock: bool) -> S3Lease:
    announced = False
    while True:
        etag = store.create_if_absent(LEASE_KEY, holder.to_bytes())
        if etag is not None:
            return S3Lease(store, holder, etag)
        current = store.read_with_etag(LEASE_KEY)
        if current is None:
            continue  # released in between: try again
        data, etag, age_s = current
        other = Holder.parse(data)
        if other is not None and other.token == holder.token:
            return S3Lease(store, holder, etag)  # our own create, retried after a lost response
        ttl = other.ttl_s if other else DEFAULT_TTL_S
        expired = age_s > ttl
        reclaim = other is None or other.owner == holder.owner or other.is_dead_local_process()
        if reclaim or (expired and (force_unlock or wait)):
            new = store.replace_if_match(LEASE_KEY, holder.to_bytes(), etag)
            if new is not None:
                if other is not None and other.owner != holder.owner:
                    log.warning(f"took over the lease on {store.url} from {other.describe()}")
                return S3Lease(store, holder, new)
            continue  # someone else took it first: look again
        if not wait:
            if expired:
                detail = (f"; its lease expired {age_s - ttl:.0f} s ago (the holder stopped renewing it): take it "
                          "over with --force-unlock if that run is dead")  # fmt: skip
            elif force_unlock:
                detail = f"; its lease is live (renewed {age_s:.0f} s ago, expires in {ttl - age_s:.0f} s)"
            else:
                detail = f"; its lease expires {ttl - age_s:.0f} s after its last renewal unless renewed"
            raise _refusal(store.url, other, detail)
        if not announced:
            log.warning(f"waiting for {store.url}, held by {other.describe() if other else 'another process'}")
            announced = True
        time.sleep(POLL_S)


def inherited(store: Store) -> bool:
    """True in a stage subprocess whose parent run holds this root's lease (the token in our environment is the
    one in the lease), so the child writes under it instead of taking it again."""
    token = os.environ.get(TOKEN_ENV)
    if not token:
        return False
    if isinstance(store, LocalStore):
        path = store.root / LEASE_KEY
        current = Holder.parse(path.read_bytes()) if path.exists() else None
    else:
        found = store.read_with_etag(LEASE_KEY)
        current = Holder.parse(found[0]) if found else None
    return current is not None and current.token == token


@contextmanager
def holding(store: Store, *, owner: str | None = None, wait: bool = False,
            force_unlock: bool = False) -> Iterator[Lease | None]:  # fmt: skip
    """Preflight the root, then hold its lease for the block; None in a stage subprocess that writes under its
    parent run's lease."""
    if inherited(store):
        yield None
        return
    store.preflight()
    lease = acquire(store, owner=owner, wait=wait, force_unlock=force_unlock)
    log.debug("holding the lease", extra={"fields": {"root": store.url, "token": lease.token}})
    with lease.keep():
        yield lease
