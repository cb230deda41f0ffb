"""The NATS accounts the chart renders (bus.accounts): expanded by Helm from the rights table
files/nats-rights.json, which `earlyhelp nats-rights` generates from the event catalogue (a Rust
test fails when the chart's copy is stale). For the same namespace and councils the rendered
accounts.conf is exactly what `earlyhelp nats-config` prints (the Rust tests keep the two files
compared here equal to it), and a real nats-server accepts it; each pod connects as its service's
user, its own password from the Secret."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import helm_python as helm
import pytest

import chartlib
import checks
from conftest import rendered_ci

# `earlyhelp nats-config --tenants staffs,worcs` (namespace eh), and with namespace eh-t1 and
# councils a-b, herts: src/natsconf.rs's tests fail when either is not what the code generates.
INFRA_ACCOUNTS = chartlib.REPO / "infra" / "nats" / "accounts.conf"
GOLDEN_EH_T1 = chartlib.REPO / "charts" / "tests" / "golden" / "nats-accounts-eh-t1.conf"
SECRET = "earlyhelp-nats-passwords"


def _values(mode: str = "distributed", **bus_accounts) -> dict:
    base = chartlib.ci_values("nats-accounts" if mode == "distributed" else mode)
    accounts = {"enabled": True, "existingSecret": SECRET, "tenants": []} | bus_accounts
    return chartlib.deep_merge(base, {"bus": {"accounts": accounts}})


def _accounts_conf(templates: dict[str, str]) -> str:
    maps = [d for _, d in chartlib.documents(templates) if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-nats-accounts")]
    assert len(maps) == 1, [d["metadata"]["name"] for d in maps]
    return maps[0]["data"]["accounts.conf"]


def test_the_rendered_accounts_are_what_earlyhelp_nats_config_prints():
    values = _values()
    values["tenants"] = {"worcs": {"name": "Worcestershire"}, "staffs": {"name": "Staffordshire"}}
    assert _accounts_conf(chartlib.render(values)) == INFRA_ACCOUNTS.read_text()


def test_another_namespace_and_councils_named_only_for_nats():
    values = _values(tenants=["herts", "a-b"])
    values["tenants"] = {}
    values["bus"]["namespace"] = "eh-t1"
    conf = _accounts_conf(chartlib.render(values))
    assert conf == GOLDEN_EH_T1.read_text()
    # A council id with a `-`: `_` in its account, stream and password names.
    assert "COUNCIL_A_B {" in conf and '"$JS.ACK.EH_T1_INBOUND_A_B.>"' in conf
    assert 'publish: { allow: ["eh-t1.a-b.inbound.>"] }' in conf
    assert "$EH_NATS_PASSWORD_A_B_UPSTREAM" in conf


def _users(conf: str) -> dict[str, tuple[list[str], list[str]]]:
    out = {}
    for m in re.finditer(r'\{ user: "([^"]+)", password: \$(\w+), permissions: \{\n\s+publish: \{ allow: \[(.*?)\] \}\n\s+subscribe: \{ allow: \[(.*?)\] \}', conf):
        user, var, pub, sub = m.groups()
        assert var == "EH_NATS_PASSWORD_" + re.sub(r"[^A-Za-z0-9]", "_", user).upper()
        out[user] = (re.findall(r'"([^"]+)"', pub), re.findall(r'"([^"]+)"', sub))
    return out


def test_upstream_systems_may_publish_only_their_councils_inbound_subjects():
    conf = _accounts_conf(rendered_ci("nats-accounts").templates)
    users = _users(conf)
    councils = ["herts", "staffs", "worcs"]
    for c in councils:
        publish, subscribe = users[f"{c}-upstream"]
        assert publish == [f"eh.{c}.inbound.>"]
        assert subscribe == ["_INBOX.>", f"eh.{c}.intake.referral_rejected"]
        assert f"COUNCIL_{c.upper()} {{" in conf
    # The services' users: their own events, never an inbound subject nor the whole API.
    intake_pub, _ = users["intake"]
    assert "eh.*.intake.referral_received" in intake_pub
    assert not any(".casework." in s or ".inbound." in s for s in intake_pub)
    assert {f"$JS.API.CONSUMER.MSG.NEXT.EH_INBOUND_{c.upper()}.>" for c in councils} <= set(intake_pub)
    for user, (publish, _) in users.items():
        if user != "earlyhelp-operator":
            assert "$JS.API.>" not in publish and "eh.>" not in publish, user
    casework_pub, _ = users["casework"]
    assert "eh.*.casework.case_state_changed" in casework_pub
    assert "eh.*.intake.referral_received" not in casework_pub
    # The gateway reads casework's stream for its webhooks' status updates and records' for its
    # destruction orders: it may consume them and dead-letter what it cannot handle, and
    # publishes only its confirmations of destructions (and its audit checkpoints).
    gateway_pub, gateway_sub = users["gateway"]
    assert gateway_sub == ["_INBOX.>"]
    for stream in ("EH_CASEWORK", "EH_RECORDS"):
        assert f"$JS.API.CONSUMER.MSG.NEXT.{stream}.>" in gateway_pub and f"$JS.ACK.{stream}.>" in gateway_pub
    assert sorted(s for s in gateway_pub if s.startswith("eh.")) == [
        "eh.*.gateway.family_records_destroyed",
        "eh.audit.gateway",
        "eh.dlq.gateway_case_state_changed",
        "eh.dlq.gateway_destruction_ordered",
    ]
    assert not any(".inbound." in s or "EH_INBOUND" in s or "EH_INTAKE" in s for s in gateway_pub)


def test_each_pod_connects_as_its_services_user_with_its_own_password():
    r = rendered_ci("nats-accounts")
    users = _users(_accounts_conf(r.templates))
    deployments = checks.server_deployments(r.objects)
    assert deployments
    for d in deployments:
        container = d["spec"]["template"]["spec"]["containers"][0]
        target = container["args"][container["args"].index("--target") + 1]
        user = "earlyhelp" if target == "all" else target
        assert user in users, user
        env = container["env"]
        names = [e["name"] for e in env]
        pw = env[names.index("EH_NATS_PASSWORD")]
        var = "EH_NATS_PASSWORD_" + re.sub(r"[^A-Za-z0-9]", "_", user).upper()
        assert pw["valueFrom"]["secretKeyRef"] == {"name": SECRET, "key": var}
        url = env[names.index("EH__BUS__NATS_URL")]
        # Defined after the password, so Kubernetes substitutes it; every URL of the list.
        assert names.index("EH__BUS__NATS_URL") > names.index("EH_NATS_PASSWORD")
        assert url["value"] == f"nats://{user}:$(EH_NATS_PASSWORD)@nats-0.nats.nats.svc:4222,tls://{user}:$(EH_NATS_PASSWORD)@nats-1.nats.nats.svc:4222"
        # No other user's password reaches the pod.
        refs = [e["valueFrom"]["secretKeyRef"] for e in env if "secretKeyRef" in e.get("valueFrom", {})]
        assert [x["key"] for x in refs if x["name"] == SECRET] == [var]


def test_monolithic_pods_connect_as_the_user_of_every_service():
    values = _values("monolithic")
    values["tenants"] = {"worcs": {"name": "Worcestershire"}}
    objs = [d for _, d in chartlib.documents(chartlib.render(values))]
    (d,) = checks.server_deployments(objs)
    env = {e["name"]: e for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["EH_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "EH_NATS_PASSWORD_EARLYHELP"
    assert env["EH__BUS__NATS_URL"]["value"] == "nats://earlyhelp:$(EH_NATS_PASSWORD)@nats.nats.svc:4222"


def test_without_accounts_nothing_changes():
    r = rendered_ci("distributed")
    assert not any(name.endswith("nats-accounts.yaml") and text.strip() for name, text in r.templates.items())
    for d in checks.server_deployments(r.objects):
        names = [e["name"] for e in d["spec"]["template"]["spec"]["containers"][0]["env"]]
        assert "EH_NATS_PASSWORD" not in names and "EH__BUS__NATS_URL" not in names


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bus": {"accounts": {"existingSecret": ""}}}, "bus.accounts.enabled needs bus.accounts.existingSecret"),
        ({"bus": {"natsUrl": "nats://svc:pw@nats:4222"}}, "bus.natsUrl carries a user"),
        ({"bus": {"credentials": {"secretName": "creds"}}}, "not both"),
    ],
)
def test_wrong_accounts_settings_are_refused(change, message):
    values = chartlib.deep_merge(chartlib.ci_values("nats-accounts"), change)
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        chartlib.render(values)


def test_accounts_without_a_council_are_refused():
    values = chartlib.ci_values("nats-accounts")
    values["tenants"] = {}
    values["bus"]["accounts"]["tenants"] = []
    with pytest.raises(helm.HelmRenderError, match=re.escape("bus.accounts.enabled but no council")):
        chartlib.render(values)


def test_embedded_mode_refuses_nats_accounts():
    with pytest.raises(helm.HelmRenderError, match=re.escape("bus.accounts.enabled is set but deploymentMode is embedded")):
        chartlib.render({"bus": {"accounts": {"enabled": True, "existingSecret": SECRET}}})


def _nats_server() -> str | None:
    return shutil.which("nats-server") or next((p for p in ["/usr/sbin/nats-server", "/usr/local/bin/nats-server"] if Path(p).exists()), None)


def test_a_real_nats_server_accepts_the_rendered_configuration(tmp_path: Path):
    server = _nats_server()
    if server is None:
        pytest.skip("nats-server is not installed")
    conf = _accounts_conf(rendered_ci("nats-accounts").templates)
    (tmp_path / "accounts.conf").write_text(conf)
    (tmp_path / "nats-server.conf").write_text("port: -1\njetstream { store_dir: " + str(tmp_path / "js") + " }\ninclude ./accounts.conf\n")
    env = dict(os.environ)
    for var in set(re.findall(r"\$(EH_NATS_PASSWORD_\w+)", conf)):
        env[var] = "pw" + var.lower().replace("_", "")
    ok = subprocess.run([server, "-t", "-c", str(tmp_path / "nats-server.conf")], env=env, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # A password it cannot find is an error the server names (so the check above means something).
    env.pop("EH_NATS_PASSWORD_WORCS_UPSTREAM")
    bad = subprocess.run([server, "-t", "-c", str(tmp_path / "nats-server.conf")], env=env, capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "EH_NATS_PASSWORD_WORCS_UPSTREAM" in bad.stdout + bad.stderr
