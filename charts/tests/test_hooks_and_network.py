"""The migration hook Job, the helm test pods, NetworkPolicies and the ServiceMonitor."""

from __future__ import annotations

import copy

import pytest

import chartlib
import checks

# --- migrations: a pre-install/pre-upgrade hook Job -------------------------------------------


def test_migration_hook_job(ci):
    if ci.mode == "embedded":
        # The binary migrates its SQLite files at start; a pre-install Job could not reach the
        # volume, which does not exist yet.
        assert not checks.of_kind(ci.objects, "Job") and not [o for o in ci.objects if checks.is_hook(o) and "test" not in checks.hook_phases(o)]
        return
    assert checks.migration_problems(ci.objects) == []
    job = next(o for o in ci.objects if o["kind"] == "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][:3] == ["migrate", "--config", "/etc/earlyhelp/config.yaml"]
    assert checks.annotations(job)["helm.sh/hook"] == "pre-install,pre-upgrade"


def _job(objs):
    return next(o for o in objs if o["kind"] == "Job")


MIGRATION_BREAKAGES = {
    "Job removed": lambda objs: objs.remove(_job(objs)),
    "post-install only": lambda objs: checks.annotations(_job(objs)).update({"helm.sh/hook": "post-install"}),
    "not a hook": lambda objs: checks.annotations(_job(objs)).pop("helm.sh/hook"),
    "no hook weight": lambda objs: checks.annotations(_job(objs)).pop("helm.sh/hook-weight"),
    "no delete policy": lambda objs: checks.annotations(_job(objs)).pop("helm.sh/hook-delete-policy"),
    "its ConfigMap is a normal resource": lambda objs: next(
        o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("migrate-config")
    )["metadata"]["annotations"].pop("helm.sh/hook"),
    "its ServiceAccount comes after it": lambda objs: next(
        o for o in objs if o["kind"] == "ServiceAccount" and checks.is_hook(o)
    )["metadata"]["annotations"].update({"helm.sh/hook-weight": "5"}),
}


@pytest.mark.parametrize("breakage", list(MIGRATION_BREAKAGES), ids=list(MIGRATION_BREAKAGES))
def test_the_migration_check_catches(breakage, monolithic):
    objs = copy.deepcopy(monolithic.objects)
    MIGRATION_BREAKAGES[breakage](objs)
    assert checks.migration_problems(objs) != []


def test_disabling_migrations_is_flagged():
    values = chartlib.deep_merge(chartlib.ci_values("monolithic"), {"migration": {"enabled": False}})
    rendered = chartlib.render(values)
    objs = [d for _, d in chartlib.documents(rendered)]
    assert checks.migration_problems(objs) != []
    assert "migration.enabled is false" in chartlib.notes(rendered)


def test_upgrade_runs_the_same_hook():
    objs = chartlib.objects(chartlib.ci_values("distributed"), is_upgrade=True)
    assert checks.migration_problems(objs) == []


# --- the database role split: the owner for migrations, the services' role for the pods ---------


def test_only_the_migration_job_connects_as_the_owner(ci):
    owner_secret = (((ci.values.get("database") or {}).get("owner") or {}).get("existingSecret") or {}).get("name") or None
    assert checks.role_split_problems(ci.objects, owner_secret) == []
    if ci.mode == "embedded":
        return
    job = _job(ci.objects)
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "EH__DATABASE__MIGRATE_URL" in env
    if owner_secret:
        assert env["EH__DATABASE__MIGRATE_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == owner_secret


def _deployment_env(objs):
    dep = next(o for o in objs if o["kind"] == "Deployment")
    return dep["spec"]["template"]["spec"]["containers"][0].setdefault("env", [])


ROLE_SPLIT_BREAKAGES = {
    "the Job migrates as the services' role": lambda objs: _job(objs)["spec"]["template"]["spec"]["containers"][0].update(
        env=[e for e in _job(objs)["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"] != "EH__DATABASE__MIGRATE_URL"]
    ),
    "a pod has the owner's URL": lambda objs: _deployment_env(objs).append({"name": "EH__DATABASE__MIGRATE_URL", "value": "postgres://owner@db/eh"}),
    "a pod reads the owner's Secret": lambda objs: _deployment_env(objs).append(
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "earlyhelp-database-owner", "key": "password"}}}
    ),
}


@pytest.mark.parametrize("breakage", list(ROLE_SPLIT_BREAKAGES), ids=list(ROLE_SPLIT_BREAKAGES))
def test_the_role_split_check_catches(breakage, monolithic):
    objs = copy.deepcopy(monolithic.objects)
    ROLE_SPLIT_BREAKAGES[breakage](objs)
    assert checks.role_split_problems(objs, "earlyhelp-database-owner") != []


@pytest.mark.parametrize(
    ("owner", "message"),
    [
        ({"url": ""}, "database.owner.url is required in monolithic mode"),
        ({"url": "postgres://earlyhelp@postgresql.databases.svc:5432/earlyhelp"}, "name the same role (earlyhelp)"),
        ({"url": "postgres://owner:pw@db:5432/eh"}, "database.owner.url must not contain a password"),
        ({"url": "", "existingSecret": {"name": "", "urlKey": "url"}}, "database.owner.existingSecret.name is empty"),
    ],
)
def test_the_owner_is_required_and_apart_from_the_services_role(owner, message):
    values = chartlib.deep_merge(chartlib.ci_values("monolithic"), {"database": {"owner": owner}})
    with pytest.raises(Exception) as err:
        chartlib.render(values)
    assert message in str(err.value), str(err.value)


# --- helm test: gRPC health of every Service ---------------------------------------------------


def test_helm_test_checks_every_service(ci):
    assert checks.helm_test_problems(ci.objects) == []
    pods = [o for o in ci.objects if o["kind"] == "Pod"]
    assert pods and all(checks.hook_phases(p) == {"test"} for p in pods)


def test_the_helm_test_check_catches_a_missing_pod(distributed):
    objs = copy.deepcopy(distributed.objects)
    objs.remove(next(o for o in objs if o["kind"] == "Pod"))
    assert checks.helm_test_problems(objs) != []


# --- NetworkPolicies -----------------------------------------------------------------------------


def test_network_policies_isolate_every_pod(ci):
    assert checks.network_policy_problems(ci.objects) == []


def test_the_network_policy_check_catches(distributed):
    without = [o for o in copy.deepcopy(distributed.objects) if o["kind"] != "NetworkPolicy"]
    assert checks.network_policy_problems(without) == ["no NetworkPolicy rendered"]
    no_dns = copy.deepcopy(distributed.objects)
    server = next(o for o in no_dns if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "eh-earlyhelp")
    server["spec"]["egress"] = [r for r in server["spec"]["egress"] if not any(p["port"] == 53 for p in r["ports"])]
    assert any("DNS" in p for p in checks.network_policy_problems(no_dns))
    no_test_policy = [o for o in copy.deepcopy(distributed.objects) if o["metadata"]["name"] != "eh-earlyhelp-test"]
    assert any("Pod/eh-earlyhelp-test" in p for p in checks.network_policy_problems(no_test_policy))


def test_network_policies_can_be_switched_off():
    values = chartlib.deep_merge(chartlib.ci_values("monolithic"), {"networkPolicy": {"enabled": False}})
    rendered = chartlib.render(values)
    assert not [d for _, d in chartlib.documents(rendered) if d["kind"] == "NetworkPolicy"]
    assert "networkPolicy.enabled is false" in chartlib.notes(rendered)


def _egress_ports(np):
    return {p["port"] for rule in np["spec"]["egress"] for p in rule.get("ports") or []}


def test_egress_follows_the_configured_backends(monolithic, full):
    mono = next(o for o in monolithic.objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "eh-earlyhelp")
    assert _egress_ports(mono) == {53, 5432, 4222, 50051, 587, 443}  # no OTLP configured
    full_np = next(o for o in full.objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "eh-earlyhelp")
    assert _egress_ports(full_np) == {53, 5432, 4222, 50051, 4317, 587, 443}
    db_rule = next(r for r in full_np["spec"]["egress"] if r["ports"][0]["port"] == 5432)
    assert db_rule["to"] == [{"ipBlock": {"cidr": "10.20.0.0/24"}}]


def test_embedded_pods_reach_no_database_or_nats(embedded, embedded_custom):
    np = next(o for o in embedded.objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "eh-earlyhelp")
    assert _egress_ports(np) == {53, 50051, 443}  # Mailpit is in the pod: no SMTP egress either
    np = next(o for o in embedded_custom.objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "eh-earlyhelp")
    assert _egress_ports(np) == {53, 50051, 587, 443}
    # and the network policy check would notice a distributed install losing them
    distributed_without = copy.deepcopy(chartlib.objects(chartlib.ci_values("distributed")))
    server = next(o for o in distributed_without if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "eh-earlyhelp")
    server["spec"]["egress"] = [r for r in server["spec"]["egress"] if not any(p["port"] in (5432, 4222) for p in r["ports"])]
    problems = checks.network_policy_problems(distributed_without)
    assert any("PostgreSQL" in p for p in problems) and any("NATS" in p for p in problems)


def test_only_the_public_workload_accepts_the_ingress_controller(monolithic, full):
    for rendered, component in ((monolithic, "all"), (full, "gateway")):
        public = next(o for o in rendered.objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "eh-earlyhelp-public")
        assert public["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
        assert public["spec"]["ingress"][0]["ports"] == [{"port": 8080, "protocol": "TCP"}]
    # Distributed without the gateway (and records, which asks it): no pod takes the ingress.
    no_gateway = chartlib.deep_merge(chartlib.ci_values("distributed"), {"targets": {"gateway": {"enabled": False}, "records": {"enabled": False}}})
    assert not [o for o in chartlib.objects(no_gateway) if o["metadata"]["name"] == "eh-earlyhelp-public"]


def test_migration_pods_reach_only_dns_and_postgresql(ci):
    if ci.mode == "embedded":
        return  # no migration Job (test_migration_hook_job)
    np = next(o for o in ci.objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "eh-earlyhelp-migrate")
    assert _egress_ports(np) == {53, 5432}
    assert "ingress" not in np["spec"] and "Ingress" in np["spec"]["policyTypes"]
    assert {"pre-install", "pre-upgrade"} <= checks.hook_phases(np)


# --- metrics --------------------------------------------------------------------------------------


def test_service_monitor_scrapes_every_service(full, monolithic):
    assert not [o for o in monolithic.objects if o["kind"] == "ServiceMonitor"]
    (sm,) = [o for o in full.objects if o["kind"] == "ServiceMonitor"]
    assert sm["metadata"]["namespace"] == "monitoring" and sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [chartlib.NAMESPACE]}
    assert sm["spec"]["endpoints"][0]["port"] == "http" and sm["spec"]["endpoints"][0]["path"] == "/metrics"
    services = checks.of_kind(full.objects, "Service")
    assert services and all(checks.selects(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"]) for s in services)
