{{/*
Names are fixed, as in config/: the manager looks its webhook configurations up by these names
(webhooks.MutatingConfigName, ValidatingConfigName), so one release per cluster.
*/}}

{{- define "splice.labels" -}}
app.kubernetes.io/name: splice
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The manager pods' labels: config/webhook/service.yaml selects on these two. */}}
{{- define "splice.managerSelector" -}}
app.kubernetes.io/name: splice
app.kubernetes.io/component: manager
{{- end }}

{{- define "splice.image" -}}
{{- if .digest -}}
{{ .repository }}@{{ .digest }}
{{- else -}}
{{ .repository }}:{{ .tag }}
{{- end -}}
{{- end }}

{{- define "splice.certManager" -}}
{{- eq .Values.webhook.certificates.mode "cert-manager" -}}
{{- end }}

{{/* A webhook's clientConfig: the webhook Service in namespace .ns, at .path. */}}
{{- define "splice.webhookClient" -}}
clientConfig:
  service:
    name: splice-webhook-service
    namespace: {{ .ns }}
    path: {{ .path }}
{{- end }}
