{{/*
The chart name, or nameOverride.
*/}}
{{- define "memgraph-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name: fullnameOverride, else the release name followed by the chart name unless the
release name already contains it. Names the Deployment, ServiceAccount, RBAC objects and the
leader-election Lease. At most 55 characters, so that "<fullname>-metrics" stays a valid
Service name.
*/}}
{{- define "memgraph-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "memgraph-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "memgraph-operator.labels" -}}
helm.sh/chart: {{ include "memgraph-operator.chart" . }}
{{ include "memgraph-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: memgraph-operator
{{- end }}

{{/*
Selector labels: the Deployment's selector is immutable, so these never change across upgrades
(no version, no chart label).
*/}}
{{- define "memgraph-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "memgraph-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "memgraph-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "memgraph-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image: repository@digest when a digest is set, else repository:tag (default: the
chart's appVersion).
*/}}
{{- define "memgraph-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The leader-election Lease: named after the full name, in the release namespace.
*/}}
{{- define "memgraph-operator.leaseName" -}}
{{- include "memgraph-operator.fullname" . }}
{{- end }}

{{/*
The permissions of the operator on the objects it manages: exactly the verbs it uses
(operator/tests/rbac.rs checks them). Shared by the ClusterRole and the per-namespace Roles.
*/}}
{{- define "memgraph-operator.rules" -}}
# The clusters: watched, read, finalizer added and removed (merge patch).
- apiGroups: ["memgraph.io"]
  resources: ["memgraphclusters"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["memgraph.io"]
  resources: ["memgraphclusters/status"]
  verbs: ["patch"]
# Owned objects: server-side apply (create and patch), watched, deleted on scale-down.
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch"]
# Pods: watched for restarts, role labels set after verification; a failover deletes an old
# MAIN that is Ready but does not answer (fencing).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "patch", "delete"]
# Secrets named in a cluster's spec (auth, S3) and the backup agent's key: read.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Checks of value combinations the schema cannot express; each names the values to change.
*/}}
{{- define "memgraph-operator.validate" -}}
{{- $le := .Values.leaderElection }}
{{- if and (not $le.enabled) (gt (int .Values.replicaCount) 1) }}
{{- fail (printf "replicaCount: %d replicas need leaderElection.enabled=true (without it every replica would reconcile); set replicaCount to 1 or enable leader election" (int .Values.replicaCount)) }}
{{- end }}
{{- if $le.enabled }}
{{- if le (int $le.leaseDurationSeconds) (int $le.renewDeadlineSeconds) }}
{{- fail (printf "leaderElection.leaseDurationSeconds (%d) must be greater than leaderElection.renewDeadlineSeconds (%d): a leader must step down before a standby may take the Lease" (int $le.leaseDurationSeconds) (int $le.renewDeadlineSeconds)) }}
{{- end }}
{{- if le (int $le.renewDeadlineSeconds) (int $le.retryPeriodSeconds) }}
{{- fail (printf "leaderElection.renewDeadlineSeconds (%d) must be greater than leaderElection.retryPeriodSeconds (%d): a leader needs more than one try to renew" (int $le.renewDeadlineSeconds) (int $le.retryPeriodSeconds)) }}
{{- end }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled=true: the ServiceMonitor selects that Service" }}
{{- end }}
{{- end }}
