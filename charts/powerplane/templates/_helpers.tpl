{{/* Names, labels and the pieces every workload shares. */}}

{{- define "powerplane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "powerplane.fullname" -}}
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

{{/* Name of one component's objects: (dict "root" $ "component" "redfish"). */}}
{{- define "powerplane.componentName" -}}
{{- printf "%s-%s" (include "powerplane.fullname" .root | trunc 50 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "powerplane.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: stable across upgrades, so never the chart version. */}}
{{- define "powerplane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "powerplane.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "powerplane.labels" -}}
{{ include "powerplane.selectorLabels" . }}
helm.sh/chart: {{ include "powerplane.chart" .root }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: powerplane
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "powerplane.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Container security context of every non-root exporter. */}}
{{- define "powerplane.restrictedContainer" -}}
runAsNonRoot: true
runAsUser: 65534
runAsGroup: 65534
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Container security context of a container that must run as root (uid 0) for file ownership
alone: energy_uj and the powercap limit files are owned by root with mode 0400/0644, and uid 0
passes the owner check without any capability, so every capability is still dropped.
*/}}
{{- define "powerplane.rootContainer" -}}
runAsNonRoot: false
runAsUser: 0
runAsGroup: 0
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "powerplane.podSecurityContext" -}}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "powerplane.controllerServiceAccountName" -}}
{{- if .Values.controller.serviceAccount.create -}}
{{- default (include "powerplane.componentName" (dict "root" . "component" "controller")) .Values.controller.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.controller.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Name of the Secret a component reads its credentials from (its own or an existing one). */}}
{{- define "powerplane.secretName" -}}
{{- $values := index .root.Values .component -}}
{{- if $values.existingSecret -}}
{{- $values.existingSecret -}}
{{- else -}}
{{- include "powerplane.componentName" . -}}
{{- end -}}
{{- end -}}

{{/* Whether a component has credentials to load: an existing Secret or credentials to store. */}}
{{- define "powerplane.hasSecret" -}}
{{- $values := index .root.Values .component -}}
{{- if or $values.existingSecret $values.credentials -}}true{{- end -}}
{{- end -}}

{{/* The in-cluster address of a multi-target exporter's Service, for probe relabelling. */}}
{{- define "powerplane.serviceAddress" -}}
{{- printf "%s.%s.svc:%v" (include "powerplane.componentName" .) .root.Release.Namespace (index .root.Values .component).port -}}
{{- end -}}

{{/* Name of the ConfigMap holding file_sd target files for Prometheus. */}}
{{- define "powerplane.fileSDConfigMap" -}}
{{- include "powerplane.componentName" (dict "root" . "component" "file-sd") -}}
{{- end -}}

{{/*
The PowerCapPolicy API as the CRD under crds/ declares it: "group plural apiVersion" (the
storage version). Read from the CRD itself so that the RBAC rules and the policy objects follow
it; the defaults apply while the CRD file is absent.
*/}}
{{- define "powerplane.policyAPI" -}}
{{- $group := "powerplane.io" -}}
{{- $plural := "powercappolicies" -}}
{{- $version := "v1alpha1" -}}
{{- range $path, $_ := .Files.Glob "crds/*.yaml" -}}
{{- $crd := $.Files.Get $path | fromYaml -}}
{{- if eq (dig "spec" "names" "kind" "" $crd) "PowerCapPolicy" -}}
{{- $group = dig "spec" "group" $group $crd -}}
{{- $plural = dig "spec" "names" "plural" $plural $crd -}}
{{- range (dig "spec" "versions" list $crd) -}}
{{- if .storage -}}{{- $version = .name -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- printf "%s %s %s/%s" $group $plural $group $version -}}
{{- end -}}

{{/*
The config a central exporter runs with, as YAML: its `config` value, or the chart's default
below when that is empty. The multi-target exporters only probe targets their config names or
allows, so every probe target in values (`targets`) is added to the config's `targets` unless
the config already lists it; the market exporter keeps its price store on the data volume unless
the config names another store.
*/}}
{{- define "powerplane.exporterConfig" -}}
{{- $values := index .root.Values .component -}}
{{- $config := deepCopy ($values.config | default dict) -}}
{{- if not $config -}}
{{- $config = include (printf "powerplane.defaultConfig.%s" .component) .root | fromYaml | default dict -}}
{{- end -}}
{{- if and (has .component (list "redfish" "snmp")) $values.targets -}}
{{- $targets := deepCopy (get $config "targets" | default dict) -}}
{{- range $values.targets -}}
{{- if not (hasKey $targets .target) -}}
{{- $entry := dict -}}
{{- if eq $.component "snmp" -}}{{- $_ := set $entry "address" .target -}}{{- end -}}
{{- with .module -}}{{- $_ := set $entry "module" . -}}{{- end -}}
{{- with .auth -}}{{- $_ := set $entry "auth" . -}}{{- end -}}
{{- $_ := set $targets .target $entry -}}
{{- end -}}
{{- end -}}
{{- $_ := set $config "targets" $targets -}}
{{- end -}}
{{- if and (eq .component "market") (not (hasKey $config "store")) -}}
{{- $_ := set $config "store" (dict "path" "/var/lib/powerplane/market") -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/*
Default configs (used while `<component>.config` is empty). Credentials come from the
component's Secret (credentials or existingSecret) as environment variables.
Redfish: one session auth for every BMC; only the BMCs in redfish.targets are probed (no allow
list: a matched address is sent the BMC credentials).
*/}}
{{- define "powerplane.defaultConfig.redfish" -}}
modules:
  default:
    timeout: 45
    collectors: [power, psu, thermal, health, system]
auths:
  bmc:
    method: session
    username: {env: REDFISH_USERNAME}
    password: {env: REDFISH_PASSWORD}
    max_sessions: 2
defaults: {module: default, auth: bmc, scheme: https}
{{- end -}}

{{/* SNMP: SNMPv2c with the community from SNMP_COMMUNITY; profiles detected from sysObjectID. */}}
{{- define "powerplane.defaultConfig.snmp" -}}
auths:
  public_v2:
    version: 2
    community: {env: SNMP_COMMUNITY}
default_auth: public_v2
timeout: 20
{{- end -}}

{{/* Market: DE-LU day-ahead prices from Energy-Charts (no token needed). */}}
{{- define "powerplane.defaultConfig.market" -}}
areas: [DE-LU]
providers:
  - type: energy_charts
store: {path: /var/lib/powerplane/market}
{{- end -}}

{{- define "powerplane.defaultConfig.inventory" -}}
{{- end -}}
