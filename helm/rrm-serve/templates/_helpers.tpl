{{/* Names, labels and the pieces every pod shares. */}}

{{- define "rrm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rrm.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's objects: "<fullname>-<component>". Call with (list $ "gateway"). */}}
{{- define "rrm.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "rrm.fullname" $root | trunc 50 | trimSuffix "-") (index . 1) -}}
{{- end -}}

{{- define "rrm.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component. Call with (list $ "gateway"). */}}
{{- define "rrm.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "rrm.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* All labels of one component's objects. Call with (list $ "gateway"). */}}
{{- define "rrm.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "rrm.chart" $root }}
{{ include "rrm.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: rrm-serve
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "rrm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "rrm.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* "repository:tag", the tag defaulting to the chart's appVersion. Call with (list $ .Values.gateway.image). */}}
{{- define "rrm.image" -}}
{{- $root := index . 0 -}}
{{- $image := index . 1 -}}
{{- include "rrm.imageRef" (list $root $image (default $root.Chart.AppVersion $image.tag)) -}}
{{- end -}}

{{/* "registry/repository@digest" or ":tag". global.imageRegistry replaces the repository's registry
     (its first part when that has a dot or a port, or is localhost), else is put in front.
     Call with (list $ $image $defaultTag). */}}
{{- define "rrm.imageRef" -}}
{{- $root := index . 0 -}}
{{- $image := index . 1 -}}
{{- $repository := $image.repository -}}
{{- with $root.Values.global.imageRegistry -}}
{{- $parts := splitList "/" $repository -}}
{{- $first := first $parts -}}
{{- if and (gt (len $parts) 1) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) -}}
{{- $parts = rest $parts -}}
{{- end -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) (join "/" $parts) -}}
{{- end -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (index . 2) -}}
{{- end -}}
{{- end -}}

{{/* ---- Redis connection ---- */}}

{{- define "rrm.redis.host" -}}
{{- if .Values.redis.enabled -}}
{{- printf "%s.%s.svc" (include "rrm.componentName" (list . "redis")) .Release.Namespace -}}
{{- else -}}
{{- required "externalRedis.host is required when redis.enabled is false" .Values.externalRedis.host -}}
{{- end -}}
{{- end -}}

{{- define "rrm.redis.port" -}}
{{- if .Values.redis.enabled -}}{{ .Values.redis.port }}{{- else -}}{{ .Values.externalRedis.port }}{{- end -}}
{{- end -}}

{{- define "rrm.redis.database" -}}
{{- if .Values.redis.enabled -}}0{{- else -}}{{ .Values.externalRedis.database }}{{- end -}}
{{- end -}}

{{- define "rrm.redis.tls" -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.tls -}}true{{- else -}}false{{- end -}}
{{- end -}}

{{- define "rrm.redis.secretName" -}}
{{- if .Values.redis.enabled -}}
{{- default (include "rrm.componentName" (list . "redis")) .Values.redis.auth.existingSecret -}}
{{- else -}}
{{- required "externalRedis.existingSecret is required when redis.enabled is false" .Values.externalRedis.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "rrm.redis.passwordKey" -}}
{{- if .Values.redis.enabled -}}{{ .Values.redis.auth.passwordKey }}{{- else -}}{{ .Values.externalRedis.passwordKey }}{{- end -}}
{{- end -}}

{{- define "rrm.redis.usernameKey" -}}
{{- if not .Values.redis.enabled -}}{{ .Values.externalRedis.usernameKey }}{{- end -}}
{{- end -}}

{{/*
Queue env: the password comes from the Secret key as RRM_QUEUE__REDIS_PASSWORD, beside the URL,
not in it (any characters; no secret is ever written into a manifest). An ACL user name is
placed in the URL with Kubernetes' dependent-variable syntax $(VAR).
*/}}
{{- define "rrm.queueEnv" -}}
- name: RRM_QUEUE__KIND
  value: redis
{{- if include "rrm.redis.usernameKey" . }}
- name: REDIS_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ include "rrm.redis.secretName" . }}
      key: {{ include "rrm.redis.usernameKey" . }}
{{- end }}
- name: RRM_QUEUE__REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "rrm.redis.secretName" . }}
      key: {{ include "rrm.redis.passwordKey" . }}
- name: RRM_QUEUE__REDIS_URL
  value: {{ printf "%s://%s%s:%s/%s" (ternary "rediss" "redis" (eq (include "rrm.redis.tls" .) "true")) (ternary "$(REDIS_USERNAME)@" "" (ne (include "rrm.redis.usernameKey" .) "")) (include "rrm.redis.host" .) (include "rrm.redis.port" .) (include "rrm.redis.database" .) | quote }}
{{- with .Values.verdictCache }}
{{- if .enabled }}
{{- if .existingSecret }}
- name: RRM_QUEUE__VERDICT_CACHE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .passwordKey }}
{{- end }}
- name: RRM_QUEUE__VERDICT_CACHE_URL
  value: {{ printf "%s://%s:%v/%v" (ternary "rediss" "redis" .tls) (required "verdictCache.host is required when verdictCache.enabled is true (the cache must not share the queue's noeviction Redis)" .host) .port .database | quote }}
{{- else }}
- name: RRM_QUEUE__VERDICT_CACHE
  value: "false"
{{- end }}
{{- end }}
{{- end -}}

{{/* Engine settings both components read (the gateway needs the tokenizer and context length). */}}
{{- define "rrm.engineEnv" -}}
- name: RRM_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: RRM_ENGINE__MODEL
  value: {{ required "engine.model is required" .Values.engine.model | quote }}
{{- with .Values.engine.servedModelName }}
- name: RRM_ENGINE__SERVED_MODEL_NAME
  value: {{ . | quote }}
{{- end }}
- name: RRM_ENGINE__MAX_MODEL_LEN
  value: {{ .Values.engine.maxModelLen | quote }}
{{- with .Values.huggingface.existingSecret }}
- name: HF_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.huggingface.tokenKey }}
{{- end }}
{{- if .Values.huggingface.offline }}
- name: HF_HUB_OFFLINE
  value: "1"
{{- end }}
{{- end -}}

{{/* ---- Security ---- */}}

{{- define "rrm.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.security.runAsUser }}
runAsGroup: {{ .Values.security.runAsGroup }}
fsGroup: {{ .Values.security.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container security context. Call with (dict "readOnly" true "uid" 10001). */}}
{{- define "rrm.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: {{ .readOnly }}
capabilities:
  drop:
    - ALL
{{- end -}}

{{/* A probe on the metrics port (plain HTTP in every mode): /metrics = alive, /healthz = ready. */}}
{{- define "rrm.httpProbe" -}}
httpGet:
  path: {{ .path }}
  port: metrics
{{- end -}}

{{/* ---- Gateway TLS and authentication ---- */}}

{{/* The kubernetes.io/tls Secret the gateway mounts: the named one, else the one cert-manager writes. */}}
{{- define "rrm.gateway.tlsSecretName" -}}
{{- default (include "rrm.componentName" (list . "gateway-tls")) .Values.gateway.tls.secretName -}}
{{- end -}}

{{/* Refusals: TLS needs a certificate source; mTLS needs TLS; cert-manager needs its CRD and an issuer. */}}
{{- define "rrm.gateway.securityChecks" -}}
{{- $tls := .Values.gateway.tls -}}
{{- if $tls.enabled -}}
{{- if not (or $tls.secretName $tls.certManager.enabled) -}}
{{- fail "gateway.tls.enabled needs gateway.tls.secretName (an existing kubernetes.io/tls Secret) or gateway.tls.certManager.enabled" -}}
{{- end -}}
{{- if $tls.certManager.enabled -}}
{{- if not (.Capabilities.APIVersions.Has "cert-manager.io/v1") -}}
{{- fail "gateway.tls.certManager.enabled: the cluster has no cert-manager.io/v1 API (install cert-manager, or give gateway.tls.secretName)" -}}
{{- end -}}
{{- if not $tls.certManager.issuerRef.name -}}
{{- fail "gateway.tls.certManager.issuerRef.name is required with gateway.tls.certManager.enabled" -}}
{{- end -}}
{{- end -}}
{{- else if or $tls.clientCA.secretName $tls.certManager.enabled -}}
{{- fail "gateway.tls.clientCA and gateway.tls.certManager need gateway.tls.enabled" -}}
{{- end -}}
{{- end -}}
