{{/* The chart name, truncated to a DNS label. */}}
{{- define "checkpoint-autoscaler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: object names, the Lease, the ClusterRole. */}}
{{- define "checkpoint-autoscaler.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "checkpoint-autoscaler.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The controller's pods. */}}
{{- define "checkpoint-autoscaler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "checkpoint-autoscaler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "checkpoint-autoscaler.commonLabels" -}}
helm.sh/chart: {{ include "checkpoint-autoscaler.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels of the controller's objects. */}}
{{- define "checkpoint-autoscaler.labels" -}}
{{ include "checkpoint-autoscaler.commonLabels" . }}
{{ include "checkpoint-autoscaler.selectorLabels" . }}
{{- end }}

{{/* The emulator's pods (emulator.enabled): never selected by the controller's selectors. */}}
{{- define "checkpoint-autoscaler.emulatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "checkpoint-autoscaler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: emulator
{{- end }}

{{- define "checkpoint-autoscaler.emulatorLabels" -}}
{{ include "checkpoint-autoscaler.commonLabels" . }}
{{ include "checkpoint-autoscaler.emulatorSelectorLabels" . }}
{{- end }}

{{- define "checkpoint-autoscaler.emulatorName" -}}
{{- printf "%s-emulator" (include "checkpoint-autoscaler.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The region: aws.region, else the emulator's default when it is enabled. */}}
{{- define "checkpoint-autoscaler.region" -}}
{{- if .Values.aws.region }}{{ .Values.aws.region }}{{ else if .Values.emulator.enabled }}us-east-1{{ end }}
{{- end }}

{{/* The controller's own account: aws.accountId, else the emulator's when it is enabled (it has no STS). */}}
{{- define "checkpoint-autoscaler.accountId" -}}
{{- if .Values.aws.accountId }}{{ .Values.aws.accountId }}{{ else if .Values.emulator.enabled }}123456789012{{ end }}
{{- end }}

{{/* Where AWS requests go: aws.endpointUrl, else the emulator's Service when it is enabled. */}}
{{- define "checkpoint-autoscaler.endpointUrl" -}}
{{- if .Values.aws.endpointUrl }}{{ .Values.aws.endpointUrl }}
{{- else if .Values.emulator.enabled }}
{{- printf "http://%s.%s.svc:%d" (include "checkpoint-autoscaler.emulatorName" .) .Release.Namespace (int .Values.emulator.port) }}
{{- end }}
{{- end }}

{{- define "checkpoint-autoscaler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "checkpoint-autoscaler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "true" when the controller watches one namespace (Role) instead of all (ClusterRole). */}}
{{- define "checkpoint-autoscaler.namespaced" -}}
{{- if or .Values.rbac.namespaced .Values.watchNamespace }}true{{ end }}
{{- end }}

{{/* The namespace watched in namespaced mode: watchNamespace, else the release namespace. */}}
{{- define "checkpoint-autoscaler.watchNamespace" -}}
{{- default .Release.Namespace .Values.watchNamespace }}
{{- end }}

{{- define "checkpoint-autoscaler.leaseName" -}}
{{- default (include "checkpoint-autoscaler.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "checkpoint-autoscaler.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The RBAC rules on budgets and Events, exactly what the controller does: it reads, lists and
watches CheckpointBudgets, writes their status with server-side apply (a PATCH on /status,
which needs no GET), and records Events through events.k8s.io (create, then patch to fold
repeats into a series). Nothing else: no Secrets, no ConfigMaps, no writes to the spec.
*/}}
{{- define "checkpoint-autoscaler.budgetRules" -}}
- apiGroups: ["checkpoint-autoscaler.dev"]
  resources: ["checkpointbudgets"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["checkpoint-autoscaler.dev"]
  resources: ["checkpointbudgets/status"]
  verbs: ["patch"]
- apiGroups: ["checkpoint-autoscaler.dev"]
  resources: ["checkpointbudgets/finalizers"]
  verbs: ["update"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Whether the controller gets the --tenancy-config file: always under allow-list, and under
tag when allowList is set (then only its roleArns are read: the roles a namespace may use).
*/}}
{{- define "checkpoint-autoscaler.tenancyConfig" -}}
{{- if or (eq .Values.controller.tenancy.mode "allow-list") .Values.controller.tenancy.allowList }}true{{- end }}
{{- end }}
