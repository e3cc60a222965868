"""A small, real HTTP server speaking the subset of the Kubernetes REST API the launcher uses.

Not a mock of our code: the official `kubernetes` client talks HTTP to it exactly as to an API server.
Covered: list/get/watch/patch/create/delete Jobs; list Pods (label selectors), Pod logs (also `follow`);
list Events (field selector `involvedObject.name`); list/get/patch ConfigMaps. Every write bumps a global
resourceVersion and appends a watch event; `compact()` drops history so watches from an older version get the
same answer a real server gives (an ERROR event with a 410 Status), and `expire_watches()` ends open watches
that way. `fail_next(code)` answers the next request with an error Status (to test retries).

`JobController` plays the Job controller and the kubelet for tests: when a stage Job is unsuspended it creates
pods and drives them (and the Job's status) through the outcome scripted for that stage.
"""

from __future__ import annotations

import copy
import json
import re
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

ROUTES = [
    (re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+))?$"), "jobs"),
    (re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$"), "log"),
    (re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?$"), "pods"),
    (re.compile(r"^/api/v1/namespaces/([^/]+)/events(?:/([^/]+))?$"), "events"),
    (re.compile(r"^/api/v1/namespaces/([^/]+)/configmaps(?:/([^/]+))?$"), "configmaps"),
]
KINDS = {"jobs": ("batch/v1", "Job"), "pods": ("v1", "Pod"), "events": ("v1", "Event"),
         "configmaps": ("v1", "ConfigMap")}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_body(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


def merge_patch(target: dict, patch: dict) -> dict:
    """RFC 7386 JSON merge patch (what strategic merge does too for the plain maps we patch)."""
    out = copy.deepcopy(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_patch(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def label_match(labels: dict, selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            if labels.get(k.rstrip("=")) != v:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def field_match(obj: dict, selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        path, value = term.split("=", 1)
        node = obj
        for part in path.split("."):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if node != value:
            return False
    return True


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hanging up on a watch or log stream is normal


class FakeKubeAPI:
    def __init__(self, namespace: str = "posesyn"):
        self.namespace = namespace
        self.cond = threading.Condition()
        self.rv = 0
        self.objects: dict[str, dict[str, dict]] = {k: {} for k in KINDS}
        self.history: list[tuple[int, str, str, dict]] = []  # (rv, resource, type, object)
        self.compacted = 0  # watches from a version below this get 410 Gone
        self.watch_epoch = 0  # bumped by expire_watches()
        self.gone_served = 0  # how many watches were answered 410
        self.open_watches = 0
        self.logs: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str]] = []
        self.errors: list[int] = []
        self.on_write: list[Callable[[str, str, dict], None]] = []  # (resource, verb, object) after API writes
        self.server = QuietServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeKubeAPI:
        self.thread.start()
        return self

    def stop(self) -> None:
        with self.cond:
            self.watch_epoch += 1
            self.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()

    # --- store (used by the HTTP handler and by tests acting as controllers) --------------------------------
    def put(self, resource: str, obj: dict, kind: str | None = None) -> dict:
        with self.cond:
            obj = copy.deepcopy(obj)
            api_version, default_kind = KINDS[resource]
            obj.setdefault("apiVersion", api_version)
            obj.setdefault("kind", default_kind)
            meta = obj.setdefault("metadata", {})
            meta.setdefault("namespace", self.namespace)
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now())
            existed = meta["name"] in self.objects[resource]
            self.rv += 1
            meta["resourceVersion"] = str(self.rv)
            self.objects[resource][meta["name"]] = obj
            self.history.append((self.rv, resource, kind or ("MODIFIED" if existed else "ADDED"), copy.deepcopy(obj)))
            self.cond.notify_all()
            return copy.deepcopy(obj)

    def get(self, resource: str, name: str) -> dict | None:
        with self.cond:
            obj = self.objects[resource].get(name)
            return copy.deepcopy(obj) if obj else None

    def update(self, resource: str, name: str, fn: Callable[[dict], None]) -> dict:
        with self.cond:
            obj = copy.deepcopy(self.objects[resource][name])
            fn(obj)
            return self.put(resource, obj)

    def delete(self, resource: str, name: str) -> dict | None:
        with self.cond:
            obj = self.objects[resource].pop(name, None)
            if obj is not None:
                self.rv += 1
                obj = copy.deepcopy(obj)
                obj["metadata"]["resourceVersion"] = str(self.rv)
                self.history.append((self.rv, resource, "DELETED", obj))
                self.cond.notify_all()
            return obj

    def compact(self) -> None:
        """Forget the watch history, as etcd compaction does: older resourceVersions now answer 410."""
        with self.cond:
            self.compacted = self.rv + 1
            self.history.clear()

    def expire_watches(self) -> None:
        """End every open watch with a 410 ERROR event (the server's watch cache lost them)."""
        with self.cond:
            self.compact()
            self.watch_epoch += 1
            self.cond.notify_all()

    def fail_next(self, *codes: int) -> None:
        self.errors.extend(codes)

    def count(self, method: str, pattern: str) -> int:
        return sum(m == method and re.search(pattern, p) is not None for m, p in self.requests)

    # --- HTTP ---------------------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def send_json(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def start_chunked(self, content_type: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

            def chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def end_chunked(self) -> None:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def body(self) -> dict:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n)) if n else {}

            def route(self) -> tuple[str, str | None, dict[str, str]] | None:
                url = urlparse(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                for pattern, resource in ROUTES:
                    m = pattern.match(url.path)
                    if m:
                        return resource, m.group(2), query
                return None

            def handle_any(self, method: str) -> None:
                api.requests.append((method, self.path))
                if api.errors:
                    code = api.errors.pop(0)
                    self.body()
                    return self.send_json(code, status_body(code, "InternalError", f"injected HTTP {code}"))
                r = self.route()
                if r is None:
                    return self.send_json(404, status_body(404, "NotFound", f"no route {self.path}"))
                resource, name, query = r
                getattr(self, f"do_{method.lower()}_")(resource, name, query)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self.handle_any("GET")

            def do_PATCH(self) -> None:  # noqa: N802
                self.handle_any("PATCH")

            def do_POST(self) -> None:  # noqa: N802
                self.handle_any("POST")

            def do_DELETE(self) -> None:  # noqa: N802
                self.handle_any("DELETE")

            def not_found(self, resource: str, name: str) -> None:
                self.send_json(404, status_body(404, "NotFound", f'{resource} "{name}" not found'))

            def do_get_(self, resource: str, name: str | None, query: dict[str, str]) -> None:
                if resource == "log":
                    return self.pod_log(name, query)
                if name:
                    obj = api.get(resource, name)
                    return self.send_json(200, obj) if obj else self.not_found(resource, name)
                if query.get("watch", "").lower() in ("true", "1"):
                    return self.watch(resource, query)
                with api.cond:
                    items = [copy.deepcopy(o) for o in api.objects[resource].values()
                             if label_match(o["metadata"].get("labels") or {}, query.get("labelSelector"))
                             and field_match(o, query.get("fieldSelector"))]
                    rv = str(api.rv)
                kind = KINDS[resource][1] + "List"
                self.send_json(200, {"kind": kind, "apiVersion": KINDS[resource][0],
                                     "metadata": {"resourceVersion": rv}, "items": items})

            def watch(self, resource: str, query: dict[str, str]) -> None:
                since = int(query.get("resourceVersion") or 0)
                deadline = time.monotonic() + float(query.get("timeoutSeconds") or 30)
                self.start_chunked("application/json")
                with api.cond:
                    api.open_watches += 1
                try:
                    self.stream_events(resource, query, since, deadline)
                finally:
                    with api.cond:
                        api.open_watches -= 1

            def stream_events(self, resource: str, query: dict[str, str], since: int, deadline: float) -> None:
                with api.cond:
                    epoch = api.watch_epoch
                    if since and since < api.compacted:
                        gone = status_body(410, "Expired", f"too old resource version: {since} ({api.compacted})")
                        api.gone_served += 1
                        self.chunk(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
                        return self.end_chunked()
                while True:
                    with api.cond:
                        if api.watch_epoch != epoch:
                            gone = status_body(410, "Expired", "watch cache expired")
                            api.gone_served += 1
                            self.chunk(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
                            break
                        events = [(rv, t, o) for rv, res, t, o in api.history if rv > since and res == resource
                                  and label_match(o["metadata"].get("labels") or {}, query.get("labelSelector"))
                                  and field_match(o, query.get("fieldSelector"))]
                        if not events:
                            left = deadline - time.monotonic()
                            if left <= 0:
                                break
                            if self.client_gone():
                                return
                            api.cond.wait(min(left, 0.1))
                            continue
                    for rv, kind, obj in events:
                        since = rv
                        try:
                            self.chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
                        except OSError:  # the client went away
                            return
                self.end_chunked()

            def client_gone(self) -> bool:
                """The client closed the connection (it stopped reading the watch): end the stream."""
                readable, _, _ = select.select([self.connection], [], [], 0)
                try:
                    return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    return True

            def pod_log(self, name: str, query: dict[str, str]) -> None:
                if api.get("pods", name) is None:
                    return self.not_found("pods", name)
                lines = api.logs.get(name, [])
                if query.get("follow", "").lower() not in ("true", "1"):
                    tail = int(query.get("tailLines") or 0)
                    data = "".join(line + "\n" for line in (lines[-tail:] if tail else lines)).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    return self.wfile.write(data)
                self.start_chunked("text/plain")
                sent = 0
                while True:  # until the pod's container is done and every line was sent
                    with api.cond:
                        lines = list(api.logs.get(name, []))
                        pod = api.objects["pods"].get(name) or {}
                        done = pod.get("status", {}).get("phase") in ("Succeeded", "Failed", None)
                        if sent == len(lines) and not done:
                            api.cond.wait(0.2)
                            continue
                    for line in lines[sent:]:
                        self.chunk((line + "\n").encode())
                    sent = len(lines)
                    if done:
                        break
                self.end_chunked()

            def do_patch_(self, resource: str, name: str | None, query: dict[str, str]) -> None:
                patch = self.body()
                with api.cond:
                    current = api.objects[resource].get(name or "")
                    if current is None:
                        return self.not_found(resource, name or "")
                    obj = api.put(resource, merge_patch(current, patch))
                self.send_json(200, obj)
                api.notify(resource, "PATCH", obj)

            def do_post_(self, resource: str, name: str | None, query: dict[str, str]) -> None:
                body = self.body()
                if api.get(resource, body["metadata"]["name"]) is not None:
                    msg = f'{resource} "{body["metadata"]["name"]}" already exists'
                    return self.send_json(409, status_body(409, "AlreadyExists", msg))
                obj = api.put(resource, body)
                self.send_json(201, obj)
                api.notify(resource, "POST", obj)

            def do_delete_(self, resource: str, name: str | None, query: dict[str, str]) -> None:
                self.body()
                obj = api.delete(resource, name or "")
                if obj is None:
                    return self.not_found(resource, name or "")
                if resource == "jobs":  # background propagation: the Job's pods go too
                    for pod in [p for p in api.objects["pods"].values()
                                if (p["metadata"].get("labels") or {}).get("batch.kubernetes.io/job-name") == name]:
                        api.delete("pods", pod["metadata"]["name"])
                self.send_json(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

        return Handler

    def notify(self, resource: str, verb: str, obj: dict) -> None:
        for hook in self.on_write:
            threading.Thread(target=hook, args=(resource, verb, copy.deepcopy(obj)), daemon=True).start()


# --- the cluster side: Job controller + kubelet, scripted per stage ---------------------------------------------


def job_manifest(release: str, stage: str, index: int, completions: int = 1, suspend: bool = True,
                 memory: str = "4Gi", run: str = "demo") -> dict:
    """A stage Job as the chart renders it (the fields the launcher reads)."""
    labels = {"app.kubernetes.io/instance": release, "app.kubernetes.io/component": stage,
              "app.kubernetes.io/name": "posesyn", "posesyn.ai/stage": stage, "posesyn.ai/run": run,
              "posesyn.ai/stage-index": str(index)}
    spec: dict = {"suspend": suspend, "backoffLimit": 2, "completions": completions, "parallelism": completions,
                  "template": {"metadata": {"labels": dict(labels)}, "spec": {
                      "restartPolicy": "Never",
                      "containers": [{"name": "stage", "image": f"posesyn-{stage}:0.1.0",
                                      "resources": {"limits": {"memory": memory}}}]}}}
    if completions > 1:
        spec["completionMode"] = "Indexed"
    return {"metadata": {"name": f"{release}-{stage}", "labels": labels}, "spec": spec}


class JobController:
    """Plays Kueue (admits, i.e. unsuspends, a Job as soon as it has a queue label) and drives unsuspended Jobs
    to an outcome: "succeed", "fail" (exit 1, backoffLimit), "oom" (exit 137),
    "config" (exit 2, podFailurePolicy), "unschedulable" (stays Pending with a FailedScheduling event),
    "hold" (pods keep running until `release_hold(stage)`)."""

    def __init__(self, api: FakeKubeAPI, outcomes: dict[str, str] | None = None, step_s: float = 0.02):
        self.api, self.outcomes, self.step_s = api, outcomes or {}, step_s
        self.started: list[str] = []  # stages in the order their Jobs were unsuspended
        self.held: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        api.on_write.append(self.on_write)

    def on_write(self, resource: str, verb: str, obj: dict) -> None:
        if resource != "jobs":
            return
        labels = obj["metadata"].get("labels") or {}
        if obj["spec"].get("suspend") and "kueue.x-k8s.io/queue-name" in labels:  # Kueue admits it at once
            obj = self.api.update("jobs", obj["metadata"]["name"], lambda j: j["spec"].update(suspend=False))
        if obj.get("spec", {}).get("suspend") or obj.get("status", {}).get("startTime"):
            return
        stage = obj["metadata"]["labels"].get("posesyn.ai/stage")
        if stage is None:
            return
        with self.lock:
            name = obj["metadata"]["name"]
            if (self.api.get("jobs", name) or {}).get("status", {}).get("startTime"):
                return
            self.api.update("jobs", name, lambda j: j.setdefault("status", {}).update(startTime=now(), active=1))
            self.started.append(stage)
        self.drive(name, stage, int(obj["spec"].get("completions") or 1), self.outcomes.get(stage, "succeed"))

    def release_hold(self, stage: str) -> None:
        self.held.setdefault(stage, threading.Event()).set()

    def pod(self, job: str, stage: str, shard: int, attempt: int) -> str:
        name = f"{job}-{shard}-{attempt}"
        job_labels = self.api.get("jobs", job)["spec"]["template"]["metadata"]["labels"]
        labels = {**job_labels, "batch.kubernetes.io/job-name": job, "job-name": job}
        self.api.put("pods", {"metadata": {"name": name, "labels": labels, "annotations": {
            "batch.kubernetes.io/job-completion-index": str(shard)}},
            "spec": {"containers": [{"name": "stage", "image": f"posesyn-{stage}:0.1.0",
                                     "resources": {"limits": {"memory": "4Gi"}}}]},
            "status": {"phase": "Pending"}})
        return name

    def set_pod(self, name: str, phase: str, state: dict, **extra: dict) -> None:
        def change(p: dict) -> None:
            p["status"] = {"phase": phase, "containerStatuses": [{"name": "stage", "image": "img", "state": state}],
                           **extra}

        self.api.update("pods", name, change)

    def finish_job(self, job: str, ok: bool, reason: str = "", message: str = "", **counts: int) -> None:
        def change(j: dict) -> None:
            st = j.setdefault("status", {})
            st.update(active=0, **counts)
            cond = {"type": "Complete" if ok else "Failed", "status": "True", "reason": reason,
                    "message": message, "lastTransitionTime": now()}
            st["conditions"] = [cond]
            if ok:
                st["completionTime"] = now()

        self.api.update("jobs", job, change)

    def drive(self, job: str, stage: str, completions: int, outcome: str) -> None:
        time.sleep(self.step_s)
        if outcome == "unschedulable":
            pod = self.pod(job, stage, 0, 0)
            self.api.update("pods", pod, lambda p: p["status"].update(conditions=[{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]))
            self.api.put("events", {"metadata": {"name": f"{pod}.1"}, "type": "Warning", "reason":
                                    "FailedScheduling", "involvedObject": {"kind": "Pod", "name": pod},
                                    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. "
                                               "preemption: 0/3 nodes are available.",
                                    "lastTimestamp": now()})
            return
        if outcome in ("fail", "oom", "config"):
            code, why = {"fail": (1, "Error"), "oom": (137, "OOMKilled"), "config": (2, "Error")}[outcome]
            tries = 1 if outcome == "config" else 3
            for attempt in range(tries):
                pod = self.pod(job, stage, 0, attempt)
                self.api.logs[pod] = [f"{stage} attempt {attempt} starting", "Traceback: boom"]
                self.set_pod(pod, "Failed", {"terminated": {"exitCode": code, "reason": why}})
                self.api.update("jobs", job, lambda j, n=attempt + 1: j["status"].update(failed=n))
                time.sleep(self.step_s)
            if outcome == "config":
                return self.finish_job(job, False, "PodFailurePolicy", "Container stage for pod exited with code 2 "
                                       "matching FailJob rule at index 0", failed=1)
            return self.finish_job(job, False, "BackoffLimitExceeded", "Job has reached the specified backoff "
                                   "limit", failed=3)
        pods = [self.pod(job, stage, shard, 0) for shard in range(completions)]
        for pod in pods:
            self.api.logs[pod] = [f"{stage} shard {pod} starting"]
            self.set_pod(pod, "Running", {"running": {"startedAt": now()}})
        self.api.update("jobs", job, lambda j: j["status"].update(ready=len(pods)))  # as the Job controller does
        if outcome == "hold":
            self.held.setdefault(stage, threading.Event()).wait(30)
        for i, pod in enumerate(pods):
            time.sleep(self.step_s)
            self.api.logs[pod].append(f"{stage} done")
            self.set_pod(pod, "Succeeded", {"terminated": {"exitCode": 0, "reason": "Completed"}})
            self.api.update("jobs", job, lambda j, n=i + 1: j["status"].update(succeeded=n, active=completions - n))
        self.finish_job(job, True, "CompletionsReached", "Reached expected number of succeeded pods",
                        succeeded=completions)
