{{/*
Names, labels and image references shared by every template.
Resource names are cut to 63 characters (the DNS label limit of names and label values).
*/}}

{{/* Chart name (nameOverride wins). */}}
{{- define "posesyn.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every resource name: fullnameOverride, else the release name when it already says "posesyn",
else "<release>-posesyn". */}}
{{- define "posesyn.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := include "posesyn.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "posesyn.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select this release's objects. */}}
{{- define "posesyn.selectorLabels" -}}
app.kubernetes.io/name: {{ include "posesyn.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of a stage's Job and pods: (dict "root" $ "stage" "eem"). The sequencer and `posesyn watch` select
a release's stage Job by app.kubernetes.io/instance + posesyn.ai/stage (see posesyn_core/launch/kube.py). */}}
{{- define "posesyn.stageLabels" -}}
app.kubernetes.io/component: {{ .stage }}
posesyn.ai/stage: {{ .stage }}
posesyn.ai/run: {{ include "posesyn.runName" .root }}
{{- end }}

{{/* Recommended app.kubernetes.io labels of every object. */}}
{{- define "posesyn.labels" -}}
helm.sh/chart: {{ include "posesyn.chart" . }}
{{ include "posesyn.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: posesyn
{{- end }}

{{/* Image reference: (dict "root" $ "name" "posesyn-eem") -> "<registry>/posesyn-eem:<tag>". */}}
{{- define "posesyn.image" -}}
{{- $img := .root.Values.image }}
{{- $tag := default .root.Chart.AppVersion $img.tag }}
{{- if $img.registry }}
{{- printf "%s/%s:%s" (trimSuffix "/" $img.registry) .name $tag }}
{{- else }}
{{- printf "%s:%s" .name $tag }}
{{- end }}
{{- end }}

{{/* The run name: run.name, else the release name. */}}
{{- define "posesyn.runName" -}}
{{- default .Release.Name .Values.run.name }}
{{- end }}

{{/* The run's storage root URL, derived from storage.* (the run config's root). */}}
{{- define "posesyn.root" -}}
{{- $prefix := default (include "posesyn.runName" .) .Values.storage.prefix }}
{{- if eq .Values.storage.type "s3" }}
{{- printf "s3://%s/%s" .Values.storage.s3.bucket $prefix }}
{{- else }}
{{- printf "file://%s/%s" .Values.storage.pvc.mountPath $prefix }}
{{- end }}
{{- end }}

{{/* Stages this run runs, in pipeline order: run.stages, else the whole pipeline. Comma-separated. */}}
{{- define "posesyn.runStages" -}}
{{- join "," (default .Values.pipeline .Values.run.stages) }}
{{- end }}

{{/* Name of a stage's Job: (dict "root" $ "stage" "eem"). */}}
{{- define "posesyn.jobName" -}}
{{- printf "%s-%s" (include "posesyn.fullname" .root) .stage | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The PVC stage pods mount. */}}
{{- define "posesyn.claimName" -}}
{{- default (printf "%s-data" (include "posesyn.fullname" .)) .Values.storage.pvc.existingClaim }}
{{- end }}

{{/* ConfigMap holding run.yaml, and the one the sequencer records run status in. */}}
{{- define "posesyn.runConfigMap" -}}
{{- printf "%s-run" (include "posesyn.fullname" .) }}
{{- end }}
{{- define "posesyn.statusConfigMap" -}}
{{- printf "%s-status" (include "posesyn.fullname" .) }}
{{- end }}

{{/* Pod-level security context of every pod: non-root, RuntimeDefault seccomp, volumes owned by the group. */}}
{{- define "posesyn.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
fsGroup: {{ .Values.podSecurity.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level security context of every container: read-only root, no privilege, no capabilities. */}}
{{- define "posesyn.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
{{- end }}

{{/* Storage access, the same in stage pods and the sequencer (which checks the root and holds its lease). */}}
{{- define "posesyn.storageEnv" -}}
{{- if eq .Values.storage.type "s3" }}
{{- with .Values.storage.s3.endpoint }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
- name: AWS_REGION
  value: {{ .Values.storage.s3.region | quote }}
{{- end }}
{{- end }}

{{- define "posesyn.storageEnvFrom" -}}
{{- if and (eq .Values.storage.type "s3") .Values.storage.s3.credentialsSecret }}
envFrom:
  - secretRef:
      name: {{ .Values.storage.s3.credentialsSecret }}
{{- end }}
{{- end }}

{{/* Mounts of the run config and the data PVC, and their volumes. */}}
{{- define "posesyn.runMounts" -}}
- name: run-config
  mountPath: /etc/posesyn
  readOnly: true
{{- if eq .Values.storage.type "pvc" }}
- name: data
  mountPath: {{ .Values.storage.pvc.mountPath }}
{{- end }}
{{- end }}

{{- define "posesyn.runVolumes" -}}
- name: run-config
  configMap:
    name: {{ include "posesyn.runConfigMap" . }}
{{- if eq .Values.storage.type "pvc" }}
- name: data
  persistentVolumeClaim:
    claimName: {{ include "posesyn.claimName" . }}
{{- end }}
{{- end }}
