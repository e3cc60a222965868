"""Errors users see, and the process exit codes they map to.

Exit codes are part of the Kubernetes contract: the Helm chart's `podFailurePolicy` fails a Job at once on
EXIT_USAGE and EXIT_DATA (retrying cannot fix a bad config or a bad dataset) and lets the Job's backoff retry
EXIT_FAIL (maybe transient: a node went away, S3 hiccuped).
"""

EXIT_OK = 0
EXIT_FAIL = 1  # something broke; a retry may help
EXIT_USAGE = 2  # bad config, bad arguments: fix the input, do not retry
EXIT_DATA = 3  # too much bad input data (quarantine over its limit): fix the dataset, do not retry


class PosesynError(Exception):
    """Base of the errors we expect users to hit; printed as one line, no traceback."""

    exit_code = EXIT_FAIL


class ConfigError(PosesynError):
    """A run config, values file or command line that cannot work. Names the file and the key."""

    exit_code = EXIT_USAGE


class DataError(PosesynError):
    """Input data that cannot be used (too many quarantined samples, a malformed dataset)."""

    exit_code = EXIT_DATA


class StorageError(PosesynError):
    """A permanent storage failure (missing key, access denied). Names the URL."""

    exit_code = EXIT_FAIL


class StorageAccessError(StorageError):
    """The storage root cannot be used as configured: not creatable, no such bucket, access denied, no or wrong
    credentials. Retrying cannot fix it, so it exits like a config error."""

    exit_code = EXIT_USAGE


# errno values of failures a user can cause and fix (a full disk, a read-only or forbidden path): reported as one
# line naming the file, never as a traceback.
_USER_ERRNOS = {"ENOSPC": "no space left on device", "EDQUOT": "disk quota exceeded", "EROFS": "read-only file system",
                "EACCES": "permission denied", "EPERM": "operation not permitted"}  # fmt: skip


def os_error_message(err: OSError, what: str | None = None) -> str | None:
    """`<what>: no space left on device` for the errors in _USER_ERRNOS, else None."""
    import errno

    name = errno.errorcode.get(err.errno or 0, "")
    if name not in _USER_ERRNOS:
        return None
    return f"{what or err.filename or 'a file'}: {_USER_ERRNOS[name]}"


def as_user_error(err: BaseException) -> PosesynError | None:
    """An expected failure that escaped as a plain exception (a full disk while a library writes its own files,
    a storage endpoint that went away), as the PosesynError to print in one line; None for real bugs."""
    if isinstance(err, PosesynError):
        return err
    if isinstance(err, OSError) and (message := os_error_message(err)):
        return StorageError(message)
    module = type(err).__module__ or ""
    if module.startswith("botocore"):  # without importing botocore where it is not used
        return StorageError(f"storage: {type(err).__name__}: {err}")
    return None
