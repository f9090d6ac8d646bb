{{/*
Kafka security: kafka.sasl and kafka.tls become kvstore's typed settings
(kafka.security_protocol, kafka.sasl.*, kafka.tls.*) as KVSTORE_KAFKA__* environment
variables, so that they apply both to the rendered kvstore.toml and to existingConfigSecret.
Secrets reach kvstore as files mounted from the Secrets named in the values, never as values.
*/}}

{{/* Where the Secret of kafka.tls is mounted. */}}
{{- define "kvstore.tlsDir" -}}/etc/kvstore/kafka-tls{{- end }}

{{/* Where the SASL password of kafka.sasl is mounted. */}}
{{- define "kvstore.saslDir" -}}/etc/kvstore/kafka-sasl{{- end }}

{{/* Stops rendering on kafka.sasl and kafka.tls values that cannot work. */}}
{{- define "kvstore.kafkaChecks" -}}
{{- $sasl := .Values.kafka.sasl }}
{{- $tls := .Values.kafka.tls }}
{{- if and $sasl.enabled (not $sasl.existingSecret) }}
{{- fail "kafka.sasl.existingSecret is required when kafka.sasl.enabled is true (the Secret holding the password)" }}
{{- end }}
{{- if and $sasl.enabled (not $sasl.username) (not $sasl.usernameKey) }}
{{- fail "kafka.sasl needs the user name: set kafka.sasl.username, or kafka.sasl.usernameKey to its key in kafka.sasl.existingSecret" }}
{{- end }}
{{- if and $tls.enabled (not $tls.existingSecret) }}
{{- fail "kafka.tls.existingSecret is required when kafka.tls.enabled is true" }}
{{- end }}
{{- if and $tls.enabled (ne (empty $tls.certKey) (empty $tls.keyKey)) }}
{{- fail "kafka.tls.certKey and kafka.tls.keyKey must be given together (mutual TLS), or both left empty" }}
{{- end }}
{{- $kafka := .Values.config.kafka | default dict }}
{{- range $key := list "security_protocol" "sasl" "tls" }}
{{- if hasKey $kafka $key }}
{{- fail (printf "config.kafka.%s is not used: set kafka.sasl and kafka.tls instead (their secrets are mounted as files)" $key) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The KVSTORE_KAFKA__* variables for kafka.sasl and kafka.tls, as a YAML list of env entries. */}}
{{- define "kvstore.kafkaEnv" -}}
{{- $sasl := .Values.kafka.sasl }}
{{- $tls := .Values.kafka.tls }}
{{- $protocol := "" }}
{{- if and $sasl.enabled $tls.enabled }}
{{- $protocol = "sasl_ssl" }}
{{- else if $sasl.enabled }}
{{- $protocol = "sasl_plaintext" }}
{{- else if $tls.enabled }}
{{- $protocol = "ssl" }}
{{- end }}
{{- if $protocol }}
- name: KVSTORE_KAFKA__SECURITY_PROTOCOL
  value: {{ $protocol | quote }}
{{- end }}
{{- if $sasl.enabled }}
- name: KVSTORE_KAFKA__SASL__MECHANISM
  value: {{ $sasl.mechanism | quote }}
{{- if $sasl.username }}
# Quoted, so that kvstore reads it as a string whatever it looks like (a number, true, ...).
- name: KVSTORE_KAFKA__SASL__USERNAME
  value: {{ toJson $sasl.username | quote }}
{{- else }}
- name: KVSTORE_KAFKA__SASL__USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $sasl.existingSecret | quote }}
      key: {{ $sasl.usernameKey | quote }}
{{- end }}
- name: KVSTORE_KAFKA__SASL__PASSWORD__FILE
  value: {{ printf "%s/password" (include "kvstore.saslDir" .) | quote }}
{{- end }}
{{- if $tls.enabled }}
{{- $dir := include "kvstore.tlsDir" . }}
{{- $files := list (list "CA_FILE" $tls.caKey) (list "CERT_FILE" $tls.certKey) (list "KEY_FILE" $tls.keyKey) (list "KEY_PASSWORD__FILE" $tls.keyPasswordKey) }}
{{- range $files }}
{{- if index . 1 }}
- name: KVSTORE_KAFKA__TLS__{{ index . 0 }}
  value: {{ printf "%s/%s" $dir (index . 1) | quote }}
{{- end }}
{{- end }}
- name: KVSTORE_KAFKA__TLS__VERIFY_HOSTNAME
  value: {{ $tls.verifyHostname | quote }}
{{- end }}
{{- end }}

{{/* Volume mounts for kafka.sasl and kafka.tls, as a YAML list. */}}
{{- define "kvstore.kafkaVolumeMounts" -}}
{{- if .Values.kafka.sasl.enabled }}
- name: kafka-sasl
  mountPath: {{ include "kvstore.saslDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-tls
  mountPath: {{ include "kvstore.tlsDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/* Volumes for kafka.sasl (only the password) and kafka.tls (the whole Secret), as a YAML list. */}}
{{- define "kvstore.kafkaVolumes" -}}
{{- $sasl := .Values.kafka.sasl }}
{{- if $sasl.enabled }}
- name: kafka-sasl
  secret:
    secretName: {{ $sasl.existingSecret }}
    items:
      - key: {{ $sasl.passwordKey }}
        path: password
{{- end }}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret }}
{{- end }}
{{- end }}
