{{/*
Bearer tokens: the auth values become KVSTORE_AUTH__* environment variables. Each token's
secret is mounted read-only from its Secret (one projected volume, a file per token) and named
by `secret = { file = ... }` in KVSTORE_AUTH__TOKENS, so that no token is in a ConfigMap, a
values file or an environment variable, and a rotated Secret reaches the file kvstore reads
again on SIGHUP.
*/}}

{{/* Where the token files are mounted, one per token, named after it. */}}
{{- define "kvstore.tokensDir" -}}/etc/kvstore/auth-tokens{{- end }}

{{/* "true" when /metrics answers without a token, else empty. */}}
{{- define "kvstore.metricsOpen" -}}
{{- if or (not .Values.auth.enabled) .Values.auth.openMetrics }}true{{ end }}
{{- end }}

{{/* Stops rendering on auth values kvstore would refuse, or that leave /metrics unscraped. */}}
{{- define "kvstore.authChecks" -}}
{{- $auth := .Values.auth }}
{{- if hasKey .Values.config "auth" }}
{{- fail "config.auth is not used: set auth.enabled, auth.openMetrics, auth.openDocs and auth.tokens instead" }}
{{- end }}
{{- if and $auth.enabled (not $auth.tokens) }}
{{- fail "auth.enabled is true but auth.tokens is empty, so kvstore would refuse to start: add a token, e.g. --set auth.tokens[0].name=app,auth.tokens[0].existingSecret=kvstore-token,auth.tokens[0].scopes={read:*,write:*} (the Secret's key `token` holds it, 16 characters or more), or set auth.enabled=false to serve without authentication" }}
{{- end }}
{{- $names := dict }}
{{- range $auth.tokens }}
{{- if hasKey $names .name }}
{{- fail (printf "auth.tokens: two tokens are named %q" .name) }}
{{- end }}
{{- $_ := set $names .name true }}
{{- end }}
{{- $monitor := .Values.metrics.serviceMonitor }}
{{- if and $monitor.enabled (not (include "kvstore.metricsOpen" .)) (not $monitor.bearerTokenSecret.name) }}
{{- fail "metrics.serviceMonitor.bearerTokenSecret.name is required: /metrics needs a token with the metrics scope while auth.enabled is true and auth.openMetrics is false. Name a Secret in the ServiceMonitor's namespace holding such a token, or set auth.openMetrics=true" }}
{{- end }}
{{- end }}

{{/* The KVSTORE_AUTH__* variables, as a YAML list of env entries. */}}
{{- define "kvstore.authEnv" -}}
{{- $auth := .Values.auth }}
- name: KVSTORE_AUTH__ENABLED
  value: {{ $auth.enabled | quote }}
- name: KVSTORE_AUTH__OPEN_METRICS
  value: {{ $auth.openMetrics | quote }}
- name: KVSTORE_AUTH__OPEN_DOCS
  value: {{ $auth.openDocs | quote }}
{{- if and $auth.enabled $auth.tokens }}
{{- $dir := include "kvstore.tokensDir" . }}
{{- $tokens := list }}
{{- range $auth.tokens }}
{{- $scopes := list }}
{{- range .scopes }}
{{- $scopes = append $scopes (toJson .) }}
{{- end }}
{{- $tokens = append $tokens (printf "{name=%s, secret={file=%s}, scopes=[%s]}" (toJson .name) (toJson (printf "%s/%s" $dir .name)) (join ", " $scopes)) }}
{{- end }}
# One line, as kvstore reads it; the secrets are files of the auth-tokens volume. Names and
# scopes hold no quote (values.schema.json), so single quotes need no escaping.
- name: KVSTORE_AUTH__TOKENS
  value: {{ printf "[%s]" (join ", " $tokens) | squote }}
{{- end }}
{{- end }}

{{/* The volume mount of the token files, as a YAML list. */}}
{{- define "kvstore.authVolumeMounts" -}}
{{- if and .Values.auth.enabled .Values.auth.tokens }}
- name: auth-tokens
  mountPath: {{ include "kvstore.tokensDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/* One projected volume with a file per token, taken from its Secret, as a YAML list. */}}
{{- define "kvstore.authVolumes" -}}
{{- if and .Values.auth.enabled .Values.auth.tokens }}
- name: auth-tokens
  projected:
    sources:
      {{- range .Values.auth.tokens }}
      - secret:
          name: {{ .existingSecret | quote }}
          items:
            - key: {{ .key | default "token" | quote }}
              path: {{ .name | quote }}
      {{- end }}
{{- end }}
{{- end }}
