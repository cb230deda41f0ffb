"""values.schema.json refuses unknown keys and wrong types; the templates refuse inconsistent
combinations with a clear message; the ci value sets cover the three modes."""

from __future__ import annotations

import json

import helm_python as helm
import pytest

import chartlib

BASE = chartlib.ci_values("monolithic")

# (override merged into a valid value set, text the error must contain)
UNKNOWN_KEYS = [
    ({"replicaCount": 3}, "replicaCount"),
    ({"image": {"tagg": "0.1.0"}}, "tagg"),
    ({"monolithic": {"replica": 3}}, "replica"),
    ({"embedded": {"autoscaling": {"enabled": True}}}, "autoscaling"),
    ({"embedded": {"persistence": {"storageClass": "fast"}}}, "storageClass"),
    ({"monolithic": {"resources": {"limits": {"gpu": 1}}}}, "gpu"),
    ({"targets": {"intak": {"enabled": True}}}, "intak"),
    ({"targets": {"intake": {"replica": 3}}}, "replica"),
    ({"targets": {"intake": {"autoscaling": {"enable": True}}}}, "enable"),
    ({"database": {"password": "hunter2"}}, "password"),
    ({"bus": {"nats_url": "nats://x:4222"}}, "nats_url"),
    ({"networkPolicy": {"allowAll": True}}, "allowAll"),
    ({"tenants": {"worcs": {"name": "Worcestershire", "colour": "green"}}}, "colour"),
    ({"tenants": {"worcs": {"name": "W", "oidc": {"issuer": "https://i", "audience": "a", "jwks_url": "https://j", "scope": "x"}}}}, "scope"),
]

WRONG_TYPES = [
    ({"monolithic": {"replicas": "two"}}, "/monolithic/replicas"),
    ({"monolithic": {"replicas": 1.5}}, "/monolithic/replicas"),
    ({"targets": {"intake": {"enabled": "yes"}}}, "/targets/intake/enabled"),
    ({"networkPolicy": {"enabled": "true"}}, "/networkPolicy/enabled"),
    ({"server": {"shutdownGraceSecs": "25s"}}, "/server/shutdownGraceSecs"),
    ({"database": {"maxConnections": 0}}, "/database/maxConnections"),
    ({"database": {"url": "mysql://earlyhelp@db/earlyhelp"}}, "/database/url"),
    ({"deploymentMode": "microservices"}, "/deploymentMode"),
    ({"telemetry": {"logFormat": "xml"}}, "/telemetry/logFormat"),
    ({"smtp": {"tls": "ssl"}}, "/smtp/tls"),
    ({"smtp": {"port": 70000}}, "/smtp/port"),
    ({"smtp": {"allowPlaintext": "yes"}}, "/smtp/allowPlaintext"),
    ({"image": {"tag": "latest"}}, "/image/tag"),
    ({"image": {"digest": "sha256:abc"}}, "/image/digest"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"bus": {"namespace": "eh.prod"}}, "/bus/namespace"),
    ({"bus": {"streamReplicas": 7}}, "/bus/streamReplicas"),
    ({"tenants": {"Worcs": {"name": "Worcestershire"}}}, "Worcs"),
    ({"tenants": {"worcs": {"oidc": {"issuer": "https://i", "audience": "a", "jwks_url": "https://j"}}}}, "name"),
    ({"tenants": {"worcs": {"name": "W", "api_keys": [{"name": "k", "sha256": "nothex"}]}}}, "sha256"),
    ({"monolithic": {"pdb": {"minAvailable": "2"}}}, "/monolithic/pdb/minAvailable"),
    ({"monolithic": {"resources": {"limits": {"memory": "lots"}}}}, "/monolithic/resources/limits/memory"),
    ({"podSecurityContext": {"runAsUser": -1}}, "/podSecurityContext/runAsUser"),
    ({"server": {"httpPort": 80}}, "/server/httpPort"),
    ({"ingress": {"hosts": [{"host": "x.example", "paths": [{"path": "api", "pathType": "Prefix"}]}]}}, "/ingress/hosts/0/paths/0/path"),
    ({"networkPolicy": {"database": {"ports": ["5432"]}}}, "/networkPolicy/database/ports/0"),
    ({"imagePullSecrets": ["regcred"]}, "/imagePullSecrets/0"),
    ({"extraConfig": "demo: true"}, "/extraConfig"),
    ({"deploymentMode": "evaluation"}, "/deploymentMode"),
    ({"embedded": {"replicas": -1}}, "/embedded/replicas"),
    ({"embedded": {"persistence": {"size": "lots"}}}, "/embedded/persistence/size"),
    ({"embedded": {"persistence": {"accessModes": ["ReadWriteSometimes"]}}}, "/embedded/persistence/accessModes/0"),
    ({"embedded": {"mailCatcher": {"image": {"tag": "latest"}}}}, "/embedded/mailCatcher/image/tag"),
]


def test_the_base_value_set_is_valid():
    chartlib.render(BASE)


@pytest.mark.parametrize(("override", "mentions"), UNKNOWN_KEYS, ids=lambda v: json.dumps(v) if isinstance(v, dict) else v)
def test_schema_refuses_unknown_keys(override, mentions):
    with pytest.raises(helm.HelmValuesError) as err:
        chartlib.render(chartlib.deep_merge(BASE, override))
    assert "additional properties" in str(err.value) and mentions in str(err.value), str(err.value)


@pytest.mark.parametrize(("override", "mentions"), WRONG_TYPES, ids=lambda v: json.dumps(v) if isinstance(v, dict) else v)
def test_schema_refuses_wrong_types_and_values(override, mentions):
    with pytest.raises(helm.HelmValuesError) as err:
        chartlib.render(chartlib.deep_merge(BASE, override))
    assert mentions in str(err.value), str(err.value)


def test_helm_lint_reports_schema_errors():
    report = chartlib.lint(chartlib.deep_merge(BASE, {"monolithic": {"replicas": "two"}}), None)
    assert report["errors"], report


# (values replacing the base, text of the chart's own error message)
INCONSISTENT = [
    ({"deploymentMode": "monolithic"}, "database.url is required in monolithic mode"),
    ({"deploymentMode": "distributed"}, "database.url is required in distributed mode"),
    ({"deploymentMode": "monolithic", "database": {"url": "postgres://u@db:5432/eh"}}, "bus.natsUrl is required in monolithic mode"),
    ({"deploymentMode": "distributed", "database": {"url": "postgres://u@db:5432/eh"}}, "bus.natsUrl is required in distributed mode"),
    ({"embedded": {"replicas": 2}}, "embedded.replicas is 2: embedded mode keeps every service's data and its event bus in SQLite files on one volume"),
    ({"database": {"url": "postgres://u@db:5432/eh"}}, "database.url is set but deploymentMode is embedded"),
    ({"bus": {"natsUrl": "nats://nats:4222"}}, "bus.natsUrl is set but deploymentMode is embedded"),
    ({"database": {"existingSecret": {"name": "db", "urlKey": "url"}}}, "database.existingSecret.urlKey is set but deploymentMode is embedded"),
    ({"embedded": {"persistence": {"accessModes": []}}}, "embedded.persistence.accessModes is empty"),
    ({**BASE, "smtp": {"host": ""}}, "smtp.host is required: the notifications service (monolithic) does not start without a mail relay"),
    ({**chartlib.ci_values("distributed"), "smtp": {"host": ""}}, "smtp.host is required: the notifications service (targets.notifications)"),
    ({"embedded": {"mailCatcher": {"enabled": False}}}, "smtp.host is required when embedded.mailCatcher.enabled is false"),
    ({**BASE, "database": {"url": "postgres://earlyhelp:hunter2@db:5432/eh"}}, "must not contain a password"),
    ({**BASE, "bus": {"natsUrl": "http://nats:4222"}}, "is not a nats://"),
    ({**BASE, "terminationGracePeriodSeconds": 25}, "terminationGracePeriodSeconds (25) must be greater than"),
    ({**BASE, "server": {"shutdownGraceSecs": 60}}, "must be greater than server.shutdownGraceSecs (60)"),
    ({**BASE, "deploymentMode": "distributed", "ingress": {"enabled": True}, "targets": {"gateway": {"enabled": False}}}, "needs the gateway target"),
    ({**chartlib.ci_values("distributed"), "targets": {"gateway": {"enabled": False}}}, "targets.records needs targets.gateway enabled"),
    ({**chartlib.ci_values("distributed"), "targets": {"notifications": {"enabled": False}}}, "targets.records needs targets.notifications enabled"),
    ({**BASE, "deploymentMode": "distributed", "targets": {"intake": {"enabled": False}, "consent": {"enabled": False}, "casework": {"enabled": False}, "notifications": {"enabled": False}, "allocation": {"enabled": False}, "assessment": {"enabled": False}, "reporting": {"enabled": False}, "records": {"enabled": False}, "gateway": {"enabled": False}}}, "no entry of targets is enabled"),
    ({**BASE, "database": {**BASE["database"], "ca": {"secretName": "a", "configMapName": "b"}}}, "database.ca: set secretName or configMapName, not both"),
    ({**BASE, "existingTenants": {"secretName": "a", "configMapName": "b"}}, "existingTenants: set configMapName or secretName"),
    ({**BASE, "smtp": {"host": "smtp.example"}}, "smtp.from is required"),
    ({**BASE, "smtp": {"host": "smtp.example", "from": "x@example", "username": "u"}}, "smtp.existingSecret.name"),
    ({**BASE, "smtp": {"host": "smtp.example", "from": "x@example", "tls": "none"}}, "set smtp.allowPlaintext: true to accept plaintext"),
    ({**BASE, "extraConfig": {"demo": True}}, "extraConfig.demo is managed by the chart"),
    ({**BASE, "extraConfig": {"database": {"migrate_on_start": True}}}, "extraConfig.database.migrate_on_start"),
    ({**BASE, "extraConfig": {"smtp": {"password": "x"}}}, "extraConfig.smtp.password"),
    ({**BASE, "monolithic": {"pdb": {"minAvailable": 1, "maxUnavailable": 1}}}, "monolithic.pdb: set exactly one"),
    ({**BASE, "monolithic": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}}, "minReplicas (5) is greater than maxReplicas (2)"),
    ({**BASE, "database": {"url": "", "existingSecret": {"urlKey": "url"}}}, "database.existingSecret.name is empty"),
    ({**BASE, "audit": {"existingSecret": {"name": ""}}}, "audit.existingSecret.name is required in monolithic mode"),
    ({**BASE, "extraConfig": {"audit": {"hmac_key": "x" * 40}}}, "extraConfig.audit.hmac_key"),
]


@pytest.mark.parametrize(("values", "message"), INCONSISTENT, ids=[m for _, m in INCONSISTENT])
def test_inconsistent_values_fail_with_a_clear_message(values, message):
    with pytest.raises(helm.HelmRenderError) as err:
        chartlib.render(values)
    assert message in str(err.value), str(err.value)
    assert "earlyhelp: the values cannot be installed" in str(err.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(helm.HelmRenderError) as err:
        chartlib.render({"deploymentMode": "distributed"})
    assert "database.url is required" in str(err.value) and "bus.natsUrl is required" in str(err.value)
    with pytest.raises(helm.HelmRenderError) as err:
        chartlib.render({"embedded": {"replicas": 3}, "database": {"url": "postgres://u@db:5432/eh"}})
    assert "embedded.replicas is 3" in str(err.value) and "database.url is set" in str(err.value)


def test_without_the_notifications_service_no_mail_relay_is_needed():
    # (records too: it would wait for notifications' confirmation of every destruction)
    values = chartlib.deep_merge(chartlib.ci_values("distributed"), {"smtp": {"host": ""}, "targets": {"notifications": {"enabled": False}, "records": {"enabled": False}}})
    chartlib.render(values)
    chartlib.render(chartlib.deep_merge(BASE, {"smtp": {"host": ""}, "extraConfig": {"smtp": {"host": "relay.example"}}}))


def test_a_production_values_file_without_a_mode_is_refused_not_installed_as_an_evaluation():
    """Values written when monolithic was the default (a database, no deploymentMode) must not
    quietly become an evaluation on an empty SQLite volume."""
    values = {k: v for k, v in BASE.items() if k != "deploymentMode"}
    with pytest.raises(helm.HelmRenderError) as err:
        chartlib.render(values)
    assert "deploymentMode is embedded" in str(err.value) and "set deploymentMode=monolithic or distributed" in str(err.value)


def test_ci_value_sets_cover_every_mode_the_default_and_a_full_featured_set():
    names = {p.name for p in chartlib.ci_values_files()}
    assert {"embedded-values.yaml", "monolithic-values.yaml", "distributed-values.yaml", "full-values.yaml"} <= names
    assert chartlib.ci_values("embedded") == {}, "the evaluation case is the chart with no values at all"
    modes = {chartlib.load_values(p).get("deploymentMode", "embedded") for p in chartlib.ci_values_files()}
    assert modes == {"embedded", "monolithic", "distributed"}


def test_every_ci_value_set_passes_the_schema(ci):
    chartlib.chart().validate_schema(ci.values)


def test_notes_say_what_was_installed_and_how_to_reach_it(ci):
    text = chartlib.notes(ci.templates)
    assert f'release "{chartlib.RELEASE}"' in text and f"({ci.mode} mode)" in text
    assert f"helm test {chartlib.RELEASE}" in text
    assert "port-forward" in text or "Ingress ->" in text
    for d in [o for o in ci.objects if o["kind"] == "Deployment"]:
        assert d["metadata"]["name"] in text
