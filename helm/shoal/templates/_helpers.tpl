{{/* Names are capped at 63 characters: Kubernetes refuses longer DNS labels. */}}

{{- define "shoal.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "shoal.fullname" -}}
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

{{/* The headless Service gets its own short suffix; the SRV name is built from it. */}}
{{- define "shoal.headlessName" -}}
{{- printf "%s-gossip" (include "shoal.fullname" . | trunc 56 | trimSuffix "-") -}}
{{- end -}}

{{- define "shoal.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels never change after install (selectors are immutable), so they hold only
the name and the instance. */}}
{{- define "shoal.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shoal.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The same labels as a label selector string, for Kubernetes discovery. */}}
{{- define "shoal.selectorString" -}}
{{- printf "app.kubernetes.io/name=%s,app.kubernetes.io/instance=%s" (include "shoal.name" .) .Release.Name -}}
{{- end -}}

{{- define "shoal.labels" -}}
helm.sh/chart: {{ include "shoal.chart" . }}
{{ include "shoal.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "shoal.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "shoal.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "shoal.secretName" -}}
{{- default (include "shoal.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "shoal.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The kubelet's SIGKILL must come after the preStop sleep and the node's own drain
deadline, or in-flight requests are cut and the node never says goodbye to the cluster. */}}
{{- define "shoal.terminationGracePeriodSeconds" -}}
{{- $s := .Values.shoal -}}
{{- $min := add $s.shutdownGrace $s.preStopSleep -}}
{{- if kindIs "invalid" $s.terminationGracePeriodSeconds -}}
{{- add $min 10 -}}
{{- else if le (int $s.terminationGracePeriodSeconds) (int $min) -}}
{{- fail (printf "shoal.terminationGracePeriodSeconds (%d) must be greater than shoal.shutdownGrace + shoal.preStopSleep (%d), or the node is killed before it drains" (int $s.terminationGracePeriodSeconds) (int $min)) -}}
{{- else -}}
{{- $s.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{- define "shoal.srvName" -}}
{{- printf "_gossip._tcp.%s.%s.svc.%s" (include "shoal.headlessName" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/* Cross-field rules the schema cannot express; each failure names the keys to fix. */}}
{{- define "shoal.validate" -}}
{{- if and (not .Values.secrets.existingSecret) (not .Values.secrets.databaseUrl) -}}
{{- fail "secrets.databaseUrl is required (postgres://USER:PASSWORD@HOST:PORT/DB), or set secrets.existingSecret to a Secret holding cluster-psk, secrets-key and database-url" -}}
{{- end -}}
{{- if eq .Values.ports.http .Values.ports.gossip -}}
{{- fail (printf "ports.http and ports.gossip must differ, both are %d" (int .Values.ports.http)) -}}
{{- end -}}
{{- $seen := dict (toString .Values.ports.http) "ports.http" (toString .Values.ports.gossip) "ports.gossip" -}}
{{- range $i, $p := .Values.ports.dataPlane -}}
{{- $key := toString $p.port -}}
{{- if hasKey $seen $key -}}
{{- fail (printf "ports.dataPlane[%d].port %d is already used by %s" $i (int $p.port) (get $seen $key)) -}}
{{- end -}}
{{- $_ := set $seen $key (printf "ports.dataPlane[%d]" $i) -}}
{{- end -}}
{{- if and .Values.persistence.enabled (ne .Values.workload.kind "StatefulSet") -}}
{{- fail "persistence.enabled needs workload.kind: StatefulSet (a Deployment's pods would share one claim)" -}}
{{- end -}}
{{- if and (eq .Values.discovery.method "kubernetes") (not .Values.rbac.create) (not .Values.serviceAccount.name) -}}
{{- fail "discovery.method kubernetes needs API access: keep rbac.create true, or name a serviceAccount.name that already has get/list/watch on pods" -}}
{{- end -}}
{{- if and (eq .Values.discovery.method "kubernetes") .Values.rbac.create (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) -}}
{{- fail "rbac.create would grant pod access to the namespace's default ServiceAccount: set serviceAccount.create true or name a dedicated serviceAccount.name" -}}
{{- end -}}
{{- end -}}
