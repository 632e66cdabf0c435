{{/*
Names, labels and image references shared by the templates.
*/}}

{{/* The chart's name, or nameOverride. */}}
{{- define "kubetrade.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The base name of every object: fullnameOverride, else "<release>-<name>", else the
release name alone when it already contains the name (so `helm install kubetrade`
gives "kubetrade", not "kubetrade-kubetrade"). 63 characters: a DNS label.
*/}}
{{- define "kubetrade.fullname" -}}
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

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "kubetrade.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that pick this release's operator pods; never change them (selectors are immutable). */}}
{{- define "kubetrade.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubetrade.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The standard labels of every object, given a component:
  include "kubetrade.labels" (dict "ctx" . "component" "operator")
*/}}
{{- define "kubetrade.labels" -}}
helm.sh/chart: {{ include "kubetrade.chart" .ctx }}
app.kubernetes.io/name: {{ include "kubetrade.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/version: {{ include "kubetrade.version" .ctx | quote }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: kubetrade
{{- end }}

{{/* The version the image runs: its tag, else appVersion (a label value: 63 characters). */}}
{{- define "kubetrade.version" -}}
{{- default .Chart.AppVersion .Values.image.tag | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "kubetrade.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubetrade.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: with serviceAccount.create false, name the operator's existing ServiceAccount" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}: by digest when one is given (the tag
is then left out, so what runs is exactly the digest), else by tag, else by appVersion.
  include "kubetrade.imageRef" (dict "image" .Values.image "ctx" .)
*/}}
{{- define "kubetrade.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/* The operator's (and the test pod's) image. */}}
{{- define "kubetrade.image" -}}
{{- include "kubetrade.imageRef" (dict "image" .Values.image "ctx" .) }}
{{- end }}

{{/* The runners' image: runner.image if it names a repository, else the operator's. */}}
{{- define "kubetrade.runnerImage" -}}
{{- if .Values.runner.image.repository }}
{{- include "kubetrade.imageRef" (dict "image" .Values.runner.image "ctx" .) }}
{{- else }}
{{- include "kubetrade.image" . }}
{{- end }}
{{- end }}

{{/* The labels every runner pod carries (operator/children.py: LABEL_MANAGED_BY, MANAGED_BY). */}}
{{- define "kubetrade.runnerSelectorLabels" -}}
app.kubernetes.io/managed-by: kubetrade-operator
{{- end }}

{{/* The operator's HTTP base URL inside the cluster, through its Service. */}}
{{- define "kubetrade.operatorURL" -}}
{{- printf "http://%s-metrics.%s.svc:%d" (include "kubetrade.fullname" .) .Release.Namespace (int .Values.metrics.port) }}
{{- end }}

{{/* The namespaces the runner NetworkPolicy goes in: networkPolicy.namespaces, else watchNamespaces. */}}
{{- define "kubetrade.networkPolicyNamespaces" -}}
{{- $namespaces := .Values.networkPolicy.namespaces | default .Values.watchNamespaces }}
{{- if not $namespaces }}
{{- fail "networkPolicy.enabled: the operator serves every namespace, so the chart cannot tell where sessions run; list them in networkPolicy.namespaces (or set watchNamespaces)" }}
{{- end }}
{{- toJson $namespaces }}
{{- end }}
