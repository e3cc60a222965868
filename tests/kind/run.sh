#!/usr/bin/env bash
# The kind integration test (`make kind-test`): a real cluster, real images, the real chart, the real sequencer.
#
#   1. kind cluster from k8s/kind/cluster.yaml (a CPU worker and a tainted "gpu" worker without GPUs)
#   2. images built by images/build.py (base + the run's stages + sequencer) and `kind load`ed
#   3. `posesyn submit` of a tiny run (examples/smoke.yaml) with helm/posesyn/ci/kind-values.yaml (CPU, no GPU
#      requests, local images, a ReadWriteOnce volume)
#   4. `posesyn watch` until the run ends (exit 0 = every stage Job Complete)
#   5. checks: every stage's _SUCCESS manifest is on the volume; no stage pod ran on the tainted gpu node;
#      the status ConfigMap says Succeeded
#   6. the cluster is deleted (KEEP_CLUSTER=1 keeps it for a look around)
#
# Skipped (exit 0, one clear line) where docker, kind or kubectl is missing or the docker engine is not up.
# Environment: RUN_YAML (default examples/smoke.yaml), PYTHON (default .venv/bin/python), TIMEOUT_S (default
# 3600), KEEP_CLUSTER.
set -euo pipefail
cd "$(dirname "$0")/../.."

missing=""
for tool in docker kind kubectl; do command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"; done
if [ -n "$missing" ]; then
  echo "SKIPPED kind integration test: needs docker, kind and kubectl on PATH (missing:$missing)"
  exit 0
fi
if ! docker info >/dev/null 2>&1; then
  echo "SKIPPED kind integration test: the docker engine is not reachable (start dockerd)"
  exit 0
fi

PYTHON=${PYTHON:-.venv/bin/python}
RUN_YAML=${RUN_YAML:-examples/smoke.yaml}
TIMEOUT_S=${TIMEOUT_S:-3600}
CLUSTER=posesyn-it
RELEASE=kind-it
NS=posesyn-it
export KUBECONFIG
KUBECONFIG=$(mktemp)
posesyn() { "$PYTHON" -m posesyn_core.cli "$@"; }

teardown() {
  rc=$?
  if [ "$rc" != 0 ]; then
    echo "--- kind test failed (exit $rc): cluster state ---"
    kubectl -n "$NS" get jobs,pods -o wide || true
    posesyn cluster status "$RELEASE" -n "$NS" || true
    posesyn logs "$RELEASE" sequencer -n "$NS" --tail 50 || true
  fi
  if [ -z "${KEEP_CLUSTER:-}" ]; then kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi
  rm -f "$KUBECONFIG"
  exit "$rc"
}
trap teardown EXIT

# 1. cluster
kind create cluster --name "$CLUSTER" --config k8s/kind/cluster.yaml --kubeconfig "$KUBECONFIG" --wait 180s
kubectl create namespace "$NS"

# 2. images: only what this run needs
VERSION=$("$PYTHON" -c 'import posesyn_core; print(posesyn_core.__version__)')
STAGES=$("$PYTHON" -c "from posesyn_core.pipeline import load_run_config as l; print(' '.join(l('$RUN_YAML').stages))")
"$PYTHON" images/build.py $STAGES
images="posesyn-base:$VERSION posesyn-sequencer:$VERSION"
for s in $STAGES; do images="$images posesyn-$s:$VERSION"; done
# shellcheck disable=SC2086
kind load docker-image --name "$CLUSTER" $images

# 3. submit (the dry run first: what is applied is what Helm rendered)
posesyn submit "$RUN_YAML" -f helm/posesyn/ci/kind-values.yaml -n "$NS" --release "$RELEASE" --dry-run >/dev/null
posesyn submit "$RUN_YAML" -f helm/posesyn/ci/kind-values.yaml -n "$NS" --release "$RELEASE"

# 4. follow it to the end
timeout "$TIMEOUT_S" "$PYTHON" -m posesyn_core.cli watch "$RELEASE" -n "$NS" --poll 15

# 5. checks
posesyn cluster status "$RELEASE" -n "$NS" --json | "$PYTHON" -c '
import json, sys
s = json.load(sys.stdin)
assert s["run"].get("state") == "Succeeded", s["run"]
bad = [r for r in s["stages"] if r["stage"] != "(sequencer)" and r["state"] != "Succeeded"]
assert not bad, bad
print("status ConfigMap and Jobs: every stage succeeded")'

gpu_nodes=$(kubectl get nodes -l pool=gpu -o jsonpath='{.items[*].metadata.name}')
stage_nodes=$(kubectl -n "$NS" get pods -l "app.kubernetes.io/instance=$RELEASE,posesyn.ai/stage" \
  -o jsonpath='{.items[*].spec.nodeName}')
for n in $gpu_nodes; do
  case " $stage_nodes " in *" $n "*) echo "a CPU stage pod ran on the tainted gpu node $n"; exit 1;; esac
done
echo "no stage pod on the tainted gpu node(s): $gpu_nodes"

# The outputs live on the run's volume: read every stage's _SUCCESS manifest from a pod that mounts it.
# (the run name, which is also the folder on the volume, may come from a values file: read it off the Jobs)
RUN_NAME=$(kubectl -n "$NS" get jobs -l "app.kubernetes.io/instance=$RELEASE,posesyn.ai/stage" \
  -o jsonpath='{.items[0].metadata.labels.posesyn\.ai/run}')
CLAIM="$RELEASE-posesyn-data"
cat <<EOF | kubectl -n "$NS" apply -f -
apiVersion: batch/v1
kind: Job
metadata: {name: check-outputs}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      securityContext: {runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001}
      containers:
        - name: check
          image: posesyn-base:$VERSION
          imagePullPolicy: Never
          command: [python, -c]
          args:
            - |
              import json, pathlib
              root = pathlib.Path("/data/$RUN_NAME")
              for stage in "$STAGES".split():
                  manifest = json.loads((root / stage / "_SUCCESS").read_text())
                  print(stage, "ok", manifest.get("counts", {}))
          volumeMounts: [{name: data, mountPath: /data, readOnly: true}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: $CLAIM}}]
EOF
kubectl -n "$NS" wait --for=condition=complete job/check-outputs --timeout=300s
kubectl -n "$NS" logs job/check-outputs
echo "kind integration test passed"
