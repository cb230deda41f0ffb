"""The gateway in the chart and the image: the other services' gRPC Services it calls in
distributed mode, its console (GOV.UK Frontend in the image, the session key from a Secret) and
its outbound webhooks (signing secrets mounted from Secrets, HTTPS egress only when there are any)."""

from __future__ import annotations

import re

import helm_python as helm
import pytest

import chartlib
import checks
from conftest import rendered_ci

DOCKERFILE = chartlib.REPO / "Dockerfile"
SESSION_KEY_ENV = "EH__GATEWAY__CONSOLE__SESSION_KEY"
ASSETS_ENV = "EH__GATEWAY__CONSOLE__ASSETS_DIR"
# The services the gateway calls (services/gateway/src/settings.rs: GatewaySettings' *_url).
CALLED = ["intake", "casework", "consent", "notifications", "allocation", "assessment"]
# Distributed without the gateway (and so without records, which asks it).
NO_GATEWAY = {"gateway": {"enabled": False}, "records": {"enabled": False}}


def _target(deployment) -> str:
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args[args.index("--target") + 1]


def _env(deployment) -> dict[str, dict]:
    return {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0].get("env", [])}


def _config_items(deployment) -> dict[str, dict]:
    """path inside /etc/earlyhelp -> the projected source (secret/configMap) it comes from."""
    vol = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
    out = {}
    for source in vol["projected"]["sources"]:
        ((kind, src),) = source.items()
        for item in src.get("items", []):
            out[item["path"]] = {"kind": kind, "name": src["name"], "key": item["key"]}
    return out


def _runs_gateway(deployment) -> bool:
    return _target(deployment) in ("gateway", "all")


def _policies(objs, suffix: str):
    return [p for p in checks.of_kind(objs, "NetworkPolicy") if p["metadata"]["name"].endswith(suffix)]


# --- the services' gRPC Services ----------------------------------------------------------------


def test_in_distributed_mode_the_gateway_calls_each_services_grpc_service(full):
    gateway = checks.config_of(full.objects)["gateway"]
    services = {s["metadata"]["name"]: s for s in checks.of_kind(full.objects, "Service")}
    for svc in CALLED:
        url = gateway[f"{svc}_url"]
        m = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", url)
        assert m, url
        service = services[m.group(1)]
        assert service["spec"]["selector"]["app.kubernetes.io/component"] == svc
        grpc = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
        assert int(m.group(2)) == grpc["port"] == chartlib.chart().values["service"]["grpcPort"]


def test_the_service_urls_follow_the_release_and_port():
    values = chartlib.deep_merge(chartlib.ci_values("distributed"), {"service": {"grpcPort": 50099}, "targets": {"gateway": {"enabled": True}}})
    gateway = checks.config_of(chartlib.objects(values, name="council"))["gateway"]
    assert gateway["intake_url"] == "http://council-earlyhelp-intake:50099"
    assert gateway["allocation_url"] == "http://council-earlyhelp-allocation:50099"


# --- the gateway in the family's data rights: records asks it, and only records -------------------


def _selects(np, labels: dict[str, str]) -> bool:
    sel = np["spec"]["podSelector"]
    if not checks.selects(sel.get("matchLabels") or {}, labels):
        return False
    for e in sel.get("matchExpressions") or []:
        value = labels.get(e["key"])
        if (e["operator"] == "NotIn" and value in e["values"]) or (e["operator"] == "In" and value not in e["values"]):
            return False
    return True


def _grpc_peers(objs, target: str) -> list[dict]:
    """Every peer any NetworkPolicy lets reach the gRPC port of `target`'s pods."""
    port = chartlib.chart().values["server"]["grpcPort"]
    deployment = next(d for d in checks.of_kind(objs, "Deployment") if _target(d) == target)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return [
        peer
        for np in checks.of_kind(objs, "NetworkPolicy")
        if _selects(np, labels)
        for rule in np["spec"].get("ingress") or []
        if any(p.get("port") == port for p in rule.get("ports") or [])
        for peer in rule.get("from") or []
    ]


def _components(peers: list[dict]) -> set[str]:
    return {p["podSelector"]["matchLabels"].get("app.kubernetes.io/component", "every server pod") for p in peers}


def test_records_asks_the_gateway_whose_grpc_port_is_open_to_records_only(distributed):
    port = chartlib.chart().values["service"]["grpcPort"]
    urls = checks.config_of(distributed.objects)["records"]["service_urls"]
    assert urls["gateway"] == f"http://eh-earlyhelp-gateway:{port}"
    assert _components(_grpc_peers(distributed.objects, "gateway")) == {"records", "test"}
    # The other services still take gRPC from every server pod (the gateway calls them).
    for target in ("intake", "records"):
        assert _components(_grpc_peers(distributed.objects, target)) == {"every server pod", "test"}, target


def test_records_needs_every_service_it_asks():
    without = chartlib.deep_merge(chartlib.ci_values("distributed"), {"targets": {"gateway": {"enabled": False}}})
    with pytest.raises(helm.HelmRenderError) as err:
        chartlib.render(without)
    assert "targets.records needs targets.gateway enabled" in str(err.value)
    # Without records, nothing waits for the gateway.
    chartlib.render(chartlib.deep_merge(without, {"targets": {"records": {"enabled": False}}}))


@pytest.mark.parametrize("name", ["monolithic", "monolithic-ingress", "embedded", "embedded-custom"])
def test_in_one_process_the_gateway_calls_its_own_listener(name):
    # Empty *_url: the process's own gRPC listener, where every service runs in these modes.
    gateway = checks.config_of(rendered_ci(name).objects)["gateway"]
    assert not [k for k in gateway if k.endswith("_url")], gateway


# --- the console ------------------------------------------------------------------------------


def test_the_console_settings_are_rendered(full):
    console = checks.config_of(full.objects)["gateway"]["console"]
    assert console == {
        "enabled": True,
        "public_url": "https://earlyhelp.worcestershire.example.gov.uk",
        "assets_dir": "/usr/share/earlyhelp/govuk-frontend",
        "idle_timeout_minutes": 20,
        "absolute_timeout_hours": 8,
    }
    # Never the key itself, nor a place for it: it comes from the environment.
    assert "session_key" not in console and "session_key_file" not in console


def test_the_session_key_comes_from_its_secret_into_the_gateway_pods_only(full):
    deployments = checks.server_deployments(full.objects)
    assert {_target(d) for d in deployments} >= {"gateway", "intake"}
    for d in deployments:
        env = _env(d)
        if _target(d) == "gateway":
            assert env[SESSION_KEY_ENV]["valueFrom"] == {"secretKeyRef": {"name": "earlyhelp-console", "key": "session-key"}}
            assert "value" not in env[SESSION_KEY_ENV]
        else:
            assert SESSION_KEY_ENV not in env and ASSETS_ENV not in env, _target(d)
    for cm in checks.of_kind(full.objects, "ConfigMap"):
        assert "session-key" not in str(cm.get("data")) and "earlyhelp-console" not in str(cm.get("data"))


@pytest.mark.parametrize("name", ["monolithic", "embedded"])
def test_without_a_session_key_secret_there_is_no_key_variable(name):
    # The gateway then derives its key from the audit key (or, embedded, keeps one on the volume).
    (d,) = checks.server_deployments(rendered_ci(name).objects)
    assert SESSION_KEY_ENV not in _env(d)


def test_a_session_key_secret_in_monolithic_mode():
    values = chartlib.deep_merge(chartlib.ci_values("monolithic"), {"gateway": {"console": {"existingSecret": {"name": "eh-console", "sessionKeyKey": "k"}}}})
    (d,) = checks.server_deployments(chartlib.objects(values))
    assert _env(d)[SESSION_KEY_ENV]["valueFrom"]["secretKeyRef"] == {"name": "eh-console", "key": "k"}


def test_every_gateway_container_is_told_where_the_image_keeps_the_assets(ci):
    values_dir = chartlib.chart().values["gateway"]["console"]["assetsDir"]
    gateways = [d for d in checks.server_deployments(ci.objects) if _runs_gateway(d)]
    assert gateways, "every ci set runs the gateway (distributed: by default, with records)"
    for d in gateways:
        assert _env(d)[ASSETS_ENV]["value"] == values_dir
        assert checks.config_of(ci.objects)["gateway"]["console"]["assets_dir"] == values_dir


def test_the_image_installs_govuk_frontend_where_the_chart_points_the_gateway():
    text = DOCKERFILE.read_text()
    assets_dir = chartlib.chart().values["gateway"]["console"]["assetsDir"]
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?$", text, re.M)
    names = [s[1] for s in stages]
    assert names[-1] == "" and "console" in names and names.index("console") < len(names) - 1
    console_stage = text.split("AS console", 1)[1].split("\nFROM ", 1)[0]
    # The version package-lock.json pins, from the npm registry, as in development.
    assert "COPY tools/console/ tools/console/" in console_stage
    assert "bash tools/console/install.sh" in console_stage
    assert "tools/console/node_modules/govuk-frontend/dist/govuk /out/govuk-frontend" in console_stage
    final = text.rsplit("\nFROM ", 1)[1]
    assert f"COPY --from=console /out/govuk-frontend {assets_dir}" in final
    assert re.search(rf"^ENV {ASSETS_ENV}={re.escape(assets_dir)}$", final, re.M)
    # What install.sh installs is what the gateway serves by default.
    install = (chartlib.REPO / "tools" / "console" / "install.sh").read_text()
    assert "node_modules/govuk-frontend/dist/govuk" in install
    settings = (chartlib.REPO / "services" / "gateway" / "src" / "settings.rs").read_text()
    assert '"tools/console/node_modules/govuk-frontend/dist/govuk"' in settings
    # A developer's own node_modules never enters the build context.
    assert "tools/console/node_modules/" in (chartlib.REPO / ".dockerignore").read_text().split()


# --- webhooks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["full", "monolithic-ingress"])
def test_each_webhook_secret_is_mounted_where_the_config_reads_it_in_the_gateway_pods_only(name):
    r = rendered_ci(name)
    endpoints = checks.config_of(r.objects)["gateway"]["webhooks"]["endpoints"]
    wanted = r.values["gateway"]["webhooks"]["endpoints"]
    assert len(endpoints) == len(wanted) >= 1
    for d in checks.server_deployments(r.objects):
        items = _config_items(d)
        webhook_items = {p: s for p, s in items.items() if p.startswith("webhooks/")}
        if not _runs_gateway(d):
            assert webhook_items == {}, _target(d)
            continue
        assert len(webhook_items) == len(wanted)
        for e, v in zip(endpoints, wanted):
            assert {k: e[k] for k in ("tenant", "system", "url")} == {k: v[k] for k in ("tenant", "system", "url")}
            assert "secret" not in e
            path = e["secret_file"].removeprefix("/etc/earlyhelp/")
            assert e["secret_file"] != path  # under the config volume's mount
            assert items[path] == {"kind": "secret", "name": v["existingSecret"]["name"], "key": v["existingSecret"]["key"]}
        mount = next(m for m in d["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] if m["name"] == "config")
        assert mount["mountPath"] == "/etc/earlyhelp" and mount["readOnly"]
    # The migration Job never gets them.
    for job in checks.of_kind(r.objects, "Job"):
        vol = next(v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
        assert "webhooks/" not in str(vol)


def test_no_endpoints_no_webhook_secrets(distributed):
    assert checks.config_of(distributed.objects)["gateway"]["webhooks"]["endpoints"] == []


@pytest.mark.parametrize(("name", "component", "ports", "to"), [
    ("full", "gateway", [443], [{"ipBlock": {"cidr": "10.40.0.0/24"}}]),
    ("monolithic-ingress", "all", [8443], None),
])
def test_webhook_egress_is_allowed_from_the_gateway_pods_to_the_endpoints_ports(name, component, ports, to):
    r = rendered_ci(name)
    (policy,) = _policies(r.objects, "-webhooks")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Egress"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
    (rule,) = spec["egress"]
    assert [p["port"] for p in rule["ports"]] == ports and {p["protocol"] for p in rule["ports"]} == {"TCP"}
    assert rule.get("to") == to
    gateways = [d for d in checks.server_deployments(r.objects) if _runs_gateway(d)]
    assert gateways and all(checks.selects(spec["podSelector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"]) for d in gateways)
    others = [d for d in checks.server_deployments(r.objects) if not _runs_gateway(d)]
    assert not any(checks.selects(spec["podSelector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"]) for d in others)


def test_endpoints_on_several_ports_open_each_once():
    values = chartlib.deep_merge(chartlib.ci_values("monolithic-ingress"), {})
    values["tenants"]["worcs"]["api_keys"] += [{"name": "health", "sha256": "0" * 64}, {"name": "police", "sha256": "1" * 64}]
    secret = {"name": "hooks", "key": "k"}
    values["gateway"]["webhooks"]["endpoints"] += [
        {"tenant": "worcs", "system": "health", "url": "https://health.example.gov.uk/hooks", "existingSecret": secret},
        {"tenant": "worcs", "system": "police", "url": "https://police.example.gov.uk:8443/x", "existingSecret": secret},
    ]
    (policy,) = _policies(chartlib.objects(values), "-webhooks")
    assert [p["port"] for p in policy["spec"]["egress"][0]["ports"]] == [8443, 443]


@pytest.mark.parametrize("name", ["embedded", "monolithic", "distributed"])
def test_no_webhook_egress_without_endpoints(name):
    assert _policies(rendered_ci(name).objects, "-webhooks") == []


def test_no_webhook_egress_when_network_policies_are_off():
    values = chartlib.deep_merge(chartlib.ci_values("monolithic-ingress"), {"networkPolicy": {"enabled": False}})
    assert _policies(chartlib.objects(values), "-webhooks") == []


# --- refused values -------------------------------------------------------------------------------

MONO = chartlib.ci_values("monolithic-ingress")
HOOK = MONO["gateway"]["webhooks"]["endpoints"][0]


def _with_endpoints(*endpoints, base=MONO):
    values = chartlib.deep_merge(base, {})
    values["gateway"]["webhooks"]["endpoints"] = list(endpoints)
    return values


REFUSED = [
    (_with_endpoints(HOOK, HOOK), "gateway.webhooks.endpoints[1]: a second endpoint for council worcs's system school-mis"),
    (_with_endpoints({**HOOK, "tenant": "staffs"}), 'gateway.webhooks.endpoints[0].tenant: no council "staffs" in tenants'),
    (_with_endpoints({**HOOK, "system": "health"}), 'gateway.webhooks.endpoints[0].system: council "worcs" has no API key named "health"'),
    (
        chartlib.deep_merge(chartlib.ci_values("distributed"), {"gateway": {"webhooks": {"endpoints": [HOOK]}}, "targets": NO_GATEWAY}),
        "gateway.webhooks.endpoints are set but no pod runs the gateway",
    ),
    (chartlib.deep_merge(MONO, {"gateway": {"console": {"publicUrl": "http://earlyhelp.example.gov.uk"}}}), "gateway.console.publicUrl must be https://"),
    (chartlib.deep_merge(MONO, {"extraConfig": {"gateway": {"webhooks": {"endpoints": []}}}}), "extraConfig.gateway.webhooks is managed by the chart"),
    (chartlib.deep_merge(MONO, {"extraConfig": {"gateway": {"console": {"session_key": "0" * 64}}}}), "extraConfig.gateway.console.session_key must come from a Secret"),
]


@pytest.mark.parametrize(("values", "message"), REFUSED, ids=[m[:60] for _, m in REFUSED])
def test_inconsistent_gateway_values_fail_with_a_clear_message(values, message):
    with pytest.raises(helm.HelmRenderError) as err:
        chartlib.render(values)
    assert message in str(err.value), str(err.value)


def test_a_loopback_public_url_is_accepted():
    chartlib.render(chartlib.deep_merge(MONO, {"gateway": {"console": {"publicUrl": "http://127.0.0.1:8080"}}}))


def test_tenants_from_an_existing_document_are_not_checked_by_the_chart(full):
    # full reads councils from an existing Secret too, which the chart cannot see.
    assert full.values["existingTenants"]["secretName"]
    values = chartlib.deep_merge(full.values, {})
    values["gateway"]["webhooks"]["endpoints"][0]["tenant"] = "herts"
    chartlib.render(values)


SCHEMA_REFUSED = [
    ({**HOOK, "secret": "whsec_" + "A" * 40}, "additional properties"),  # never a secret in values
    ({**HOOK, "url": "http://mis.example.gov.uk/hooks"}, "does not match"),
    ({k: v for k, v in HOOK.items() if k != "existingSecret"}, "missing property 'existingSecret'"),
    ({**HOOK, "existingSecret": {"name": "", "key": "k"}}, "minLength"),
]


@pytest.mark.parametrize(("endpoint", "mentions"), SCHEMA_REFUSED, ids=["inline secret", "plain http", "no secret", "empty secret name"])
def test_the_schema_refuses_a_bad_endpoint(endpoint, mentions):
    with pytest.raises(helm.HelmValuesError) as err:
        chartlib.render(_with_endpoints(endpoint))
    assert mentions in str(err.value), str(err.value)


# --- NOTES.txt ------------------------------------------------------------------------------------


def test_the_notes_say_where_the_console_is_and_warn_without_its_address():
    full_notes = chartlib.notes(rendered_ci("full").templates)
    assert "web console is at /console/ of that address (https://earlyhelp.worcestershire.example.gov.uk/console/)" in full_notes
    assert "the webhook receivers (from the gateway)" in full_notes
    assert "publicUrl is empty" not in full_notes
    values = chartlib.deep_merge(MONO, {"gateway": {"console": {"publicUrl": ""}}})
    assert "gateway.console.publicUrl is empty" in chartlib.notes(chartlib.render(values))
    no_gateway = chartlib.deep_merge(chartlib.ci_values("distributed"), {"targets": NO_GATEWAY})
    assert "web console" not in chartlib.notes(chartlib.render(no_gateway))


# --- a council's console sign-in (tenants.<id>.oidc.client) ---------------------------------------


def test_a_councils_client_secret_is_mounted_into_the_gateway_pods_only(full):
    client = checks.config_of(full.objects)["tenants"]["worcs"]["oidc"]["client"]
    assert client == {
        "client_id": "earlyhelp",
        "scopes": ["profile", "email"],
        "client_secret_file": "/etc/earlyhelp/oidc/worcs.client-secret",
        # From gateway.console.publicUrl.
        "redirect_url": "https://earlyhelp.worcestershire.example.gov.uk/console/callback",
    }
    for d in checks.server_deployments(full.objects):
        items = _config_items(d)
        if _runs_gateway(d):
            assert items["oidc/worcs.client-secret"] == {"kind": "secret", "name": "earlyhelp-oidc", "key": "worcs-client-secret"}
        else:
            assert not [p for p in items if p.startswith("oidc/")], _target(d)
    for cm in checks.of_kind(full.objects, "ConfigMap"):
        assert "earlyhelp-oidc" not in str(cm.get("data"))


def test_a_public_client_and_an_explicit_redirect_url():
    values = chartlib.deep_merge(MONO, {"tenants": {"worcs": {"oidc": {"client": {"client_id": "eh", "redirect_url": "https://eh.example.gov.uk/console/callback"}}}}})
    objs = chartlib.objects(values)
    assert checks.config_of(objs)["tenants"]["worcs"]["oidc"]["client"] == {"client_id": "eh", "redirect_url": "https://eh.example.gov.uk/console/callback"}
    (d,) = checks.server_deployments(objs)
    assert not [p for p in _config_items(d) if p.startswith("oidc/")]


def test_a_client_needs_a_redirect_url_or_the_consoles_address():
    values = chartlib.deep_merge(chartlib.ci_values("monolithic"), {"tenants": {"worcs": {"name": "W", "oidc": {"issuer": "https://id.example", "audience": "eh", "jwks_url": "https://id.example/jwks", "client": {"client_id": "eh"}}}}})
    with pytest.raises(helm.HelmRenderError) as err:
        chartlib.render(values)
    assert "tenants.worcs.oidc.client.redirect_url is required when gateway.console.publicUrl is empty" in str(err.value)


def test_the_schema_refuses_a_client_secret_in_values():
    values = chartlib.deep_merge(MONO, {"tenants": {"worcs": {"oidc": {"client": {"client_id": "eh", "client_secret": "hunter2"}}}}})
    with pytest.raises(helm.HelmValuesError) as err:
        chartlib.render(values)
    assert "client_secret" in str(err.value)
