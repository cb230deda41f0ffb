{{/* The NATS accounts (bus.accounts): expanded from the rights table files/nats-rights.json,
which `earlyhelp nats-rights` generates from the event catalogue (a Rust test fails when it is
stale). The text is exactly what `earlyhelp nats-config` prints for the same namespace and
councils (charts/tests/test_nats.py compares them and has nats-server check the file). */}}

{{/* A name as a stream or account name token: upper case, `_` for anything not a letter or digit. */}}
{{- define "earlyhelp.natsToken" -}}
{{- regexReplaceAll "[^A-Za-z0-9]" . "_" | upper -}}
{{- end -}}

{{/* The environment variable holding a NATS user's password. */}}
{{- define "earlyhelp.natsPasswordVar" -}}
{{- printf "EH_NATS_PASSWORD_%s" (include "earlyhelp.natsToken" .) -}}
{{- end -}}

{{/* The councils given an account: the keys of `tenants` and bus.accounts.tenants, sorted, as JSON. */}}
{{- define "earlyhelp.natsCouncils" -}}
{{- concat (keys (default (dict) .Values.tenants)) (default (list) .Values.bus.accounts.tenants) | uniq | sortAlpha | toJson -}}
{{- end -}}

{{/* "true" when an item of the table is per council: a string naming {tenant}/{TENANT}, or a
map one of whose own strings does. */}}
{{- define "earlyhelp.natsPerCouncil" -}}
{{- $vals := list . -}}
{{- if kindIs "map" . -}}{{- $vals = values . -}}{{- end -}}
{{- $found := false -}}
{{- range $vals -}}
{{- if and (kindIs "string" .) (or (contains "{tenant}" .) (contains "{TENANT}" .)) -}}{{- $found = true -}}{{- end -}}
{{- end -}}
{{- if $found -}}true{{- end -}}
{{- end -}}

{{/* An item with the placeholders replaced, as JSON. Takes (list item ns tenant); tenant "" keeps
{tenant}/{TENANT} for the lists inside it to expand. */}}
{{- define "earlyhelp.natsSubstitute" -}}
{{- $ns := index . 1 -}}{{- $t := index . 2 -}}
{{- $s := toJson (index . 0) | replace "{ns}" $ns | replace "{NS}" (include "earlyhelp.natsToken" $ns) -}}
{{- if $t -}}{{- $s = $s | replace "{tenant}" $t | replace "{TENANT}" (include "earlyhelp.natsToken" $t) -}}{{- end -}}
{{- $s -}}
{{- end -}}

{{/* A list of the table expanded, as JSON: in a council's item (tenant set) every item is that
council's; otherwise the items not per council once, then the per-council ones for each council
in turn. Takes (dict "items" list "ns" ns "tenant" t "councils" list). */}}
{{- define "earlyhelp.natsExpand" -}}
{{- $out := list -}}
{{- range $i := .items -}}
{{- if or $.tenant (not (include "earlyhelp.natsPerCouncil" $i)) -}}
{{- $out = append $out (include "earlyhelp.natsSubstitute" (list $i $.ns $.tenant)) -}}
{{- end -}}
{{- end -}}
{{- if not .tenant -}}
{{- range $c := .councils -}}
{{- range $i := $.items -}}
{{- if include "earlyhelp.natsPerCouncil" $i -}}
{{- $out = append $out (include "earlyhelp.natsSubstitute" (list $i $.ns $c)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- printf "[%s]" (join "," $out) -}}
{{- end -}}

{{/* A list of subjects, expanded, sorted and quoted: ["a", "b"]. Takes the natsExpand dict. */}}
{{- define "earlyhelp.natsSubjects" -}}
{{- $quoted := list -}}
{{- range include "earlyhelp.natsExpand" . | fromJsonArray | sortAlpha -}}{{- $quoted = append $quoted (quote .) -}}{{- end -}}
{{- printf "[%s]" (join ", " $quoted) -}}
{{- end -}}

{{/* One account, expanded (its name already substituted), as lines. Takes (dict "account" a
"ns" ns "tenant" t "councils" list). */}}
{{- define "earlyhelp.natsAccount" -}}
{{- $a := .account -}}
{{- $ctx := dict "ns" .ns "tenant" .tenant "councils" .councils -}}
{{- $lines := list (printf "  %s {" $a.name) -}}
{{- if $a.jetstream -}}{{- $lines = append $lines "    jetstream: enabled" -}}{{- end -}}
{{- $lines = append $lines "    users: [" -}}
{{- range $u := include "earlyhelp.natsExpand" (merge (dict "items" $a.users) $ctx) | fromJsonArray -}}
{{- $lines = append $lines (printf "      { user: %s, password: $%s, permissions: {" (quote $u.user) (include "earlyhelp.natsPasswordVar" $u.user)) -}}
{{- $lines = append $lines (printf "          publish: { allow: %s }" (include "earlyhelp.natsSubjects" (merge (dict "items" $u.publish) $ctx))) -}}
{{- $lines = append $lines (printf "          subscribe: { allow: %s }" (include "earlyhelp.natsSubjects" (merge (dict "items" $u.subscribe) $ctx))) -}}
{{- $lines = append $lines "      } }" -}}
{{- end -}}
{{- $lines = append $lines "    ]" -}}
{{- $exports := include "earlyhelp.natsExpand" (merge (dict "items" $a.exports) $ctx) | fromJsonArray -}}
{{- if $exports -}}
{{- $lines = append $lines "    exports: [" -}}
{{- range $exports -}}
{{- $lines = append $lines (printf "      { %s: %s, accounts: [%s] }" .kind (quote .subject) (join ", " .accounts)) -}}
{{- end -}}
{{- $lines = append $lines "    ]" -}}
{{- end -}}
{{- $imports := include "earlyhelp.natsExpand" (merge (dict "items" $a.imports) $ctx) | fromJsonArray -}}
{{- if $imports -}}
{{- $lines = append $lines "    imports: [" -}}
{{- range $imports -}}
{{- $lines = append $lines (printf "      { %s: { account: %s, subject: %s } }" .kind .account (quote .subject)) -}}
{{- end -}}
{{- $lines = append $lines "    ]" -}}
{{- end -}}
{{- $lines = append $lines "  }" -}}
{{- join "\n" $lines -}}
{{- end -}}

{{/* The nats-server configuration of the platform's accounts (`accounts.conf`). */}}
{{- define "earlyhelp.natsAccounts" -}}
{{- $table := .Files.Get "files/nats-rights.json" | fromJson -}}
{{- $ns := .Values.bus.namespace -}}
{{- $councils := include "earlyhelp.natsCouncils" . | fromJsonArray -}}
{{- $lines := $table.header -}}
{{- $lines = append $lines "accounts {" -}}
{{- range $a := $table.accounts -}}
{{- if not (include "earlyhelp.natsPerCouncil" $a) -}}
{{- $lines = append $lines (include "earlyhelp.natsAccount" (dict "account" (include "earlyhelp.natsSubstitute" (list $a $ns "") | fromJson) "ns" $ns "tenant" "" "councils" $councils)) -}}
{{- end -}}
{{- end -}}
{{- range $c := $councils -}}
{{- range $a := $table.accounts -}}
{{- if include "earlyhelp.natsPerCouncil" $a -}}
{{- $lines = append $lines (include "earlyhelp.natsAccount" (dict "account" (include "earlyhelp.natsSubstitute" (list $a $ns $c) | fromJson) "ns" $ns "tenant" $c "councils" $councils)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $lines = append $lines "}" -}}
{{- join "\n" $lines -}}
{{- end -}}

{{/* The NATS user a workload connects as: its service's, or `earlyhelp` for every service in one process. */}}
{{- define "earlyhelp.natsUser" -}}
{{- if eq . "all" -}}earlyhelp{{- else -}}{{- . -}}{{- end -}}
{{- end -}}

{{/* bus.natsUrl with the user and `$(EH_NATS_PASSWORD)` (the pod's own password, from the
Secret, which Kubernetes substitutes) in each URL of the list. Takes (list root user). */}}
{{- define "earlyhelp.natsUrlWithUser" -}}
{{- $root := index . 0 -}}{{- $user := index . 1 -}}
{{- $urls := list -}}
{{- range splitList "," $root.Values.bus.natsUrl -}}
{{- $u := trim . -}}
{{- $parts := splitn "://" 2 $u -}}
{{- $urls = append $urls (printf "%s://%s:$(EH_NATS_PASSWORD)@%s" $parts._0 $user $parts._1) -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}

{{/* The NATS user's environment of a workload's container (bus.accounts). Takes (dict "root" $ "target" t). */}}
{{- define "earlyhelp.natsEnv" -}}
{{- $v := .root.Values -}}
{{- if and $v.bus.accounts.enabled (ne $v.deploymentMode "embedded") -}}
{{- $user := include "earlyhelp.natsUser" .target }}
- name: EH_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.bus.accounts.existingSecret }}
      key: {{ include "earlyhelp.natsPasswordVar" $user }}
- name: EH__BUS__NATS_URL
  value: {{ include "earlyhelp.natsUrlWithUser" (list .root $user) | quote }}
{{- end -}}
{{- end -}}
