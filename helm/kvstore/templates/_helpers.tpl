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

{{/* Where the Secret of tls (kvstore's own HTTPS certificate) is mounted. */}}
{{- define "kvstore.httpsDir" -}}/etc/kvstore/tls{{- end }}

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
{{- with .Values.kafka.librdkafka }}
{{- $_ := set $kafka "librdkafka" (deepCopy .) }}
{{- end }}
{{- $_ := set $config "kafka" $kafka }}
{{- print "# kvstore.toml, rendered by the kvstore Helm chart." }}
{{- include "kvstore.tomlTable" (dict "table" $config "path" list) }}
{{- end }}
