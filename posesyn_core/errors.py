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
