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
{{- if .Values.globalCluster.enabled -}}
{{- $_ := set $seen (toString .Values.globalCluster.port) "globalCluster.port" -}}
{{- end -}}
{{- range $i, $p := .Values.ports.dataPlane -}}
{{- $key := toString $p.port -}}
{{- if hasKey $seen $key -}}
{{- fail (printf "ports.dataPlane[%d].port %d is already used by %s" $i (int $p.port) (get $seen $key)) -}}
{{- end -}}
{{- $_ := set $seen $key (printf "ports.dataPlane[%d]" $i) -}}
{{- end -}}
{{- if .Values.globalCluster.enabled -}}
{{- include "shoal.validateGlobalCluster" . -}}
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

{{/* The global cluster's rules; its port against ports.dataPlane is checked with the others. */}}
{{- define "shoal.validateGlobalCluster" -}}
{{- $g := .Values.globalCluster -}}
{{- if eq (int $g.port) (int .Values.ports.gossip) -}}
{{- fail (printf "globalCluster.port and ports.gossip must differ, both are %d: each cluster needs a gossip port of its own" (int $g.port)) -}}
{{- end -}}
{{- if eq (int $g.port) (int .Values.ports.http) -}}
{{- fail (printf "globalCluster.port and ports.http must differ, both are %d: the node refuses a gossip port equal to the admin port" (int $g.port)) -}}
{{- end -}}
{{- if not (regexMatch "^[a-z0-9][a-z0-9-]{0,63}$" .Values.shoal.clusterName) -}}
{{- fail (printf "shoal.clusterName %q must be 1-64 lower-case letters, digits or '-' (not first) with globalCluster.enabled: it names the regional [[clusters]] entry and its SHOAL_CLUSTERS_<NAME>_* variables" .Values.shoal.clusterName) -}}
{{- end -}}
{{- if eq $g.name .Values.shoal.clusterName -}}
{{- fail (printf "globalCluster.name and shoal.clusterName must differ, both are %q: they name two clusters" $g.name) -}}
{{- end -}}
{{- if and (not .Values.secrets.existingSecret) (not .Values.secrets.globalClusterPsk) -}}
{{- fail "globalCluster.enabled needs the global cluster's key, the same in every region: set secrets.globalClusterPsk, or put global-cluster-psk in secrets.existingSecret (it is never generated)" -}}
{{- end -}}
{{- if and .Values.secrets.globalClusterPsk .Values.secrets.clusterPsk -}}
{{- $regional := splitList "\n" (trim .Values.secrets.clusterPsk) -}}
{{- range splitList "\n" (trim .Values.secrets.globalClusterPsk) -}}
{{- if has (trim .) (without $regional "") -}}
{{- fail "secrets.globalClusterPsk shares a key with secrets.clusterPsk: each cluster needs keys of its own (the node refuses a key in two keyrings)" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (eq $g.discovery.method "dns-srv") (not $g.discovery.srvName) -}}
{{- fail "globalCluster.discovery.method dns-srv needs globalCluster.discovery.srvName (an SRV name listing the global port of every region's nodes)" -}}
{{- end -}}
{{- end -}}

{{/* SHOAL_CLUSTERS_<NAME>_: the prefix of one [[clusters]] entry's variables. */}}
{{- define "shoal.clusterEnv" -}}
{{- printf "SHOAL_CLUSTERS_%s_" (. | upper | replace "-" "_") -}}
{{- end -}}

{{- define "shoal.configName" -}}
{{- printf "%s-config" (include "shoal.fullname" . | trunc 56 | trimSuffix "-") -}}
{{- end -}}

{{/* The node's config with globalCluster.enabled: the environment cannot list clusters, so
both entries, their discovery and [services] are in this file; what differs per pod (the
advertised addresses) stays in the environment. Strings are written with toJson: a JSON string
is a TOML basic string. */}}
{{- define "shoal.clustersToml" -}}
{{- $g := .Values.globalCluster -}}
{{- $names := dict "regional" .Values.shoal.clusterName "global" $g.name -}}
# Rendered by the Helm chart (helm/shoal/templates/configmap.yaml) with globalCluster.enabled.
# Advertised addresses come from SHOAL_CLUSTERS_<NAME>_ADVERTISE (the pod IP), keys from the
# mounted Secret.

[[clusters]]
name = {{ .Values.shoal.clusterName | toJson }}
bind = "0.0.0.0:{{ .Values.ports.gossip }}"
psk_file = "/run/secrets/shoal/cluster-psk"

[clusters.discovery]
{{- if eq .Values.discovery.method "kubernetes" }}
method = "kubernetes"
{{- else }}
method = "dns-srv"
name = {{ include "shoal.srvName" . | toJson }}
{{- end }}
allowed_address_space = {{ .Values.discovery.allowedAddressSpace | toJson }}
{{- if eq .Values.discovery.method "kubernetes" }}

[clusters.discovery.kubernetes]
namespace = {{ .Release.Namespace | toJson }}
label_selector = {{ include "shoal.selectorString" . | toJson }}
{{- end }}

[[clusters]]
name = {{ $g.name | toJson }}
bind = "0.0.0.0:{{ $g.port }}"
psk_file = "/run/secrets/shoal/global-cluster-psk"
probe_interval = {{ $g.probeInterval | toJson }}
probe_timeout = {{ $g.probeTimeout | toJson }}

[clusters.discovery]
method = {{ $g.discovery.method | toJson }}
{{- if eq $g.discovery.method "static" }}
peers = {{ prepend $g.discovery.peers (printf "%s.%s.svc.%s:%d" (include "shoal.headlessName" .) .Release.Namespace .Values.clusterDomain (int $g.port)) | toJson }}
{{- else }}
name = {{ $g.discovery.srvName | toJson }}
{{- end }}
allowed_address_space = {{ $g.discovery.allowedAddressSpace | toJson }}

[services]
counters = {{ get $names $g.services.counters | toJson }}
cache = {{ get $names $g.services.cache | toJson }}
events = {{ get $names $g.services.events | toJson }}
global_counters = {{ get $names $g.services.globalCounters | toJson }}
{{- end -}}
