"""A small HTTP proxy that sits between boto3 and the S3 test server and breaks a seeded fraction of requests.

Faults, each a thing real object stores and networks do:
- `500` / `503`: the server answers InternalError / SlowDown without acting;
- `drop`: the connection closes before the request reaches the server;
- `lost`: the server acts, then the connection closes before the response arrives (only for requests that are
  safe to repeat: GET, HEAD, PUT, DELETE), so the client retries something that already happened;
- `truncate`: an object download (GET of a key) sends its headers and half its body, then closes.

Whether a request fails is decided by hashing (seed, method, path within the bucket, how many times that request
was seen), so a run's faults depend neither on thread timing nor on the test bucket's random name, and no request
fails more than `max_consecutive` times in a row: the client's retries (botocore's standard mode: 8 attempts) must
then always get through.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

ERROR_BODY = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>injected by the fault '
              'proxy</Message></Error>')  # fmt: skip
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
REPEATABLE = {"GET", "HEAD", "PUT", "DELETE"}
KINDS = frozenset({"500", "503", "drop", "lost", "truncate"})


class FaultProxy:
    def __init__(self, upstream: str, seed: int, fraction: float, max_consecutive: int = 2,
                 kinds: frozenset[str] = KINDS):  # fmt: skip
        self.upstream = urlsplit(upstream)
        self.seed, self.fraction, self.max_consecutive, self.kinds = seed, fraction, max_consecutive, kinds
        self.counts: Counter = Counter()
        self._seen: Counter = Counter()  # (method, path) -> times seen
        self._streak: Counter = Counter()  # (method, path) -> faults in a row
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def decide(self, method: str, path: str, is_object_get: bool) -> str | None:
        """The fault for this request, or None to pass it through."""
        with self._lock:
            request = (method, re.sub(r"^/[^/?]*/?", "", path))  # "/bucket/key?query" -> "key?query"
            self._seen[request] += 1
            self.counts["requests"] += 1
            digest = hashlib.sha256(f"{self.seed}:{method}:{request[1]}:{self._seen[request]}".encode()).digest()
            roll = int.from_bytes(digest[:8], "little") / 2**64
            kinds = ["500", "503", "drop"] + (["lost"] if method in REPEATABLE else [])
            kinds = [k for k in kinds + (["truncate"] if is_object_get else []) if k in self.kinds]
            if not kinds or roll >= self.fraction or self._streak[request] >= self.max_consecutive:
                self._streak[request] = 0
                return None
            self._streak[request] += 1
            kind = kinds[digest[8] % len(kinds)]
            self.counts[kind] += 1
            return kind

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _serve(self) -> None:
                body = self._body()
                path, _, query = self.path.partition("?")
                is_object_get = self.command == "GET" and path.count("/") >= 2 and "list-type" not in query \
                    and "uploads" not in query  # fmt: skip
                fault = proxy.decide(self.command, self.path, is_object_get)
                if fault in ("500", "503"):
                    code = "InternalError" if fault == "500" else "SlowDown"
                    payload = ERROR_BODY.format(code=code).encode()
                    self.send_response_only(int(fault))
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                if fault == "drop":
                    self.close_connection = True
                    return
                status, headers, payload = self._forward(body)
                if fault == "lost":
                    self.close_connection = True
                    return
                self.send_response_only(status)  # the server's own Date and Server headers, not a second pair
                for name, value in headers:
                    if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                length = headers_length(headers) if self.command == "HEAD" else len(payload)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if fault == "truncate" and status == 200 and len(payload) > 1:
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    if self.command not in ("GET", "HEAD", "DELETE") or body:
                        headers["Content-Length"] = str(len(body))
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    response = conn.getresponse()
                    payload = response.read()
                    return response.status, response.getheaders(), payload
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _serve

        return Handler


def headers_length(headers: list[tuple[str, str]]) -> int:
    return int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
