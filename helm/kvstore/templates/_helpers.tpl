{{/* Chart name, shortened to the 63 characters a label value allows. */}}
{{- define "kvstore.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full resource name: the release name, plus the chart name unless it already contains it. */}}
{{- define "kvstore.fullname" -}}
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

{{- define "kvstore.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kvstore.labels" -}}
helm.sh/chart: {{ include "kvstore.chart" . }}
{{ include "kvstore.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "kvstore.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kvstore.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kvstore.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kvstore.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Where the Secret of kafka.tls is mounted. */}}
{{- define "kvstore.tlsDir" -}}/etc/kvstore/kafka-tls{{- end }}

{{/* Where the Secret of tls (kvstore's own HTTPS certificate) is mounted. */}}
{{- define "kvstore.httpsDir" -}}/etc/kvstore/tls{{- end }}

{{/*
The librdkafka properties the chart derives from kafka.sasl and kafka.tls; kafka.librdkafka
is applied over them. Returned as YAML.
*/}}
{{- define "kvstore.librdkafka" -}}
{{- $sasl := .Values.kafka.sasl }}
{{- $tls := .Values.kafka.tls }}
{{- $props := dict }}
{{- if and $sasl.enabled $tls.enabled }}
{{- $_ := set $props "security.protocol" "SASL_SSL" }}
{{- else if $sasl.enabled }}
{{- $_ := set $props "security.protocol" "SASL_PLAINTEXT" }}
{{- else if $tls.enabled }}
{{- $_ := set $props "security.protocol" "SSL" }}
{{- end }}
{{- if $sasl.enabled }}
{{- $_ := set $props "sasl.mechanism" $sasl.mechanism }}
{{- end }}
{{- if $tls.enabled }}
{{- $dir := include "kvstore.tlsDir" . }}
{{- if $tls.caKey }}
{{- $_ := set $props "ssl.ca.location" (printf "%s/%s" $dir $tls.caKey) }}
{{- end }}
{{- if $tls.certKey }}
{{- $_ := set $props "ssl.certificate.location" (printf "%s/%s" $dir $tls.certKey) }}
{{- end }}
{{- if $tls.keyKey }}
{{- $_ := set $props "ssl.key.location" (printf "%s/%s" $dir $tls.keyKey) }}
{{- end }}
{{- end }}
{{- toYaml (mergeOverwrite $props (deepCopy .Values.kafka.librdkafka)) }}
{{- end }}

{{/*
Secret librdkafka properties read from Secrets: a list of {property, env, secret, key}. Each
becomes an environment variable, and all of them one KVSTORE_KAFKA__LIBRDKAFKA map.
*/}}
{{- define "kvstore.secretProperties" -}}
{{- $list := list }}
{{- $sasl := .Values.kafka.sasl }}
{{- $tls := .Values.kafka.tls }}
{{- if $sasl.enabled }}
{{- $list = append $list (dict "property" "sasl.username" "env" "KAFKA_SASL_USERNAME" "secret" $sasl.existingSecret "key" $sasl.usernameKey) }}
{{- $list = append $list (dict "property" "sasl.password" "env" "KAFKA_SASL_PASSWORD" "secret" $sasl.existingSecret "key" $sasl.passwordKey) }}
{{- end }}
{{- if and $tls.enabled $tls.keyPasswordKey }}
{{- $list = append $list (dict "property" "ssl.key.password" "env" "KAFKA_SSL_KEY_PASSWORD" "secret" $tls.existingSecret "key" $tls.keyPasswordKey) }}
{{- end }}
{{- toYaml $list }}
{{- end }}

{{/* A TOML key: bare when it can be, else a quoted string. */}}
{{- define "kvstore.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{/* A TOML value from a string, bool, number or list of them. */}}
{{- define "kvstore.tomlValue" -}}
{{- if kindIs "string" . }}{{ toJson . }}
{{- else if kindIs "bool" . }}{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "float32" .) }}
{{- if eq (float64 .) (floor .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else if or (kindIs "int" .) (kindIs "int64" .) (kindIs "int32" .) (kindIs "uint64" .) }}{{ . }}
{{- else if kindIs "slice" . }}[{{ range $i, $v := . }}{{ if $i }}, {{ end }}{{ include "kvstore.tomlValue" $v }}{{ end }}]
{{- else }}{{ fail (printf "kvstore.toml cannot hold the value %v (%s)" . (kindOf .)) }}
{{- end }}
{{- end }}

{{/*
A TOML table: its plain keys, then each sub-table under its own header. Takes
{"table": dict, "path": list of header parts}. Null values are left out.
*/}}
{{- define "kvstore.tomlTable" -}}
{{- $table := .table }}
{{- $path := .path }}
{{- range $key := keys $table | sortAlpha }}
{{- $value := get $table $key }}
{{- if and (not (kindIs "map" $value)) (not (kindIs "invalid" $value)) }}
{{ include "kvstore.tomlKey" $key }} = {{ include "kvstore.tomlValue" $value }}
{{- end }}
{{- end }}
{{- range $key := keys $table | sortAlpha }}
{{- $value := get $table $key }}
{{- if kindIs "map" $value }}
{{- $sub := append $path (include "kvstore.tomlKey" $key) }}
{{- $plain := list }}
{{- range $v := values $value }}
{{- if and (not (kindIs "map" $v)) (not (kindIs "invalid" $v)) }}
{{- $plain = append $plain $v }}
{{- end }}
{{- end }}
{{- /* A table with only sub-tables needs no header of its own. */}}
{{- if $plain }}

[{{ join "." $sub }}]
{{- end }}
{{- include "kvstore.tomlTable" (dict "table" $value "path" $sub) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The whole kvstore.toml. */}}
{{- define "kvstore.config" -}}
{{- $config := deepCopy .Values.config }}
{{- if hasKey $config "listen" }}
{{- fail "config.listen is not used: set containerPort instead" }}
{{- end }}
{{- if hasKey $config "brokers" }}
{{- fail "config.brokers is not used: set kafka.brokers instead" }}
{{- end }}
{{- $kafka := get $config "kafka" | default dict }}
{{- if hasKey $kafka "librdkafka" }}
{{- fail "config.kafka.librdkafka is not used: set kafka.librdkafka instead" }}
{{- end }}
{{- $_ := set $config "brokers" (required "kafka.brokers must name the Kafka bootstrap servers, host:port,..." .Values.kafka.brokers) }}
{{- $librdkafka := include "kvstore.librdkafka" . | fromYaml }}
{{- if $librdkafka }}
{{- $_ := set $kafka "librdkafka" $librdkafka }}
{{- end }}
{{- $_ := set $config "kafka" $kafka }}
{{- print "# kvstore.toml, rendered by the kvstore Helm chart." }}
{{- include "kvstore.tomlTable" (dict "table" $config "path" list) }}
{{- end }}
