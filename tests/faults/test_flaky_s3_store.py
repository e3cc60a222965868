"""The S3 store behind the fault proxy, object by object: every write lands whole, every read returns whole bytes
or fails loudly, never a shorter object."""

from __future__ import annotations

import boto3
import numpy as np
import pytest

from posesyn_core.errors import StorageError
from posesyn_core.storage import S3Store, s3_client
from tests.faults.fault_proxy import FaultProxy


def store_behind(proxy: FaultProxy, bucket: str, monkeypatch) -> S3Store:
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    return S3Store(bucket, "p", client=s3_client(max_attempts=8, connect_timeout=5, read_timeout=10))


def test_every_object_written_and_read_back_whole_through_every_fault(s3_server, s3_bucket, monkeypatch):
    rng = np.random.default_rng(3)
    payloads = {f"o/{i:03d}.bin": rng.bytes(int(rng.integers(1, 300_000))) for i in range(60)}
    with FaultProxy(s3_server, seed=5, fraction=0.3) as proxy:
        store = store_behind(proxy, s3_bucket, monkeypatch)
        for key, data in payloads.items():
            store.write_bytes(key, data)
        read = {key: store.read_bytes(key) for key in payloads}
    assert set(proxy.counts) - {"requests"} == {"500", "503", "drop", "lost", "truncate"}
    direct = boto3.client("s3", endpoint_url=s3_server)
    stored = {key: direct.get_object(Bucket=s3_bucket, Key=f"p/{key}")["Body"].read() for key in payloads}
    assert stored == payloads  # writes: nothing lost or cut short on the server
    assert read == payloads  # reads: a body cut off midway is fetched again, not returned short


def test_a_download_cut_off_every_time_fails_naming_the_object(s3_server, s3_bucket, monkeypatch):
    boto3.client("s3", endpoint_url=s3_server).put_object(Bucket=s3_bucket, Key="p/big.bin", Body=b"x" * 10_000)
    with FaultProxy(s3_server, seed=1, fraction=1.0, max_consecutive=99, kinds=frozenset({"truncate"})) as proxy:
        store = store_behind(proxy, s3_bucket, monkeypatch)
        with pytest.raises(StorageError, match=rf"s3://{s3_bucket}/p/big.bin: .*IncompleteRead"):
            store.read_bytes("big.bin")
    assert proxy.counts["truncate"] == S3Store.READ_ATTEMPTS
