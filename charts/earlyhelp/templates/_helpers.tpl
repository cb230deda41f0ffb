{{/* vim: set filetype=mustache: */}}

{{/* The chart name, or nameOverride. */}}
{{- define "earlyhelp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The resource name prefix: fullnameOverride, or <release>-<chart> (just <release> when it
contains the chart name). Component names append "-<component>" and are cut at 63 characters. */}}
{{- define "earlyhelp.fullname" -}}
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

{{/* <fullname>-<suffix>, at most 63 characters. Takes (list $ "suffix"). */}}
{{- define "earlyhelp.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "earlyhelp.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "earlyhelp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every resource carries. Takes (dict "root" $ "component" "intake" "role" "server"). */}}
{{- define "earlyhelp.labels" -}}
{{- $root := .root -}}
helm.sh/chart: {{ include "earlyhelp.chart" $root }}
{{ include "earlyhelp.selectorLabels" . }}
app.kubernetes.io/version: {{ include "earlyhelp.imageTag" $root | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: earlyhelp
{{- with .role }}
earlyhelp/role: {{ . }}
{{- end }}
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels that select one component's pods. Takes (dict "root" $ "component" "intake"). */}}
{{- define "earlyhelp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "earlyhelp.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/* Labels that select every earlyhelp server pod of the release (all targets). */}}
{{- define "earlyhelp.serverSelectorLabels" -}}
app.kubernetes.io/name: {{ include "earlyhelp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
earlyhelp/role: server
{{- end -}}

{{/* "annotations:" of a resource's metadata (indented for it, nothing when empty): commonAnnotations
merged with extra ones. Takes (dict "root" $ "extra" map); call as {{- include ... }} after labels. */}}
{{- define "earlyhelp.annotations" -}}
{{- $all := merge (deepCopy (default (dict) .extra)) (deepCopy (default (dict) .root.Values.commonAnnotations)) -}}
{{- if $all }}
  annotations:
    {{- toYaml $all | nindent 4 }}
{{- end }}
{{- end -}}

{{/* The image tag: image.tag, or the chart's appVersion. */}}
{{- define "earlyhelp.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{- define "earlyhelp.image" -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.image.registry -}}
{{- $repo = printf "%s/%s" .Values.image.registry .Values.image.repository -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" $repo (include "earlyhelp.imageTag" .) .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (include "earlyhelp.imageTag" .) -}}
{{- end -}}
{{- end -}}

{{/* The binary's mode: embedded (SQLite and the in-process bus on a volume) for
deploymentMode=embedded, distributed (PostgreSQL and NATS) otherwise. */}}
{{- define "earlyhelp.binaryMode" -}}
{{- ternary "embedded" "distributed" (eq .Values.deploymentMode "embedded") -}}
{{- end -}}

{{/* "true" when Mailpit runs beside earlyhelp: embedded mode, mailCatcher on, no SMTP relay. */}}
{{- define "earlyhelp.mailCatcher" -}}
{{- if and (eq .Values.deploymentMode "embedded") .Values.embedded.mailCatcher.enabled (not .Values.smtp.host) -}}true{{- end -}}
{{- end -}}

{{- define "earlyhelp.mailCatcherImage" -}}
{{- $i := .Values.embedded.mailCatcher.image -}}
{{- $repo := $i.repository -}}
{{- if $i.registry -}}{{- $repo = printf "%s/%s" $i.registry $i.repository -}}{{- end -}}
{{- if $i.digest -}}
{{- printf "%s:%s@%s" $repo $i.tag $i.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo $i.tag -}}
{{- end -}}
{{- end -}}

{{/* The embedded data volume's PersistentVolumeClaim: the existing one, or the chart's. */}}
{{- define "earlyhelp.dataClaimName" -}}
{{- default (include "earlyhelp.componentName" (list . "data")) .Values.embedded.persistence.existingClaim -}}
{{- end -}}

{{- define "earlyhelp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "earlyhelp.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The migration Job's ServiceAccount: a hook-created one (the release's does not exist yet
during pre-install), or the named existing one. */}}
{{- define "earlyhelp.migrationServiceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- include "earlyhelp.componentName" (list . "migrate") -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Deep-merges map .src into map .dst in place: maps merge key by key, anything else
(lists, scalars, false, 0) replaces. Pass a deepCopy as .dst. */}}
{{- define "earlyhelp.mergeInto" -}}
{{- $dst := .dst -}}
{{- range $k, $v := .src -}}
{{- if and (kindIs "map" $v) (kindIs "map" (get $dst $k)) -}}
{{- include "earlyhelp.mergeInto" (dict "dst" (get $dst $k) "src" $v) -}}
{{- else -}}
{{- $_ := set $dst $k $v -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The workloads to deploy, as JSON {"items": [...]}: one per Deployment, each with
name (of its Deployment/Service/HPA/PDB), component (label), target (the --target argument),
public (carries the public HTTP API) and settings (resolved per-workload values). */}}
{{- define "earlyhelp.workloads" -}}
{{- $items := list -}}
{{- if eq .Values.deploymentMode "embedded" -}}
{{- /* One pod, never autoscaled, no disruption budget (a budget cannot keep a single pod up). */ -}}
{{- $settings := merge (dict "autoscaling" (dict "enabled" false) "pdb" (dict "enabled" false) "topologySpreadConstraints" (list)) (deepCopy .Values.embedded) -}}
{{- $items = append $items (dict "name" (include "earlyhelp.fullname" .) "component" "all" "target" "all" "public" true "embedded" true "settings" $settings) -}}
{{- else if eq .Values.deploymentMode "monolithic" -}}
{{- $items = append $items (dict "name" (include "earlyhelp.fullname" .) "component" "all" "target" "all" "public" true "settings" .Values.monolithic) -}}
{{- else -}}
{{- range $target, $entry := .Values.targets -}}
{{- $entry = default (dict) $entry -}}
{{- if or (not (hasKey $entry "enabled")) $entry.enabled -}}
{{- $settings := deepCopy $.Values.targetDefaults -}}
{{- include "earlyhelp.mergeInto" (dict "dst" $settings "src" (omit $entry "enabled")) -}}
{{- $items = append $items (dict "name" (include "earlyhelp.componentName" (list $ $target)) "component" $target "target" $target "public" (eq $target "gateway") "settings" $settings) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "items" $items) -}}
{{- end -}}

{{/* The workload carrying the public HTTP API (gateway, or the monolithic one), as JSON; {} if none. */}}
{{- define "earlyhelp.publicWorkload" -}}
{{- $found := dict -}}
{{- range (include "earlyhelp.workloads" . | fromJson).items -}}
{{- if .public -}}{{- $found = . -}}{{- end -}}
{{- end -}}
{{- toJson $found -}}
{{- end -}}

{{/* Mount points inside the pods. */}}
{{- define "earlyhelp.paths" -}}
{{- dict "dir" "/etc/earlyhelp" "config" "/etc/earlyhelp/config.yaml" "tenants" "/etc/earlyhelp/tenants.yaml" "databaseCa" "/etc/earlyhelp/tls/database-ca.crt" "natsCa" "/etc/earlyhelp/tls/nats-ca.crt" "natsCreds" "/etc/earlyhelp/nats/nats.creds" "data" "/var/lib/earlyhelp" | toJson -}}
{{- end -}}

{{/* The binary's config file (snake_case keys of its Settings). Secrets are never in it: they
come from existing Secrets as EH__* environment variables. */}}
{{- define "earlyhelp.configYaml" -}}
{{- $v := .Values -}}
{{- $p := include "earlyhelp.paths" . | fromJson -}}
{{- $server := dict
  "http_addr" (printf "0.0.0.0:%d" (int $v.server.httpPort))
  "grpc_addr" (printf "0.0.0.0:%d" (int $v.server.grpcPort))
  "shutdown_grace_secs" (int $v.server.shutdownGraceSecs) -}}
{{- $embedded := eq $v.deploymentMode "embedded" -}}
{{- $db := dict "max_connections" (int $v.database.maxConnections) "migrate_on_start" false -}}
{{- if and $v.database.url (not $embedded) -}}{{- $_ := set $db "url" $v.database.url -}}{{- end -}}
{{- if and (not $embedded) (or $v.database.ca.secretName $v.database.ca.configMapName) -}}{{- $_ := set $db "ca_file" $p.databaseCa -}}{{- end -}}
{{- $bus := dict
  "namespace" $v.bus.namespace
  "max_deliver" (int $v.bus.maxDeliver)
  "retry_base_ms" (int64 $v.bus.retryBaseMs)
  "retry_max_ms" (int64 $v.bus.retryMaxMs)
  "ack_wait_secs" (int64 $v.bus.ackWaitSecs)
  "outbox_retention_hours" (int64 $v.bus.outboxRetentionHours) -}}
{{- if not $embedded -}}
{{- $_ := set $bus "nats_url" $v.bus.natsUrl -}}
{{- $_ := set $bus "replicas" (int $v.bus.streamReplicas) -}}
{{- if $v.bus.credentials.secretName -}}{{- $_ := set $bus "credentials_file" $p.natsCreds -}}{{- end -}}
{{- if or $v.bus.ca.secretName $v.bus.ca.configMapName -}}{{- $_ := set $bus "ca_file" $p.natsCa -}}{{- end -}}
{{- end -}}
{{- $telemetry := dict "log_format" $v.telemetry.logFormat "log_level" $v.telemetry.logLevel -}}
{{- $cfg := dict
  "mode" (include "earlyhelp.binaryMode" .)
  "demo" false
  "server" $server
  "database" $db
  "bus" $bus
  "telemetry" $telemetry
  "intake" (dict "max_payload_bytes" (int64 $v.intake.maxPayloadBytes)) -}}
{{- if $v.smtp.host -}}
{{- $smtp := dict "host" $v.smtp.host "port" (int $v.smtp.port) "tls" $v.smtp.tls "timeout_secs" (int64 $v.smtp.timeoutSecs) -}}
{{- if $v.smtp.username -}}{{- $_ := set $smtp "username" $v.smtp.username -}}{{- end -}}
{{- if $v.smtp.from -}}{{- $_ := set $smtp "from" $v.smtp.from -}}{{- end -}}
{{- if $v.smtp.allowPlaintext -}}{{- $_ := set $smtp "allow_plaintext" true -}}{{- end -}}
{{- $_ := set $cfg "smtp" $smtp -}}
{{- else if include "earlyhelp.mailCatcher" . -}}
{{- /* Mailpit in the same pod, reachable only on the pod's loopback: plaintext that never
       leaves the pod, accepted explicitly (the platform refuses plaintext SMTP otherwise). */ -}}
{{- $smtp := dict "host" "127.0.0.1" "port" 1025 "tls" "none" "allow_plaintext" true "timeout_secs" (int64 $v.smtp.timeoutSecs) -}}
{{- if $v.smtp.from -}}{{- $_ := set $smtp "from" $v.smtp.from -}}{{- end -}}
{{- $_ := set $cfg "smtp" $smtp -}}
{{- end -}}
{{- if $embedded -}}{{- $_ := set $cfg "data_dir" $p.data -}}{{- end -}}
{{- if eq $v.deploymentMode "distributed" -}}
{{- /* Allocation and assessment ask consent (its own Service in this mode) what a provider or
       another agency may see. */ -}}
{{- $consentUrl := printf "http://%s:%d" (include "earlyhelp.componentName" (list . "consent")) (int $v.service.grpcPort) -}}
{{- $_ := set $cfg "allocation" (dict "consent_url" $consentUrl) -}}
{{- $_ := set $cfg "assessment" (dict "consent_url" $consentUrl) -}}
{{- /* Records asks each service that holds a family's records for a subject access. */ -}}
{{- $urls := dict -}}
{{- range $s := include "earlyhelp.rightsParticipants" . | fromJsonArray -}}
{{- $_ := set $urls $s (printf "http://%s:%d" (include "earlyhelp.componentName" (list $ $s)) (int $v.service.grpcPort)) -}}
{{- end -}}
{{- $_ := set $cfg "records" (dict "service_urls" $urls) -}}
{{- end -}}
{{- $_ := set $cfg "gateway" (include "earlyhelp.gatewayConfig" . | fromJson) -}}
{{- if $v.tenants -}}
{{- $tenants := deepCopy $v.tenants -}}
{{- /* A council's console client: its secret is a file the gateway pods mount from a Secret. */ -}}
{{- range $id, $t := $tenants -}}
{{- $client := dig "oidc" "client" dict $t -}}
{{- if $client -}}
{{- if hasKey $client "existingSecret" -}}
{{- $_ := unset $client "existingSecret" -}}
{{- $_ := set $client "client_secret_file" (include "earlyhelp.oidcSecretPath" $id) -}}
{{- end -}}
{{- if and (not $client.redirect_url) $v.gateway.console.publicUrl -}}
{{- $_ := set $client "redirect_url" (printf "%s/console/callback" (trimSuffix "/" $v.gateway.console.publicUrl)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "tenants" $tenants -}}
{{- end -}}
{{- if $v.extraConfig -}}{{- include "earlyhelp.mergeInto" (dict "dst" $cfg "src" (deepCopy $v.extraConfig)) -}}{{- end -}}
# Rendered by the earlyhelp Helm chart; edit the release's values, not this file.
# Secrets (database and SMTP passwords) come from environment variables set from Secrets.
{{ toYaml $cfg }}
{{- end -}}

{{/* The services taking part in the family's data rights, whose gRPC Services records asks (its
SERVICES, services/records/src/settings.rs), as a JSON list. */}}
{{- define "earlyhelp.rightsParticipants" -}}
{{- list "intake" "consent" "casework" "assessment" "allocation" "notifications" "reporting" "gateway" | toJson -}}
{{- end -}}

{{/* The gateway's section of config.yaml (JSON): its console, its webhooks (each signing secret
read from a file the gateway pods mount: earlyhelp.webhookSecretPath) and, in distributed mode,
the other services' gRPC Services (empty elsewhere: they run in the same process). The session key
is not here: it comes from a Secret as EH__GATEWAY__CONSOLE__SESSION_KEY. */}}
{{- define "earlyhelp.gatewayConfig" -}}
{{- $v := .Values -}}
{{- $g := $v.gateway -}}
{{- $console := dict
  "enabled" $g.console.enabled
  "assets_dir" $g.console.assetsDir
  "idle_timeout_minutes" (int64 $g.console.idleTimeoutMinutes)
  "absolute_timeout_hours" (int64 $g.console.absoluteTimeoutHours) -}}
{{- with $g.console.publicUrl -}}{{- $_ := set $console "public_url" (trimSuffix "/" .) -}}{{- end -}}
{{- $endpoints := list -}}
{{- range $i, $e := $g.webhooks.endpoints -}}
{{- $endpoints = append $endpoints (dict "tenant" $e.tenant "system" $e.system "url" $e.url "secret_file" (include "earlyhelp.webhookSecretPath" $i)) -}}
{{- end -}}
{{- $webhooks := dict "endpoints" $endpoints "max_attempts" (int64 $g.webhooks.maxAttempts) "timeout_ms" (int64 $g.webhooks.timeoutMs) -}}
{{- $out := dict "console" $console "webhooks" $webhooks -}}
{{- if eq $v.deploymentMode "distributed" -}}
{{- range $s := list "intake" "casework" "consent" "notifications" "allocation" "assessment" -}}
{{- $_ := set $out (printf "%s_url" $s) (printf "http://%s:%d" (include "earlyhelp.componentName" (list $ $s)) (int $v.service.grpcPort)) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Where the gateway pods find webhook endpoint number N's signing secret. Takes the index. */}}
{{- define "earlyhelp.webhookSecretPath" -}}
{{- printf "/etc/earlyhelp/webhooks/endpoint-%d.secret" (int .) -}}
{{- end -}}

{{/* Where the gateway pods find council ID's OIDC client secret. Takes the tenant id. */}}
{{- define "earlyhelp.oidcSecretPath" -}}
{{- printf "/etc/earlyhelp/oidc/%s.client-secret" . -}}
{{- end -}}

{{/* The ports the webhook endpoints' URLs name (443 when one names none), as a JSON list. */}}
{{- define "earlyhelp.webhookPorts" -}}
{{- $ports := list -}}
{{- range .Values.gateway.webhooks.endpoints -}}
{{- $host := (urlParse .url).host -}}
{{- $port := 443 -}}
{{- if regexMatch ":[0-9]+$" $host -}}{{- $port = int (regexFind "[0-9]+$" $host) -}}{{- end -}}
{{- $ports = append $ports $port -}}
{{- end -}}
{{- toJson (uniq $ports) -}}
{{- end -}}

{{/* Environment of the containers that run the gateway (target gateway or all): where the
image keeps the console's assets (the environment wins over the image's own), and the
console's session key from its Secret. */}}
{{- define "earlyhelp.gatewayEnv" -}}
{{- $c := .Values.gateway.console -}}
- name: EH__GATEWAY__CONSOLE__ASSETS_DIR
  value: {{ $c.assetsDir | quote }}
{{- if $c.existingSecret.name }}
- name: EH__GATEWAY__CONSOLE__SESSION_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $c.existingSecret.name }}
      key: {{ $c.existingSecret.sessionKeyKey }}
{{- end }}
{{- end -}}

{{/* Checksum of everything the pods read at start from files: rolls the pods when it changes.
An existing tenants ConfigMap/Secret is looked up at install/upgrade time (empty offline). */}}
{{- define "earlyhelp.configChecksum" -}}
{{- $v := .Values -}}
{{- $external := "" -}}
{{- if $v.existingTenants.configMapName -}}
{{- $external = (lookup "v1" "ConfigMap" .Release.Namespace $v.existingTenants.configMapName).data | toJson -}}
{{- else if $v.existingTenants.secretName -}}
{{- $external = (lookup "v1" "Secret" .Release.Namespace $v.existingTenants.secretName).data | toJson -}}
{{- end -}}
{{- printf "%s\n%s\n%s" (include "earlyhelp.configYaml" .) (toJson $v.existingTenants) $external | sha256sum -}}
{{- end -}}

{{/* --config arguments: the chart's file, then the existing tenants document (later wins). */}}
{{- define "earlyhelp.configArgs" -}}
{{- $p := include "earlyhelp.paths" . | fromJson -}}
- --config
- {{ $p.config }}
{{- if or .Values.existingTenants.configMapName .Values.existingTenants.secretName }}
- --config
- {{ $p.tenants }}
{{- end }}
{{- end -}}

{{/* The owner's connection, for the migration Job alone (`database.migrate_url` and its
password): the pods never get it, so they connect only as the services' role, which owns
nothing. */}}
{{- define "earlyhelp.ownerEnv" -}}
{{- $o := .Values.database.owner -}}
{{- if $o.existingSecret.urlKey }}
- name: EH__DATABASE__MIGRATE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $o.existingSecret.name }}
      key: {{ $o.existingSecret.urlKey }}
{{- else if $o.url }}
- name: EH__DATABASE__MIGRATE_URL
  value: {{ $o.url | quote }}
{{- end }}
{{- if and $o.existingSecret.name $o.existingSecret.passwordKey }}
- name: EH__DATABASE__MIGRATE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $o.existingSecret.name }}
      key: {{ $o.existingSecret.passwordKey }}
{{- end }}
{{- end -}}

{{/* Environment of every earlyhelp container. Takes (dict "root" $ "serviceName" "earlyhelp-intake" "extraEnv" list). */}}
{{- define "earlyhelp.env" -}}
{{- $v := .root.Values -}}
# Also in config.yaml; repeated here because the environment wins over every config file.
- name: EH__MODE
  value: {{ include "earlyhelp.binaryMode" .root }}
- name: EH__DEMO
  value: "false"
- name: EH__DATABASE__MIGRATE_ON_START
  value: "false"
{{- if eq $v.deploymentMode "embedded" }}
- name: EH__DATA_DIR
  value: {{ (include "earlyhelp.paths" .root | fromJson).data | quote }}
{{- end }}
- name: EH__TELEMETRY__SERVICE_NAME
  value: {{ .serviceName | quote }}
{{- if and $v.database.existingSecret.name (ne $v.deploymentMode "embedded") }}
{{- if $v.database.existingSecret.urlKey }}
- name: EH__DATABASE__URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.database.existingSecret.name }}
      key: {{ $v.database.existingSecret.urlKey }}
{{- end }}
{{- if $v.database.existingSecret.passwordKey }}
- name: EH__DATABASE__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.database.existingSecret.name }}
      key: {{ $v.database.existingSecret.passwordKey }}
{{- end }}
{{- end }}
{{- if and $v.smtp.host $v.smtp.existingSecret.name }}
- name: EH__SMTP__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.smtp.existingSecret.name }}
      key: {{ $v.smtp.existingSecret.passwordKey }}
{{- end }}
{{- if $v.audit.existingSecret.name }}
- name: EH__AUDIT__HMAC_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $v.audit.existingSecret.name }}
      key: {{ $v.audit.existingSecret.hmacKeyKey }}
{{- end }}
{{- with $v.telemetry.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with .extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volumes of every earlyhelp pod. Takes (dict "root" $ "configMapName" name "gateway" bool);
"gateway": the pod runs the gateway, which alone is given the webhooks' signing secrets. */}}
{{- define "earlyhelp.volumes" -}}
{{- $v := .root.Values -}}
- name: config
  projected:
    defaultMode: {{ if $v.podSecurityContext.fsGroup }}0440{{ else }}0444{{ end }}
    sources:
      - configMap:
          name: {{ .configMapName }}
          items:
            - key: config.yaml
              path: config.yaml
      {{- if $v.existingTenants.configMapName }}
      - configMap:
          name: {{ $v.existingTenants.configMapName }}
          items:
            - key: {{ $v.existingTenants.key }}
              path: tenants.yaml
      {{- else if $v.existingTenants.secretName }}
      - secret:
          name: {{ $v.existingTenants.secretName }}
          items:
            - key: {{ $v.existingTenants.key }}
              path: tenants.yaml
      {{- end }}
      {{- if ne $v.deploymentMode "embedded" }}
      {{- if $v.database.ca.secretName }}
      - secret:
          name: {{ $v.database.ca.secretName }}
          items:
            - key: {{ $v.database.ca.key }}
              path: tls/database-ca.crt
      {{- else if $v.database.ca.configMapName }}
      - configMap:
          name: {{ $v.database.ca.configMapName }}
          items:
            - key: {{ $v.database.ca.key }}
              path: tls/database-ca.crt
      {{- end }}
      {{- if $v.bus.ca.secretName }}
      - secret:
          name: {{ $v.bus.ca.secretName }}
          items:
            - key: {{ $v.bus.ca.key }}
              path: tls/nats-ca.crt
      {{- else if $v.bus.ca.configMapName }}
      - configMap:
          name: {{ $v.bus.ca.configMapName }}
          items:
            - key: {{ $v.bus.ca.key }}
              path: tls/nats-ca.crt
      {{- end }}
      {{- if $v.bus.credentials.secretName }}
      - secret:
          name: {{ $v.bus.credentials.secretName }}
          items:
            - key: {{ $v.bus.credentials.key }}
              path: nats/nats.creds
      {{- end }}
      {{- end }}
      {{- if .gateway }}
      {{- range $id, $t := $v.tenants }}
      {{- with (dig "oidc" "client" "existingSecret" dict $t) }}
      - secret:
          name: {{ .name }}
          items:
            - key: {{ .key }}
              path: {{ include "earlyhelp.oidcSecretPath" $id | trimPrefix "/etc/earlyhelp/" }}
      {{- end }}
      {{- end }}
      {{- range $i, $e := $v.gateway.webhooks.endpoints }}
      - secret:
          name: {{ $e.existingSecret.name }}
          items:
            - key: {{ $e.existingSecret.key }}
              path: {{ include "earlyhelp.webhookSecretPath" $i | trimPrefix "/etc/earlyhelp/" }}
      {{- end }}
      {{- end }}
- name: tmp
  emptyDir:
    sizeLimit: {{ $v.tmpSizeLimit }}
{{- end -}}

{{- define "earlyhelp.volumeMounts" -}}
- name: config
  mountPath: /etc/earlyhelp
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Pod Security Standard "restricted", pod level. */}}
{{- define "earlyhelp.podSecurityContext" -}}
runAsNonRoot: true
{{- with .Values.podSecurityContext.runAsUser }}
runAsUser: {{ . }}
{{- end }}
{{- with .Values.podSecurityContext.runAsGroup }}
runAsGroup: {{ . }}
{{- end }}
{{- with .Values.podSecurityContext.fsGroup }}
fsGroup: {{ . }}
{{- end }}
{{- if and .Values.podSecurityContext.fsGroup .Values.podSecurityContext.fsGroupChangePolicy }}
fsGroupChangePolicy: {{ .Values.podSecurityContext.fsGroupChangePolicy }}
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Pod Security Standard "restricted", container level. Not configurable on purpose. */}}
{{- define "earlyhelp.containerSecurityContext" -}}
runAsNonRoot: true
{{- with .Values.podSecurityContext.runAsUser }}
runAsUser: {{ . }}
{{- end }}
{{- with .Values.podSecurityContext.runAsGroup }}
runAsGroup: {{ . }}
{{- end }}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Fails the render, naming every problem at once, when values are inconsistent. */}}
{{- define "earlyhelp.validate" -}}
{{- $v := .Values -}}
{{- $errs := list -}}
{{- if eq $v.deploymentMode "embedded" -}}
{{- /* embedded: one process owns the SQLite files; PostgreSQL and NATS are not used */ -}}
{{- if gt (int $v.embedded.replicas) 1 -}}
{{- $errs = append $errs (printf "embedded.replicas is %d: embedded mode keeps every service's data and its event bus in SQLite files on one volume, which one pod alone may open, so it runs 1 replica (0 stops it). To scale, move to deploymentMode=monolithic or distributed, with PostgreSQL (database.url) and NATS (bus.natsUrl)" (int $v.embedded.replicas)) -}}
{{- end -}}
{{- range $key, $set := dict "database.url" $v.database.url "database.existingSecret.urlKey" $v.database.existingSecret.urlKey "database.owner.url" $v.database.owner.url "database.owner.existingSecret.urlKey" $v.database.owner.existingSecret.urlKey "bus.natsUrl" $v.bus.natsUrl "bus.accounts.enabled" $v.bus.accounts.enabled -}}
{{- if $set -}}
{{- $errs = append $errs (printf "%s is set but deploymentMode is embedded (the default: an evaluation on SQLite, which would ignore it): set deploymentMode=monolithic or distributed to run on PostgreSQL and NATS" $key) -}}
{{- end -}}
{{- end -}}
{{- if and $v.embedded.persistence.enabled (not $v.embedded.persistence.existingClaim) (not $v.embedded.persistence.accessModes) -}}
{{- $errs = append $errs "embedded.persistence.accessModes is empty: give at least one (e.g. ReadWriteOnce)" -}}
{{- end -}}
{{- else -}}
{{- /* audit */ -}}
{{- if not $v.audit.existingSecret.name -}}
{{- $errs = append $errs (printf "audit.existingSecret.name is required in %s mode: the Secret holding the audit trail's HMAC key (at least 32 bytes, e.g. kubectl create secret generic earlyhelp-audit --from-literal=hmac-key=\"$(openssl rand -hex 32)\"); the platform refuses to start without it" $v.deploymentMode) -}}
{{- end -}}
{{- /* database */ -}}
{{- if and $v.database.existingSecret.urlKey (not $v.database.existingSecret.name) -}}
{{- $errs = append $errs "database.existingSecret.urlKey is set but database.existingSecret.name is empty" -}}
{{- end -}}
{{- if not (or $v.database.url $v.database.existingSecret.urlKey) -}}
{{- $errs = append $errs (printf "database.url is required in %s mode (e.g. postgres://earlyhelp@pg.example:5432/earlyhelp?sslmode=verify-full), or database.existingSecret.name + database.existingSecret.urlKey; for an evaluation without PostgreSQL and NATS, use deploymentMode=embedded" $v.deploymentMode) -}}
{{- end -}}
{{- with $v.database.url -}}
{{- if not (or (hasPrefix "postgres://" .) (hasPrefix "postgresql://" .)) -}}
{{- $errs = append $errs (printf "database.url must be a postgres:// or postgresql:// URL, got %q" .) -}}
{{- else if contains ":" (urlParse .).userinfo -}}
{{- $errs = append $errs "database.url must not contain a password: put it in an existing Secret (database.existingSecret.name/passwordKey)" -}}
{{- end -}}
{{- end -}}
{{- if and $v.database.ca.secretName $v.database.ca.configMapName -}}
{{- $errs = append $errs "database.ca: set secretName or configMapName, not both" -}}
{{- end -}}
{{- /* the owner: migrations only */ -}}
{{- $o := $v.database.owner -}}
{{- if and $o.existingSecret.urlKey (not $o.existingSecret.name) -}}
{{- $errs = append $errs "database.owner.existingSecret.urlKey is set but database.owner.existingSecret.name is empty" -}}
{{- end -}}
{{- if and $v.migration.enabled (not (or $o.url $o.existingSecret.urlKey)) -}}
{{- $errs = append $errs (printf "database.owner.url is required in %s mode (or database.owner.existingSecret.name + urlKey): the role owning the tables, which the migration Job alone connects as (e.g. postgres://earlyhelp_owner@pg.example:5432/earlyhelp); the pods connect as database.url's role, which must own nothing so that it cannot lift the councils' row-level security" $v.deploymentMode) -}}
{{- end -}}
{{- with $o.url -}}
{{- if not (or (hasPrefix "postgres://" .) (hasPrefix "postgresql://" .)) -}}
{{- $errs = append $errs (printf "database.owner.url must be a postgres:// or postgresql:// URL, got %q" .) -}}
{{- else if contains ":" (urlParse .).userinfo -}}
{{- $errs = append $errs "database.owner.url must not contain a password: put it in an existing Secret (database.owner.existingSecret.name/passwordKey)" -}}
{{- else if and $v.database.url (eq (urlParse .).userinfo (urlParse $v.database.url).userinfo) -}}
{{- $errs = append $errs (printf "database.owner.url and database.url name the same role (%s): the services must connect as a role that owns nothing" (urlParse .).userinfo) -}}
{{- end -}}
{{- end -}}
{{- /* NATS */ -}}
{{- if not $v.bus.natsUrl -}}
{{- $errs = append $errs (printf "bus.natsUrl is required in %s mode (e.g. nats://nats.nats.svc:4222)" $v.deploymentMode) -}}
{{- else -}}
{{- range splitList "," $v.bus.natsUrl -}}
{{- $u := trim . -}}
{{- if not (or (hasPrefix "nats://" $u) (hasPrefix "tls://" $u) (hasPrefix "ws://" $u) (hasPrefix "wss://" $u)) -}}
{{- $errs = append $errs (printf "bus.natsUrl: %q is not a nats://, tls://, ws:// or wss:// URL" $u) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $v.bus.ca.secretName $v.bus.ca.configMapName -}}
{{- $errs = append $errs "bus.ca: set secretName or configMapName, not both" -}}
{{- end -}}
{{- if $v.bus.accounts.enabled -}}
{{- if not $v.bus.accounts.existingSecret -}}
{{- $errs = append $errs "bus.accounts.enabled needs bus.accounts.existingSecret: the Secret with each NATS user's password (keys EH_NATS_PASSWORD_<USER>), which the NATS server and the pods read" -}}
{{- end -}}
{{- if $v.bus.credentials.secretName -}}
{{- $errs = append $errs "bus.accounts.enabled and bus.credentials.secretName: the pods connect either as their service's user of the rendered accounts or with a .creds file, not both" -}}
{{- end -}}
{{- if contains "@" $v.bus.natsUrl -}}
{{- $errs = append $errs "bus.natsUrl carries a user while bus.accounts.enabled: each pod connects as its service's user, which the chart adds; give the URL without one" -}}
{{- end -}}
{{- if not (include "earlyhelp.natsCouncils" . | fromJsonArray) -}}
{{- $errs = append $errs "bus.accounts.enabled but no council: name them in tenants (or bus.accounts.tenants when they come from existingTenants), each gets an account for its upstream systems" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $v.existingTenants.configMapName $v.existingTenants.secretName -}}
{{- $errs = append $errs "existingTenants: set configMapName or secretName, not both" -}}
{{- end -}}
{{- /* mail */ -}}
{{- if $v.smtp.host -}}
{{- if not $v.smtp.from -}}
{{- $errs = append $errs "smtp.from is required when smtp.host is set (e.g. \"Early Help <no-reply@example.gov.uk>\")" -}}
{{- end -}}
{{- if and (eq $v.smtp.tls "none") (not $v.smtp.allowPlaintext) -}}
{{- $errs = append $errs "smtp.tls is none: the email carries personal data; use starttls or tls, or set smtp.allowPlaintext: true to accept plaintext" -}}
{{- end -}}
{{- if and $v.smtp.username (not $v.smtp.existingSecret.name) -}}
{{- $errs = append $errs "smtp.username is set but smtp.existingSecret.name (the password) is empty" -}}
{{- end -}}
{{- end -}}
{{- /* shutdown */ -}}
{{- if le (int $v.terminationGracePeriodSeconds) (add (int $v.server.shutdownGraceSecs) (int $v.preStopSleepSeconds)) -}}
{{- $errs = append $errs (printf "terminationGracePeriodSeconds (%d) must be greater than server.shutdownGraceSecs (%d) + preStopSleepSeconds (%d), or the kubelet kills pods mid-shutdown" (int $v.terminationGracePeriodSeconds) (int $v.server.shutdownGraceSecs) (int $v.preStopSleepSeconds)) -}}
{{- end -}}
{{- /* image */ -}}
{{- if eq (lower (include "earlyhelp.imageTag" .)) "latest" -}}
{{- $errs = append $errs "image.tag must not be \"latest\": pin a release version (empty means the chart's appVersion)" -}}
{{- end -}}
{{- if and (include "earlyhelp.mailCatcher" .) (or (not $v.embedded.mailCatcher.image.tag) (eq (lower $v.embedded.mailCatcher.image.tag) "latest")) -}}
{{- $errs = append $errs "embedded.mailCatcher.image.tag must be a pinned Mailpit release, not empty or \"latest\"" -}}
{{- end -}}
{{- /* extraConfig must not undo what the chart guarantees */ -}}
{{- range $key := list "mode" "demo" "data_dir" "server" -}}
{{- if hasKey $v.extraConfig $key -}}
{{- $errs = append $errs (printf "extraConfig.%s is managed by the chart and cannot be set" $key) -}}
{{- end -}}
{{- end -}}
{{- range $section, $keys := dict "database" (list "url" "password" "migrate_on_start" "ca_file") "smtp" (list "password") "audit" (list "hmac_key") "bus" (list "nats_url" "credentials_file" "ca_file") -}}
{{- $sub := get $v.extraConfig $section -}}
{{- if kindIs "map" $sub -}}
{{- range $key := $keys -}}
{{- if hasKey $sub $key -}}
{{- $errs = append $errs (printf "extraConfig.%s.%s is managed by the chart (or must come from a Secret) and cannot be set" $section $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* workloads */ -}}
{{- $workloads := (include "earlyhelp.workloads" . | fromJson).items -}}
{{- /* mail: the notifications service does not start without a relay outside demo mode */ -}}
{{- $mailer := "" -}}
{{- range $workloads -}}
{{- if or (eq .target "all") (eq .target "notifications") -}}{{- $mailer = ternary "monolithic" (printf "targets.%s" .target) (eq .target "all") -}}{{- end -}}
{{- end -}}
{{- if and $mailer (not $v.smtp.host) (not (include "earlyhelp.mailCatcher" .)) (not (dig "smtp" "host" "" $v.extraConfig)) -}}
{{- if eq $v.deploymentMode "embedded" -}}
{{- $errs = append $errs "smtp.host is required when embedded.mailCatcher.enabled is false: the notifications service does not start without a mail relay (the binary writes mail to files only in demo mode, which the chart never turns on)" -}}
{{- else -}}
{{- $errs = append $errs (printf "smtp.host is required: the notifications service (%s) does not start without a mail relay outside demo mode (e.g. smtp.host=smtp.example.gov.uk, smtp.from=\"Early Help <no-reply@example.gov.uk>\")" $mailer) -}}
{{- end -}}
{{- end -}}
{{- if and (eq $v.deploymentMode "distributed") (not $workloads) -}}
{{- $errs = append $errs "deploymentMode is distributed but no entry of targets is enabled" -}}
{{- end -}}
{{- /* records: every service holding a family's records answers its subject accesses and
       confirms its destructions; without one, every destruction stays incomplete for good. */ -}}
{{- if eq $v.deploymentMode "distributed" -}}
{{- $running := list -}}
{{- range $workloads -}}{{- $running = append $running .target -}}{{- end -}}
{{- if has "records" $running -}}
{{- range $p := include "earlyhelp.rightsParticipants" . | fromJsonArray -}}
{{- if not (has $p $running) -}}
{{- $errs = append $errs (printf "targets.records needs targets.%s enabled: records asks it in every subject access and waits for its confirmation of every destruction" $p) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $v.ingress.enabled (eq $v.deploymentMode "distributed") (not (include "earlyhelp.publicWorkload" . | fromJson)) -}}
{{- $errs = append $errs "ingress.enabled needs the gateway target in distributed mode: set targets.gateway.enabled=true" -}}
{{- end -}}
{{- /* gateway: the console's address and the webhooks */ -}}
{{- with $v.gateway.console.publicUrl -}}
{{- if and (hasPrefix "http://" .) (not (has (regexReplaceAll ":[0-9]+$" (urlParse .).host "") (list "127.0.0.1" "localhost"))) -}}
{{- $errs = append $errs (printf "gateway.console.publicUrl must be https:// (got %q): the console's session cookies are Secure; plain http is accepted only on a loopback address" .) -}}
{{- end -}}
{{- end -}}
{{- range $id, $t := $v.tenants -}}
{{- $client := dig "oidc" "client" dict $t -}}
{{- if and $client (not $client.redirect_url) (not $v.gateway.console.publicUrl) -}}
{{- $errs = append $errs (printf "tenants.%s.oidc.client.redirect_url is required when gateway.console.publicUrl is empty (the console's https://…/console/callback)" $id) -}}
{{- end -}}
{{- end -}}
{{- $hooks := $v.gateway.webhooks.endpoints -}}
{{- if and $hooks (not (include "earlyhelp.publicWorkload" . | fromJson)) -}}
{{- $errs = append $errs "gateway.webhooks.endpoints are set but no pod runs the gateway, which sends them: set targets.gateway.enabled=true" -}}
{{- end -}}
{{- $seen := dict -}}
{{- range $i, $e := $hooks -}}
{{- $id := printf "%s/%s" $e.tenant $e.system -}}
{{- if hasKey $seen $id -}}
{{- $errs = append $errs (printf "gateway.webhooks.endpoints[%d]: a second endpoint for council %s's system %s" $i $e.tenant $e.system) -}}
{{- end -}}
{{- $_ := set $seen $id true -}}
{{- if not (or $v.existingTenants.configMapName $v.existingTenants.secretName) -}}
{{- $t := get $v.tenants $e.tenant -}}
{{- if not $t -}}
{{- $errs = append $errs (printf "gateway.webhooks.endpoints[%d].tenant: no council %q in tenants" $i $e.tenant) -}}
{{- else -}}
{{- $names := list -}}
{{- range (default (list) $t.api_keys) -}}{{- $names = append $names .name -}}{{- end -}}
{{- if not (has $e.system $names) -}}
{{- $errs = append $errs (printf "gateway.webhooks.endpoints[%d].system: council %q has no API key named %q (tenants.%s.api_keys)" $i $e.tenant $e.system $e.tenant) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $xg := get $v.extraConfig "gateway" -}}
{{- if kindIs "map" $xg -}}
{{- if hasKey $xg "webhooks" -}}
{{- $errs = append $errs "extraConfig.gateway.webhooks is managed by the chart (gateway.webhooks: the signing secrets come from Secrets) and cannot be set" -}}
{{- end -}}
{{- $xc := get $xg "console" -}}
{{- if and (kindIs "map" $xc) (or (hasKey $xc "session_key") (hasKey $xc "session_key_file")) -}}
{{- $errs = append $errs "extraConfig.gateway.console.session_key must come from a Secret (gateway.console.existingSecret) and cannot be set" -}}
{{- end -}}
{{- end -}}
{{- $names := dict -}}
{{- range $workloads -}}
{{- $w := . -}}
{{- $s := .settings -}}
{{- $where := ternary "monolithic" (printf "targets.%s" .target) (eq .component "all") -}}
{{- if hasKey $names .name -}}
{{- $errs = append $errs (printf "%s: resource name %q collides with another target's; shorten the release name or fullnameOverride" $where .name) -}}
{{- end -}}
{{- $_ := set $names .name true -}}
{{- if $s.autoscaling.enabled -}}
{{- if gt (int $s.autoscaling.minReplicas) (int $s.autoscaling.maxReplicas) -}}
{{- $errs = append $errs (printf "%s.autoscaling: minReplicas (%d) is greater than maxReplicas (%d)" $where (int $s.autoscaling.minReplicas) (int $s.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- if not (or $s.autoscaling.targetCPUUtilizationPercentage $s.autoscaling.targetMemoryUtilizationPercentage) -}}
{{- $errs = append $errs (printf "%s.autoscaling: set targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" $where) -}}
{{- end -}}
{{- end -}}
{{- if $s.pdb.enabled -}}
{{- $hasMin := not (eq (toString $s.pdb.minAvailable) "") -}}
{{- $hasMax := not (eq (toString $s.pdb.maxUnavailable) "") -}}
{{- if eq $hasMin $hasMax -}}
{{- $errs = append $errs (printf "%s.pdb: set exactly one of minAvailable and maxUnavailable" $where) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $errs -}}
{{- fail (printf "\n\nearlyhelp: the values cannot be installed:\n  - %s\n" (join "\n  - " $errs)) -}}
{{- end -}}
{{- end -}}

{{/* NetworkPolicy ingress rule: the gRPC port, from the helm test pods and from the release's
server pods (every one; or those of one component: "from"). Takes (dict "root" $ "from" ""). */}}
{{- define "earlyhelp.networkPolicy.grpcIngress" -}}
{{- $root := .root -}}
- ports:
    - port: {{ int $root.Values.server.grpcPort }}
      protocol: TCP
  from:
    - podSelector:
        matchLabels:
          {{- if .from }}
          {{- include "earlyhelp.selectorLabels" (dict "root" $root "component" .from) | nindent 10 }}
          {{- else }}
          {{- include "earlyhelp.serverSelectorLabels" $root | nindent 10 }}
          {{- end }}
    - podSelector:
        matchLabels:
          {{- include "earlyhelp.selectorLabels" (dict "root" $root "component" "test") | nindent 10 }}
{{- end -}}

{{/* NetworkPolicy egress rule to DNS. */}}
{{- define "earlyhelp.networkPolicy.dnsEgress" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
  {{- with .Values.networkPolicy.dnsTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* NetworkPolicy egress rule to TCP ports, optionally limited to peers. Takes (dict "ports" list "to" list). */}}
{{- define "earlyhelp.networkPolicy.portsEgress" -}}
- ports:
    {{- range .ports }}
    - port: {{ int . }}
      protocol: TCP
    {{- end }}
  {{- with .to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
