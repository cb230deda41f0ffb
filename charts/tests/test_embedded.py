"""The default install (no values at all) is a working evaluation: every service in one pod
(`run --target all`), the binary's embedded mode (SQLite and the in-process bus) on a
PersistentVolumeClaim the container user can write, one replica that cannot be scaled, no demo
council or demo token issuer, mail caught by Mailpit; NOTES.txt says how to move to the
PostgreSQL/NATS modes, which keep requiring their database and bus."""

from __future__ import annotations

import helm_python as helm
import pytest

import chartlib
import checks

DATA_DIR = "/var/lib/earlyhelp"


def _server(objs):
    (d,) = checks.server_deployments(objs)
    return d


def _container(d, name="earlyhelp"):
    return next(c for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def _env(c):
    return {e["name"]: e.get("value") for e in c.get("env") or []}


def test_the_chart_installs_with_no_values_at_all():
    rendered = chartlib.render({})  # would raise on the chart's own `fail` or the schema
    assert checks.server_deployments([d for _, d in chartlib.documents(rendered)])
    assert chartlib.lint(None, "v1.31.0")["errors"] == []


def test_default_is_one_pod_running_every_service(embedded):
    d = _server(embedded.objects)
    assert d["spec"]["replicas"] == 1
    assert _container(d)["args"][:3] == ["run", "--target", "all"]
    # Recreate: the old pod has stopped before the new one opens the same SQLite files.
    assert d["spec"]["strategy"] == {"type": "Recreate"}
    assert not checks.of_kind(embedded.objects, "HorizontalPodAutoscaler")
    assert not checks.of_kind(embedded.objects, "PodDisruptionBudget")


def test_default_is_embedded_mode_without_a_demo_council_or_issuer(embedded):
    config = checks.config_of(embedded.objects)
    assert config["mode"] == "embedded"
    # demo: false turns off the demo council and the development token issuer, which the
    # binary would otherwise switch on in embedded mode (Settings::demo_enabled).
    assert config["demo"] is False
    assert "tenants" not in config and "service_keys" not in config
    assert "url" not in config["database"] and "nats_url" not in config["bus"]
    env = _env(_container(_server(embedded.objects)))
    assert env["EH__MODE"] == "embedded" and env["EH__DEMO"] == "false"
    assert not any(k.startswith(("EH__DATABASE__URL", "EH__DATABASE__PASSWORD", "EH__TENANTS")) for k in env)


def test_default_keeps_the_data_on_a_persistent_volume_claim_the_container_can_write(embedded):
    (pvc,) = checks.of_kind(embedded.objects, "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert "storageClassName" not in pvc["spec"]  # the cluster's default class
    d = _server(embedded.objects)
    spec = d["spec"]["template"]["spec"]
    data = next(v for v in spec["volumes"] if v["name"] == "data")
    assert data["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    c = _container(d)
    mount = next(m for m in c["volumeMounts"] if m["name"] == "data")
    # The binary's data_dir (SQLite files, one per service plus the bus) is the mounted volume,
    # in the config file and in the environment that wins over it.
    assert mount["mountPath"] == DATA_DIR and not mount.get("readOnly")
    assert checks.config_of(embedded.objects)["data_dir"] == DATA_DIR
    assert _env(c)["EH__DATA_DIR"] == DATA_DIR
    # The image's user (65532) writes the volume: the kubelet gives it to that group.
    psc = spec["securityContext"]
    assert psc["runAsUser"] == 65532 and psc["fsGroup"] == 65532
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_default_catches_mail_in_mailpit_inside_the_pod(embedded):
    config = checks.config_of(embedded.objects)
    assert config["smtp"]["host"] == "127.0.0.1" and config["smtp"]["port"] == 1025 and config["smtp"]["tls"] == "none"
    # Plaintext that never leaves the pod, accepted explicitly: the binary refuses it otherwise.
    assert config["smtp"]["allow_plaintext"] is True
    mailpit = _container(_server(embedded.objects), "mailpit")
    env = _env(mailpit)
    assert env["MP_SMTP_BIND_ADDR"] == "127.0.0.1:1025"  # SMTP only from inside the pod
    assert checks.image_tag(mailpit["image"]) not in ("", "latest")
    text = chartlib.notes(embedded.templates)
    assert "port-forward deploy/eh-earlyhelp 8025:8025" in text


def test_no_migration_job_in_embedded_mode(embedded):
    assert not checks.of_kind(embedded.objects, "Job")


def test_notes_say_it_is_an_evaluation_and_how_to_move_to_distributed_mode(embedded):
    text = chartlib.notes(embedded.templates)
    assert "(embedded mode)" in text and "EVALUATION" in text
    assert "no demo council and no demo token issuer" in text
    assert "deploymentMode: monolithic" in text and "or distributed" in text
    assert "database:" in text and "natsUrl:" in text
    assert "not carried over" in text
    assert "No council (tenant) is configured" in text
    assert "runs a single replica" not in text  # said once, as the nature of the mode
    assert "the notifications service has no mail relay" not in text  # Mailpit takes the mail


def test_embedded_cannot_be_scaled():
    with pytest.raises(helm.HelmRenderError) as err:
        chartlib.render({"embedded": {"replicas": 2}})
    message = str(err.value)
    assert "embedded.replicas is 2" in message and "runs 1 replica" in message
    assert "deploymentMode=monolithic or distributed" in message
    assert _server(chartlib.objects({"embedded": {"replicas": 0}}))["spec"]["replicas"] == 0


@pytest.mark.parametrize("mode", ["monolithic", "distributed"])
def test_the_postgresql_and_nats_modes_still_require_them(mode):
    with pytest.raises(helm.HelmRenderError) as err:
        chartlib.render({"deploymentMode": mode})
    message = str(err.value)
    assert "earlyhelp: the values cannot be installed" in message
    assert f"database.url is required in {mode} mode" in message
    assert f"bus.natsUrl is required in {mode} mode" in message
    assert "use deploymentMode=embedded" in message


def test_moving_to_monolithic_switches_the_binary_to_postgresql_and_nats():
    values = {
        "deploymentMode": "monolithic",
        "database": {
            "url": "postgres://earlyhelp@pg:5432/earlyhelp",
            "owner": {"url": "postgres://earlyhelp_owner@pg:5432/earlyhelp"},
        },
        "bus": {"natsUrl": "nats://nats:4222"},
        "smtp": {"host": "smtp.example.gov.uk", "from": "Early Help <no-reply@example.gov.uk>"},
        "audit": {"existingSecret": {"name": "earlyhelp-audit"}},
    }
    objs = chartlib.objects(values)
    config = checks.config_of(objs)
    assert config["mode"] == "distributed" and "data_dir" not in config
    assert not checks.of_kind(objs, "PersistentVolumeClaim")
    d = _server(objs)
    assert [c["name"] for c in d["spec"]["template"]["spec"]["containers"]] == ["earlyhelp"]
    assert "data" not in {v["name"] for v in d["spec"]["template"]["spec"]["volumes"]}
    assert d["spec"]["strategy"]["type"] == "RollingUpdate"
    assert checks.migration_problems(objs) == []
    # The audit trail's key, from its Secret, never in the config file.
    env = {e["name"]: e for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["EH__AUDIT__HMAC_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "earlyhelp-audit", "key": "hmac-key"}
    assert "audit" not in config


def test_an_smtp_relay_replaces_mailpit(embedded_custom):
    d = _server(embedded_custom.objects)
    assert [c["name"] for c in d["spec"]["template"]["spec"]["containers"]] == ["earlyhelp"]
    assert "mailpit-tmp" not in {v["name"] for v in d["spec"]["template"]["spec"]["volumes"]}
    assert checks.config_of(embedded_custom.objects)["smtp"]["host"] == "smtp.example.gov.uk"


def test_persistence_settings(embedded_custom):
    (pvc,) = checks.of_kind(embedded_custom.objects, "PersistentVolumeClaim")
    assert pvc["spec"]["storageClassName"] == "fast-ssd"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # "-": no class, for a pre-provisioned volume
    (pvc,) = checks.of_kind(chartlib.objects({"embedded": {"persistence": {"storageClassName": "-"}}}), "PersistentVolumeClaim")
    assert pvc["spec"]["storageClassName"] == ""
    # an existing claim: mounted, none created
    objs = chartlib.objects({"embedded": {"persistence": {"existingClaim": "earlyhelp-eval"}}})
    assert not checks.of_kind(objs, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in _server(objs)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "earlyhelp-eval"


def test_without_persistence_the_data_is_on_an_empty_dir_and_the_notes_say_it_is_lost():
    rendered = chartlib.render({"embedded": {"persistence": {"enabled": False, "size": "1Gi"}}})
    objs = [d for _, d in chartlib.documents(rendered)]
    assert not checks.of_kind(objs, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in _server(objs)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}
    assert "everything is lost when the pod goes" in chartlib.notes(rendered)


def test_database_and_nats_settings_do_not_leak_into_embedded_mode():
    """Secrets and CA bundles named for PostgreSQL/NATS are not mounted in embedded mode: they
    would be unused, and a missing one would keep the pod from starting."""
    values = {
        "database": {"existingSecret": {"name": "earlyhelp-database"}, "ca": {"secretName": "pg-ca"}},
        "bus": {"credentials": {"secretName": "nats-creds"}, "ca": {"secretName": "nats-ca"}},
    }
    objs = chartlib.objects(values)
    d = _server(objs)
    text = repr(d["spec"]["template"]["spec"]["volumes"]) + repr(_container(d).get("env"))
    for name in ("earlyhelp-database", "pg-ca", "nats-creds", "nats-ca"):
        assert name not in text
    config = checks.config_of(objs)
    assert "ca_file" not in config["database"] and "ca_file" not in config["bus"] and "credentials_file" not in config["bus"]
