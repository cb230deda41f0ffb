"""Checks over rendered manifests. Each returns a list of problems (empty = fine), so the tests
can assert both that the chart passes and that a deliberately broken manifest is caught."""

from __future__ import annotations

from typing import Any, Iterator

import yaml

Obj = dict[str, Any]
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
# Volume types allowed by the Pod Security Standard "restricted".
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}


def name_of(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def annotations(obj: Obj) -> dict[str, str]:
    return obj.get("metadata", {}).get("annotations") or {}


def is_hook(obj: Obj) -> bool:
    return "helm.sh/hook" in annotations(obj)


def hook_phases(obj: Obj) -> set[str]:
    return {p.strip() for p in annotations(obj).get("helm.sh/hook", "").split(",") if p.strip()}


def pod_templates(objs: list[Obj]) -> Iterator[tuple[Obj, Obj, Obj]]:
    """(owner object, pod metadata, pod spec) of everything that runs pods."""
    for obj in objs:
        kind = obj["kind"]
        if kind in WORKLOAD_KINDS:
            tpl = obj["spec"]["template"]
            yield obj, tpl.get("metadata", {}), tpl["spec"]
        elif kind == "CronJob":
            tpl = obj["spec"]["jobTemplate"]["spec"]["template"]
            yield obj, tpl.get("metadata", {}), tpl["spec"]
        elif kind == "Pod":
            yield obj, obj["metadata"], obj["spec"]


def all_containers(spec: Obj) -> Iterator[tuple[str, Obj]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            yield key, c


def of_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def config_of(objs: list[Obj]) -> Obj:
    """The binary's config.yaml from the release's (non-hook) ConfigMap."""
    for cm in of_kind(objs, "ConfigMap"):
        if not is_hook(cm) and "config.yaml" in (cm.get("data") or {}):
            return yaml.safe_load(cm["data"]["config.yaml"])
    raise AssertionError("no ConfigMap with config.yaml")


def is_embedded(objs: list[Obj]) -> bool:
    """Whether the binary runs in embedded mode (SQLite and the in-process bus, no PostgreSQL/NATS)."""
    return config_of(objs).get("mode") == "embedded"


def image_tag(image: str) -> str:
    """The tag of an image reference ('' when there is none)."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else ""


# --- every container: resources and the restricted Pod Security Standard -----------------------


def security_problems(objs: list[Obj]) -> list[str]:
    out = []
    for owner, _, spec in pod_templates(objs):
        where = name_of(owner)
        psc = spec.get("securityContext") or {}
        if spec.get("automountServiceAccountToken") is not False:
            out.append(f"{where}: automountServiceAccountToken is not false")
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(key):
                out.append(f"{where}: {key} is set")
        for vol in spec.get("volumes") or []:
            kinds = set(vol) - {"name"}
            if not kinds <= RESTRICTED_VOLUMES:
                out.append(f"{where}: volume {vol['name']} of type {kinds} is not allowed by 'restricted'")
        for key, c in all_containers(spec):
            cw = f"{where} {key[:-1]} {c['name']}"
            sc = c.get("securityContext") or {}
            if not (sc.get("runAsNonRoot") is True or (psc.get("runAsNonRoot") is True and "runAsNonRoot" not in sc)):
                out.append(f"{cw}: runAsNonRoot is not true")
            if sc.get("runAsUser", psc.get("runAsUser")) == 0:
                out.append(f"{cw}: runs as UID 0")
            if sc.get("readOnlyRootFilesystem") is not True:
                out.append(f"{cw}: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                out.append(f"{cw}: allowPrivilegeEscalation is not false")
            if sc.get("privileged"):
                out.append(f"{cw}: privileged")
            caps = sc.get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []):
                out.append(f"{cw}: capabilities do not drop ALL")
            if caps.get("add"):
                out.append(f"{cw}: adds capabilities {caps['add']}")
            seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                out.append(f"{cw}: seccompProfile is not RuntimeDefault")
    return out


def resource_problems(objs: list[Obj]) -> list[str]:
    out = []
    for owner, _, spec in pod_templates(objs):
        for key, c in all_containers(spec):
            cw = f"{name_of(owner)} {key[:-1]} {c['name']}"
            res = c.get("resources") or {}
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if not (res.get(kind) or {}).get(resource):
                        out.append(f"{cw}: no {kind}.{resource}")
    return out


def image_problems(objs: list[Obj]) -> list[str]:
    out = []
    for owner, _, spec in pod_templates(objs):
        for key, c in all_containers(spec):
            cw = f"{name_of(owner)} {key[:-1]} {c['name']}"
            tag = image_tag(c.get("image", ""))
            if not tag and "@sha256:" not in c.get("image", ""):
                out.append(f"{cw}: image {c.get('image')!r} has neither tag nor digest")
            if tag.lower() == "latest":
                out.append(f"{cw}: image {c['image']!r} uses the latest tag")
    return out


# --- the server Deployments ---------------------------------------------------------------------


def server_deployments(objs: list[Obj]) -> list[Obj]:
    return [d for d in of_kind(objs, "Deployment") if d["spec"]["template"]["metadata"]["labels"].get("earlyhelp/role") == "server"]


def probe_problems(objs: list[Obj]) -> list[str]:
    out = []
    deployments = of_kind(objs, "Deployment")
    if not deployments:
        out.append("no Deployment rendered")
    for d in deployments:
        for key, c in all_containers(d["spec"]["template"]["spec"]):
            if key != "containers":
                continue
            cw = f"{name_of(d)} container {c['name']}"
            mounts = {m["mountPath"] for m in c.get("volumeMounts") or []}
            if "/tmp" not in mounts:
                out.append(f"{cw}: no writable /tmp mount")
            if c["name"] != "earlyhelp":
                # A sidecar (embedded mode's Mailpit): probed, on its own terms.
                for probe in ("livenessProbe", "readinessProbe"):
                    if not c.get(probe):
                        out.append(f"{cw}: no {probe}")
                continue
            ports = {p["name"]: p["containerPort"] for p in c.get("ports") or []}
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
                get = (c.get(probe) or {}).get("httpGet") or {}
                if get.get("path") != path:
                    out.append(f"{cw}: {probe} does not GET {path}")
                elif get.get("port") not in ("http", ports.get("http")):
                    out.append(f"{cw}: {probe} is not on the http port")
            if ports.get("http") is None or ports.get("grpc") is None:
                out.append(f"{cw}: ports http and grpc are not both declared")
    return out


def grace_problems(objs: list[Obj]) -> list[str]:
    """terminationGracePeriodSeconds must exceed the binary's shutdown grace (+ preStop sleep)."""
    out = []
    grace = int(config_of(objs).get("server", {}).get("shutdown_grace_secs", 25))
    for d in of_kind(objs, "Deployment"):
        spec = d["spec"]["template"]["spec"]
        tgp = spec.get("terminationGracePeriodSeconds", 30)
        for c in spec["containers"]:
            sleep = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
            if tgp <= grace + sleep:
                out.append(f"{name_of(d)}: terminationGracePeriodSeconds {tgp} <= shutdown_grace_secs {grace} + preStop sleep {sleep}")
    return out


# --- hooks ----------------------------------------------------------------------------------------


def migration_problems(objs: list[Obj]) -> list[str]:
    out = []
    jobs = [j for j in of_kind(objs, "Job") if (j["spec"]["template"]["spec"]["containers"][0].get("args") or [None])[0] == "migrate"]
    if len(jobs) != 1:
        return [f"expected one migration Job running `earlyhelp migrate`, found {len(jobs)}"]
    job = jobs[0]
    ann = annotations(job)
    if not {"pre-install", "pre-upgrade"} <= hook_phases(job):
        out.append(f"{name_of(job)}: helm.sh/hook is {ann.get('helm.sh/hook')!r}, not pre-install,pre-upgrade")
    if "helm.sh/hook-weight" not in ann:
        out.append(f"{name_of(job)}: no helm.sh/hook-weight")
    if "before-hook-creation" not in ann.get("helm.sh/hook-delete-policy", ""):
        out.append(f"{name_of(job)}: helm.sh/hook-delete-policy lacks before-hook-creation")
    spec = job["spec"]["template"]["spec"]
    if spec.get("restartPolicy") not in ("Never", "OnFailure"):
        out.append(f"{name_of(job)}: restartPolicy {spec.get('restartPolicy')}")
    # Everything the Job needs must exist during pre-install: hooks with a lower weight, or
    # things the chart does not create at all (existing Secrets, the default ServiceAccount).
    weight = int(ann.get("helm.sh/hook-weight", "0"))
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    needs = [("ServiceAccount", spec.get("serviceAccountName", "default"))]
    for vol in spec.get("volumes") or []:
        if "configMap" in vol:
            needs.append(("ConfigMap", vol["configMap"]["name"]))
        for src in (vol.get("projected") or {}).get("sources") or []:
            if "configMap" in src:
                needs.append(("ConfigMap", src["configMap"]["name"]))
    for kind, name in needs:
        dep = by_name.get((kind, name))
        if dep is None:
            continue  # not created by the chart: pre-existing
        if not is_hook(dep) or not {"pre-install", "pre-upgrade"} <= hook_phases(dep):
            out.append(f"{name_of(job)} needs {kind}/{name}, which is not a pre-install,pre-upgrade hook (it would not exist yet)")
        elif int(annotations(dep).get("helm.sh/hook-weight", "0")) >= weight:
            out.append(f"{name_of(job)} needs {kind}/{name}, whose hook weight is not lower than the Job's")
    return out


OWNER_ENV = ("EH__DATABASE__MIGRATE_URL", "EH__DATABASE__MIGRATE_PASSWORD")


def _secret_refs(c: Obj) -> set[str]:
    refs = {(e.get("valueFrom") or {}).get("secretKeyRef", {}).get("name") for e in c.get("env") or []}
    refs |= {(e.get("secretRef") or {}).get("name") for e in c.get("envFrom") or []}
    return {r for r in refs if r}


def role_split_problems(objs: list[Obj], owner_secret: str | None) -> list[str]:
    """The database role split: the migration Job alone connects as the owner
    (EH__DATABASE__MIGRATE_URL, and its password from the owner's Secret); no other pod has the
    owner's connection or its Secret, and every pod that runs the services has the services'
    connection."""
    if is_embedded(objs):
        return []
    out = []
    for owner, _, spec in pod_templates(objs):
        migrates = owner["kind"] == "Job" and (spec["containers"][0].get("args") or [None])[0] == "migrate"
        for _, c in all_containers(spec):
            names = {e["name"] for e in c.get("env") or []}
            if migrates:
                if "EH__DATABASE__MIGRATE_URL" not in names:
                    out.append(f"{name_of(owner)}: the migration Job has no EH__DATABASE__MIGRATE_URL (it would migrate as the services' role)")
                if owner_secret and owner_secret not in _secret_refs(c):
                    out.append(f"{name_of(owner)}: the migration Job does not read the owner's Secret {owner_secret}")
                continue
            for n in OWNER_ENV:
                if n in names:
                    out.append(f"{name_of(owner)}/{c['name']}: {n} outside the migration Job")
            if owner_secret and owner_secret in _secret_refs(c):
                out.append(f"{name_of(owner)}/{c['name']}: reads the owner's Secret {owner_secret}")
            if owner["kind"] == "Deployment" and (c.get("args") or [None])[0] == "run" and "EH__DATABASE__MIGRATE_ON_START" in names:
                value = next(e.get("value") for e in c["env"] if e["name"] == "EH__DATABASE__MIGRATE_ON_START")
                if value != "false":
                    out.append(f"{name_of(owner)}/{c['name']}: migrates at start (as the services' role)")
    return out


def helm_test_problems(objs: list[Obj]) -> list[str]:
    out = []
    services = {s["metadata"]["name"]: s for s in of_kind(objs, "Service")}
    ports = {name: {p["name"]: p["port"] for p in s["spec"]["ports"]} for name, s in services.items()}
    checked = set()
    for pod in of_kind(objs, "Pod"):
        if "test" not in hook_phases(pod):
            continue
        for c in pod["spec"]["containers"]:
            args = c.get("args") or []
            if c.get("command") or args[:2] != ["healthcheck", "--grpc"] or len(args) != 3:
                out.append(f"{name_of(pod)}: does not run `earlyhelp healthcheck --grpc URL`")
                continue
            host_port = args[2].removeprefix("http://")
            host, _, port = host_port.partition(":")
            svc = host.split(".")[0]
            if svc not in services:
                out.append(f"{name_of(pod)}: checks {args[2]}, which is no Service of the release")
            elif int(port) != ports[svc].get("grpc"):
                out.append(f"{name_of(pod)}: checks port {port}, not the grpc port of {svc}")
            checked.add(svc)
    for svc in services:
        if svc not in checked:
            out.append(f"Service/{svc}: no helm test pod checks its gRPC health")
    return out


# --- Services, autoscaling, disruption budgets ------------------------------------------------------


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def service_problems(objs: list[Obj]) -> list[str]:
    out = []
    services = of_kind(objs, "Service")
    for d in server_deployments(objs):
        labels = d["spec"]["template"]["metadata"]["labels"]
        matching = [s for s in services if selects(s["spec"].get("selector") or {}, labels)]
        if not matching:
            out.append(f"{name_of(d)}: no Service selects its pods")
        for s in matching:
            names = {p["name"] for p in s["spec"]["ports"]}
            if not {"http", "grpc"} <= names:
                out.append(f"{name_of(s)}: ports {names} lack http and grpc")
    return out


def scaling_problems(objs: list[Obj]) -> list[str]:
    out = []
    deployments = {d["metadata"]["name"]: d for d in of_kind(objs, "Deployment")}
    for hpa in of_kind(objs, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        if ref["kind"] != "Deployment" or ref["name"] not in deployments:
            out.append(f"{name_of(hpa)}: scales {ref['kind']}/{ref['name']}, which is not rendered")
        elif "replicas" in deployments[ref["name"]]["spec"]:
            out.append(f"{name_of(hpa)}: its Deployment also sets replicas (they would fight)")
    for pdb in of_kind(objs, "PodDisruptionBudget"):
        sel = pdb["spec"]["selector"]["matchLabels"]
        if not any(selects(sel, d["spec"]["template"]["metadata"]["labels"]) for d in deployments.values()):
            out.append(f"{name_of(pdb)}: selects no Deployment's pods")
        if ("minAvailable" in pdb["spec"]) == ("maxUnavailable" in pdb["spec"]):
            out.append(f"{name_of(pdb)}: needs exactly one of minAvailable/maxUnavailable")
    return out


# --- network policies --------------------------------------------------------------------------------


def network_policy_problems(objs: list[Obj], *, database_port: int = 5432, nats_port: int = 4222) -> list[str]:
    """Every pod the chart runs is isolated for ingress and egress by some NetworkPolicy, and
    the server pods may reach DNS, and PostgreSQL and NATS unless the binary runs embedded."""
    out = []
    policies = of_kind(objs, "NetworkPolicy")
    if not policies:
        return ["no NetworkPolicy rendered"]
    for owner, meta, _ in pod_templates(objs):
        labels = meta.get("labels") or {}
        types: set[str] = set()
        for np in policies:
            sel = np["spec"]["podSelector"].get("matchLabels") or {}
            if np["metadata"]["namespace"] == owner["metadata"].get("namespace") and selects(sel, labels):
                types |= set(np["spec"].get("policyTypes") or [])
        for needed in ("Ingress", "Egress"):
            if needed not in types:
                out.append(f"{name_of(owner)}: no NetworkPolicy restricts its {needed.lower()}")
    servers = [np for np in policies if (np["spec"]["podSelector"].get("matchLabels") or {}).get("earlyhelp/role") == "server"]
    if not servers:
        out.append("no NetworkPolicy selects the server pods")
    for np in servers:
        egress_ports = {p.get("port") for rule in np["spec"].get("egress") or [] for p in rule.get("ports") or []}
        needed = [(53, "DNS")] + ([] if is_embedded(objs) else [(database_port, "PostgreSQL"), (nats_port, "NATS")])
        if "Egress" not in (np["spec"].get("policyTypes") or []):
            needed = []  # an ingress-only policy (e.g. the gRPC one) adds to the egress of another
        for port, what in needed:
            if port not in egress_ports:
                out.append(f"{name_of(np)}: no egress to {what} (port {port})")
        for rule in np["spec"].get("ingress") or []:
            if not rule.get("from"):
                out.append(f"{name_of(np)}: an ingress rule allows every source")
    return out
