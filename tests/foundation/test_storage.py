"""Store semantics on a local folder and on a real S3-protocol server (moto, over HTTP)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from posesyn_core.errors import ConfigError, StorageError
from posesyn_core.storage import LocalStore, NotFound, S3Store, open_store


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "root")
    bucket = request.getfixturevalue("s3_bucket")
    return S3Store(bucket, "runs/r1")


def test_roundtrip_json_npz_text(store):
    store.write_json("a/b.json", {"x": 1})
    store.write_text("a/c.txt", "hello")
    store.save_npz("a/d.npz", arr=np.arange(5))
    assert store.read_json("a/b.json") == {"x": 1}
    assert store.read_text("a/c.txt") == "hello"
    np.testing.assert_array_equal(store.load_npz("a/d.npz")["arr"], np.arange(5))
    assert store.exists("a/b.json") and not store.exists("a/zz.json")
    assert store.size("a/c.txt") == 5


def test_missing_key_names_url(store):
    with pytest.raises(NotFound, match="nope.json: no such object"):
        store.read_bytes("x/nope.json")


def test_failed_write_leaves_nothing(store):
    with pytest.raises(RuntimeError):
        with store.open_write("w/partial.bin") as f:
            f.write(b"x" * 1000)
            raise RuntimeError("crash mid-write")
    assert not store.exists("w/partial.bin")
    assert list(store.list("w")) == []


def test_list_prefix_sorted_and_delete_prefix(store):
    for k in ["p/b.txt", "p/a.txt", "p/sub/c.txt", "q/x.txt"]:
        store.write_text(k, k)
    assert list(store.list("p")) == ["p/a.txt", "p/b.txt", "p/sub/c.txt"]
    assert store.delete_prefix("p") == 3
    assert list(store.list("p")) == [] and store.exists("q/x.txt")


@pytest.mark.parametrize("key", ["../x", "/abs", "a/../b", "a//b", ""])
def test_bad_keys_rejected(store, key):
    with pytest.raises(StorageError, match="invalid storage key"):
        store.write_text(key, "x")


def test_s3_multipart_upload_over_10mb(s3_bucket):
    store = S3Store(s3_bucket, "big")
    data = np.random.default_rng(0).integers(0, 255, size=11 * 1024 * 1024 + 17, dtype=np.uint8).tobytes()
    with store.open_write("blob.bin") as f:
        for i in range(0, len(data), 1 << 20):  # streamed in 1 MiB writes
            f.write(data[i : i + (1 << 20)])
    head = store.client.head_object(Bucket=s3_bucket, Key="big/blob.bin")
    assert "-" in head["ETag"], "expected a multipart ETag"
    with store.open_read("blob.bin") as f:
        assert f.read() == data


def test_s3_listing_paginates(s3_bucket):
    store = S3Store(s3_bucket, "many")
    client = store.client
    for i in range(1005):  # > 1000 = one page of list_objects_v2
        client.put_object(Bucket=s3_bucket, Key=f"many/k/{i:05d}", Body=b"")
    keys = list(store.list("k"))
    assert len(keys) == 1005 and keys[0] == "k/00000" and keys[-1] == "k/01004"


def test_s3_upload_killed_halfway_leaves_no_object(s3_bucket, s3_env, tmp_path):
    """A process killed in the middle of a multipart upload never completes it: no visible object."""
    script = tmp_path / "slow_upload.py"
    script.write_text(
        "import sys, time\n"
        "from posesyn_core.storage import S3Store\n"
        "s = S3Store(sys.argv[1], 'kill')\n"
        "def slow_part(**kw):\n"  # a botocore hook: every part after the first waits, so we can kill mid-upload
        "    print('part', flush=True); time.sleep(30)\n"
        "s.client.meta.events.register('after-call.s3.UploadPart', slow_part)\n"
        "with s.open_write('obj.bin') as f:\n"
        "    f.write(b'x' * (30 << 20))\n"
    )
    proc = subprocess.Popen([sys.executable, str(script), s3_bucket], stdout=subprocess.PIPE, env=os.environ)
    assert proc.stdout.readline().strip() == b"part"  # at least one part is on the server
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = S3Store(s3_bucket, "kill")
    assert store.client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads"), "upload was not in flight"
    assert not store.exists("obj.bin")


def test_open_store_urls(tmp_path):
    assert isinstance(open_store(tmp_path.as_uri()), LocalStore)
    assert open_store(tmp_path.as_uri()).root == tmp_path
    with pytest.raises(ConfigError, match="needs a bucket"):
        open_store("s3:///x")
    with pytest.raises(ConfigError, match="unsupported scheme"):
        open_store("gs://b/p")
