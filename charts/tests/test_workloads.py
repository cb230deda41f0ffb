"""Every container of every workload, in both modes and the full-featured set: probes,
resources, the restricted Pod Security Standard, pinned images, shutdown grace; one Deployment
per enabled target in distributed mode; Services, autoscalers and disruption budgets."""

from __future__ import annotations

import copy

import pytest

import chartlib
import checks

ALL_CHECKS = [
    checks.security_problems,
    checks.resource_problems,
    checks.image_problems,
    checks.probe_problems,
    checks.grace_problems,
    checks.service_problems,
    checks.scaling_problems,
]


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__)
def test_rendered_workloads_pass(ci, check):
    assert check(ci.objects) == []


def test_the_checks_see_every_container(ci):
    containers = [c for _, _, spec in checks.pod_templates(ci.objects) for _, c in checks.all_containers(spec)]
    deployments = checks.of_kind(ci.objects, "Deployment")
    if ci.mode == "embedded":
        # the server, Mailpit unless an SMTP relay is set, one helm test pod; no migration Job
        mailpit = 0 if ci.values.get("smtp", {}).get("host") else 1
        assert len(deployments) == 1 and len(containers) == 2 + mailpit
    else:
        # servers + migration Job + one helm test pod per Service
        assert len(containers) == 2 * len(deployments) + 1


# --- the checks catch regressions (each mutation must be reported) ---------------------------------


def _first_server(objs):
    return checks.server_deployments(objs)[0]["spec"]["template"]["spec"]["containers"][0]


def _job_container(objs):
    return next(o for o in objs if o["kind"] == "Job")["spec"]["template"]["spec"]["containers"][0]


def _test_pod_container(objs):
    return next(o for o in objs if o["kind"] == "Pod")["spec"]["containers"][0]


BREAKAGES = {
    "liveness probe removed": (checks.probe_problems, lambda objs: _first_server(objs).pop("livenessProbe")),
    "readiness probe on /healthz": (checks.probe_problems, lambda objs: _first_server(objs)["readinessProbe"]["httpGet"].update(path="/healthz")),
    "startup probe removed": (checks.probe_problems, lambda objs: _first_server(objs).pop("startupProbe")),
    "memory limit removed": (checks.resource_problems, lambda objs: _first_server(objs)["resources"]["limits"].pop("memory")),
    "cpu request removed from the migration Job": (checks.resource_problems, lambda objs: _job_container(objs)["resources"]["requests"].pop("cpu")),
    "test pod without resources": (checks.resource_problems, lambda objs: _test_pod_container(objs).pop("resources")),
    "writable root filesystem": (checks.security_problems, lambda objs: _first_server(objs)["securityContext"].update(readOnlyRootFilesystem=False)),
    "privilege escalation": (checks.security_problems, lambda objs: _job_container(objs)["securityContext"].pop("allowPrivilegeEscalation")),
    "capabilities kept": (checks.security_problems, lambda objs: _test_pod_container(objs)["securityContext"].pop("capabilities")),
    "NET_ADMIN added": (checks.security_problems, lambda objs: _first_server(objs)["securityContext"]["capabilities"].update(add=["NET_ADMIN"])),
    "runAsNonRoot dropped": (checks.security_problems, lambda objs: [_first_server(objs)["securityContext"].pop("runAsNonRoot"), checks.server_deployments(objs)[0]["spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot")]),
    "seccomp dropped": (checks.security_problems, lambda objs: [_first_server(objs)["securityContext"].pop("seccompProfile"), checks.server_deployments(objs)[0]["spec"]["template"]["spec"]["securityContext"].pop("seccompProfile")]),
    "service account token mounted": (checks.security_problems, lambda objs: checks.server_deployments(objs)[0]["spec"]["template"]["spec"].update(automountServiceAccountToken=True)),
    "hostPath volume": (checks.security_problems, lambda objs: checks.server_deployments(objs)[0]["spec"]["template"]["spec"]["volumes"].append({"name": "h", "hostPath": {"path": "/"}})),
    "latest image": (checks.image_problems, lambda objs: _first_server(objs).update(image="ghcr.io/earlyhelp/earlyhelp:latest")),
    "untagged image": (checks.image_problems, lambda objs: _job_container(objs).update(image="ghcr.io/earlyhelp/earlyhelp")),
    "grace too short": (checks.grace_problems, lambda objs: checks.server_deployments(objs)[0]["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=25)),
    "grace not longer than shutdown + preStop": (checks.grace_problems, lambda objs: checks.server_deployments(objs)[0]["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=30)),
    "no Service for a target": (checks.service_problems, lambda objs: objs.remove(next(o for o in objs if o["kind"] == "Service"))),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES), ids=list(BREAKAGES))
@pytest.mark.parametrize("mode", ["monolithic", "distributed"])
def test_the_checks_catch_a_broken_manifest(mode, breakage):
    from conftest import rendered_ci

    check, mutate = BREAKAGES[breakage]
    objs = copy.deepcopy(rendered_ci(mode).objects)
    assert check(objs) == []
    mutate(objs)
    assert check(objs) != []


# --- modes ---------------------------------------------------------------------------------------


def _args(deployment):
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def test_monolithic_is_one_deployment_running_every_target(monolithic):
    deployments = checks.of_kind(monolithic.objects, "Deployment")
    assert len(deployments) == 1
    assert _args(deployments[0])[:3] == ["run", "--target", "all"]
    assert "--config" in _args(deployments[0])


def test_distributed_is_one_deployment_per_enabled_target(distributed):
    deployments = {d["metadata"]["name"]: d for d in checks.of_kind(distributed.objects, "Deployment")}
    assert set(deployments) == {"eh-earlyhelp-intake", "eh-earlyhelp-consent", "eh-earlyhelp-casework", "eh-earlyhelp-notifications", "eh-earlyhelp-allocation", "eh-earlyhelp-assessment", "eh-earlyhelp-reporting", "eh-earlyhelp-records", "eh-earlyhelp-gateway"}
    for name, d in deployments.items():
        target = name.removeprefix("eh-earlyhelp-")
        assert _args(d)[:3] == ["run", "--target", target]
        assert d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == target
    # per-target settings: intake autoscales with its own limit; notifications has a fixed size
    assert "replicas" not in deployments["eh-earlyhelp-intake"]["spec"]
    assert deployments["eh-earlyhelp-notifications"]["spec"]["replicas"] == 2
    intake = deployments["eh-earlyhelp-intake"]["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert intake["limits"]["memory"] == "384Mi" and intake["limits"]["cpu"] == "500m"  # merged with targetDefaults
    hpas = checks.of_kind(distributed.objects, "HorizontalPodAutoscaler")
    assert [h["metadata"]["name"] for h in hpas] == ["eh-earlyhelp-intake"]
    pdbs = {p["metadata"]["name"]: p["spec"] for p in checks.of_kind(distributed.objects, "PodDisruptionBudget")}
    assert pdbs["eh-earlyhelp-notifications"]["minAvailable"] == 1
    assert pdbs["eh-earlyhelp-intake"]["maxUnavailable"] == 1


def test_adding_a_target_is_a_values_entry():
    values = chartlib.deep_merge(chartlib.ci_values("distributed"), {"targets": {"gateway": {"enabled": True, "replicas": 3}}, "ingress": {"enabled": True}})
    objs = chartlib.objects(values)
    gateway = next(d for d in checks.of_kind(objs, "Deployment") if d["metadata"]["name"] == "eh-earlyhelp-gateway")
    assert _args(gateway)[:3] == ["run", "--target", "gateway"] and gateway["spec"]["replicas"] == 3
    assert "eh-earlyhelp-gateway" in {s["metadata"]["name"] for s in checks.of_kind(objs, "Service")}
    ingress = checks.of_kind(objs, "Ingress")[0]
    backends = {p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert backends == {"eh-earlyhelp-gateway"}
    public = next(n for n in checks.of_kind(objs, "NetworkPolicy") if n["metadata"]["name"] == "eh-earlyhelp-public")
    assert public["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
    for check in ALL_CHECKS + [checks.helm_test_problems, checks.network_policy_problems]:
        assert check(objs) == [], check.__name__


def test_a_target_can_switch_off_what_its_defaults_switch_on():
    values = chartlib.deep_merge(chartlib.ci_values("distributed"), {
        "targetDefaults": {"autoscaling": {"enabled": True}, "pdb": {"enabled": True}},
        "targets": {"notifications": {"autoscaling": {"enabled": False}, "pdb": {"enabled": False}, "replicas": 1}},
    })
    objs = chartlib.objects(values)
    switched_on = {"eh-earlyhelp-intake", "eh-earlyhelp-consent", "eh-earlyhelp-casework", "eh-earlyhelp-allocation", "eh-earlyhelp-assessment", "eh-earlyhelp-reporting", "eh-earlyhelp-records", "eh-earlyhelp-gateway"}
    assert {h["metadata"]["name"] for h in checks.of_kind(objs, "HorizontalPodAutoscaler")} == switched_on
    assert {p["metadata"]["name"] for p in checks.of_kind(objs, "PodDisruptionBudget")} == switched_on
    notifications = next(d for d in checks.of_kind(objs, "Deployment") if d["metadata"]["name"] == "eh-earlyhelp-notifications")
    assert notifications["spec"]["replicas"] == 1


def test_disabled_targets_are_not_deployed():
    values = chartlib.deep_merge(chartlib.ci_values("distributed"), {"targets": {"notifications": {"enabled": False}, "records": {"enabled": False}}})
    deployed = {d["metadata"]["name"] for d in checks.of_kind(chartlib.objects(values), "Deployment")}
    assert deployed == {"eh-earlyhelp-intake", "eh-earlyhelp-consent", "eh-earlyhelp-casework", "eh-earlyhelp-allocation", "eh-earlyhelp-assessment", "eh-earlyhelp-reporting", "eh-earlyhelp-gateway"}


def test_image_tag_defaults_to_app_version_and_digest_pins(monolithic, full):
    app_version = chartlib.chart().metadata["appVersion"]
    assert app_version and app_version != "latest"
    for _, _, spec in checks.pod_templates(monolithic.objects):
        for _, c in checks.all_containers(spec):
            assert c["image"] == f"ghcr.io/earlyhelp/earlyhelp:{app_version}"
    for _, _, spec in checks.pod_templates(full.objects):
        for _, c in checks.all_containers(spec):
            assert c["image"].endswith("@" + full.values["image"]["digest"])


def test_the_chart_owns_every_object_in_the_release_namespace(ci):
    for obj in ci.objects:
        if obj["kind"] == "ServiceMonitor":
            continue
        assert obj["metadata"]["namespace"] == chartlib.NAMESPACE, checks.name_of(obj)
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == chartlib.RELEASE


def test_service_account_never_mounts_a_token(ci):
    accounts = checks.of_kind(ci.objects, "ServiceAccount")
    assert accounts
    for sa in accounts:
        assert sa["automountServiceAccountToken"] is False


def test_a_target_entry_without_enabled_is_deployed():
    values = chartlib.deep_merge(chartlib.ci_values("distributed"), {"targets": {"consent": {"replicas": 2}}})
    names = [d["metadata"]["name"] for d in checks.of_kind(chartlib.objects(values), "Deployment")]
    assert "eh-earlyhelp-consent" in names
