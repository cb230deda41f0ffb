"""The config file the pods read: what the binary accepts, no secrets in it, rolled on change."""

from __future__ import annotations

import re

import pytest

import chartlib
import checks

CONFIG_RS = chartlib.REPO / "crates" / "platform" / "src" / "config.rs"
# Each service's own sections (smtp, intake, a council's templates, …) are typed in its crate.
SERVICE_SETTINGS_RS = [
    *sorted((chartlib.REPO / "services").glob("*/src/settings.rs")),
    # A council's calendar and service levels, shared by the services that run its clocks.
    chartlib.REPO / "crates" / "service" / "src" / "council.rs",
    # Where consent is, for the services that ask it what may be shown.
    chartlib.REPO / "crates" / "service" / "src" / "consent.rs",
    # The gateway's outbound webhooks (gateway.webhooks) and its console's session key.
    chartlib.REPO / "services" / "gateway" / "src" / "webhook" / "mod.rs",
    chartlib.REPO / "services" / "gateway" / "src" / "session.rs",
]

# The services' sections of the file and their Rust types (in services/*/src/settings.rs); the keys
# are checked against each crate's `KEYS` below, so a section added or renamed there fails here.
SECTIONS = {
    "smtp": "SmtpSettings",
    "intake": "IntakeSettings",
    "gateway": "GatewaySettings",
    "allocation": "ConsentSettings",  # allocation's: where consent's API is
    "assessment": "ConsentSettings",  # assessment's: the same
    "records": "RecordsSettings",  # records' retention sweep
}
TENANT_SECTIONS = {
    "templates": "BTreeMap<String, TemplateSettings>",
    "mail_from": "String",
    "contacts": "TenantContacts",
    "screening": "any",  # intake's screening rules: checked by intake at start
    "calendar": "CalendarSettings",  # casework's and allocation's working days
    "service_levels": "ServiceLevelSettings",
    "allocation": "AllocationSettings",  # allocation's rules and directory
    "assessment": "AssessmentCouncilSettings",  # assessment's distance-travelled scale
    "retention": "RetentionSettings",  # records' retention policy of the council
}


# --- the rendered config.yaml only uses keys and types the binary accepts ------------------------
# The binary's Settings (crates/platform/src/config.rs) deny unknown fields, and the binary refuses
# a key no service reads, so a key the chart renders but the binary does not know stops every pod
# at start. This reads the Rust structs and enums (the platform's and each service's sections), so
# a rename on either side fails here rather than in a cluster.


def _rust_types(text: str) -> tuple[dict[str, dict[str, str]], dict[str, set[str]]]:
    structs: dict[str, dict[str, str]] = {}
    for m in re.finditer(r"pub struct (\w+)\s*\{(.*?)\n\}", text, re.S):
        structs[m.group(1)] = {f.group(1): f.group(2).strip() for f in re.finditer(r"^\s*pub (\w+):\s*([^\n]+?),\s*$", m.group(2), re.M)}
    enums: dict[str, set[str]] = {}
    for m in re.finditer(r"#\[serde\(rename_all = \"lowercase\"\)\]\s*pub enum (\w+)\s*\{(.*?)\n\}", text, re.S):
        enums[m.group(1)] = {v.group(1).lower() for v in re.finditer(r"^\s*(\w+),\s*$", m.group(2), re.M)}
    return structs, enums


def _type_problems(node, rust_type: str, structs, enums, path: str) -> list[str]:
    t = re.sub(r"\b(?:crate|super|self)::(?:\w+::)*", "", rust_type)  # crate::webhook::WebhookSettings
    while m := re.fullmatch(r"Option<(.*)>", t):
        t = m.group(1)
    if m := re.fullmatch(r"(?:BTreeMap|HashMap)<String,\s*(.*)>", t):
        if not isinstance(node, dict):
            return [f"{path}: expected a map"]
        return [p for k, v in node.items() for p in _type_problems(v, m.group(1), structs, enums, f"{path}.{k}")]
    if m := re.fullmatch(r"Vec<(.*)>", t):
        if not isinstance(node, list):
            return [f"{path}: expected a list"]
        return [p for i, v in enumerate(node) for p in _type_problems(v, m.group(1), structs, enums, f"{path}[{i}]")]
    if t in structs:
        if not isinstance(node, dict):
            return [f"{path}: expected a map ({t})"]
        out = []
        for k, v in node.items():
            if k not in structs[t]:
                out.append(f"{path}.{k}: unknown to the binary ({t} has {sorted(structs[t])})")
            else:
                out += _type_problems(v, structs[t][k], structs, enums, f"{path}.{k}".lstrip("."))
        return out
    if t == "any":
        return []
    if t in enums:
        return [] if node in enums[t] else [f"{path}: {node!r} is not one of {sorted(enums[t])}"]
    scalar = {
        "String": str, "PathBuf": str, "SecretString": str, "bool": bool,
        "u16": int, "u32": int, "u64": int, "usize": int, "i32": int, "i64": int,
    }
    if t in scalar:
        ok = isinstance(node, scalar[t]) and not (scalar[t] is int and isinstance(node, bool))
        return [] if ok else [f"{path}: {node!r} is not a {t}"]
    if t == "SocketAddr":
        return [] if isinstance(node, str) and re.fullmatch(r"[0-9.]+:\d+|\[[0-9a-fA-F:]+\]:\d+", node) else [f"{path}: {node!r} is not ip:port"]
    return [f"{path}: the test does not know Rust type {t}"]


@pytest.fixture(scope="module")
def rust_settings():
    if not CONFIG_RS.exists():
        pytest.skip(f"{CONFIG_RS.relative_to(chartlib.REPO)} not found")
    structs, enums = _rust_types("\n".join(p.read_text() for p in [CONFIG_RS, *SERVICE_SETTINGS_RS]))
    assert "Settings" in structs and "server" in structs["Settings"], "could not read the Settings struct"
    owned_global, owned_tenant = set(), set()
    for p in SERVICE_SETTINGS_RS:
        text = p.read_text()
        for kind, into in (("global", owned_global), ("per_tenant", owned_tenant)):
            if m := re.search(kind + r": &\[(.*?)\]", text, re.S):
                into.update(re.findall(r'"(\w+)"', m.group(1)))
    assert owned_global == set(SECTIONS) and owned_tenant == set(TENANT_SECTIONS), (owned_global, owned_tenant)
    structs["Settings"].update(SECTIONS)
    structs["TenantSettings"].update(TENANT_SECTIONS)
    return structs, enums


def test_rendered_config_is_accepted_by_the_binary(ci, rust_settings):
    structs, enums = rust_settings
    assert _type_problems(checks.config_of(ci.objects), "Settings", structs, enums, "") == []


def test_the_type_check_catches_unknown_keys_and_wrong_types(monolithic, rust_settings):
    structs, enums = rust_settings
    config = checks.config_of(monolithic.objects)
    config["server"]["http_port"] = 8080
    config["telemetry"]["log_format"] = "xml"
    config["database"]["max_connections"] = "10"
    problems = _type_problems(config, "Settings", structs, enums, "")
    assert len(problems) == 3, problems


# --- content ---------------------------------------------------------------------------------


def _env(container):
    return {e["name"]: e for e in container.get("env") or []}


def test_the_binary_mode_follows_the_deployment_mode_never_demo(ci):
    mode = "embedded" if ci.mode == "embedded" else "distributed"
    config = checks.config_of(ci.objects)
    assert config["mode"] == mode
    assert config["demo"] is False
    assert config["database"]["migrate_on_start"] is False  # the hook Job migrates; embedded mode at start
    for _, _, spec in checks.pod_templates(ci.objects):
        for c in spec["containers"]:
            if c["name"] not in ("earlyhelp", "migrate"):
                continue
            env = _env(c)
            assert env["EH__MODE"]["value"] == mode
            assert env["EH__DEMO"]["value"] == "false"
            assert env["EH__DATABASE__MIGRATE_ON_START"]["value"] == "false"


def test_no_secret_is_rendered(ci):
    config = checks.config_of(ci.objects)
    assert "password" not in config.get("database", {}) and "password" not in config.get("smtp", {})
    assert not [o for o in ci.objects if o["kind"] == "Secret"]
    url = config["database"].get("url", "")
    assert "@" not in url or ":" not in url.split("://", 1)[1].split("@", 1)[0]


def test_secrets_come_from_existing_secrets(full):
    container = checks.server_deployments(full.objects)[0]["spec"]["template"]["spec"]["containers"][0]
    env = _env(container)
    assert env["EH__DATABASE__PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "earlyhelp-database", "key": "password"}
    assert env["EH__DATABASE__URL"]["valueFrom"]["secretKeyRef"] == {"name": "earlyhelp-database", "key": "url"}
    assert env["EH__SMTP__PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "earlyhelp-smtp", "key": "password"}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel-collector.observability.svc:4317"


def test_plaintext_smtp_is_accepted_only_when_the_values_say_so():
    relay = {"host": "relay.internal", "from": "Early Help <eh@example.gov.uk>", "tls": "none"}
    config = checks.config_of(chartlib.objects(chartlib.deep_merge(chartlib.ci_values("monolithic"), {"smtp": {**relay, "allowPlaintext": True}})))
    assert config["smtp"]["tls"] == "none" and config["smtp"]["allow_plaintext"] is True
    config = checks.config_of(chartlib.objects(chartlib.deep_merge(chartlib.ci_values("monolithic"), {"smtp": {"host": "smtp.example.gov.uk", "from": "x@example.gov.uk"}})))
    assert config["smtp"]["tls"] == "starttls" and "allow_plaintext" not in config["smtp"]


def test_files_named_in_the_config_are_mounted(ci):
    config = checks.config_of(ci.objects)
    wanted = [config["database"].get("ca_file"), config["bus"].get("ca_file"), config["bus"].get("credentials_file")]
    for owner, _, spec in checks.pod_templates(ci.objects):
        c = spec["containers"][0]
        if c["args"][0] == "healthcheck":
            continue
        assert c["name"] in ("earlyhelp", "migrate")
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        provided = set()
        for vol in spec["volumes"]:
            for src in (vol.get("projected") or {}).get("sources") or []:
                for item in (src.get("configMap") or src.get("secret"))["items"]:
                    provided.add(f"{mounts[vol['name']]}/{item['path']}")
        config_files = [c["args"][i + 1] for i, a in enumerate(c["args"]) if a == "--config"]
        assert config_files and config_files[0] == "/etc/earlyhelp/config.yaml"
        for path in config_files + [w for w in wanted if w]:
            assert path in provided, f"{checks.name_of(owner)}: {path} is not mounted"


def test_existing_tenants_are_layered_after_the_chart_config(full):
    for d in checks.server_deployments(full.objects):
        args = d["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[3:] == ["--config", "/etc/earlyhelp/config.yaml", "--config", "/etc/earlyhelp/tenants.yaml"]
    assert checks.config_of(full.objects)["tenants"]["worcs"]["name"] == "Worcestershire County Council"


# --- config changes roll the pods ------------------------------------------------------------


def _checksums(values):
    objs = chartlib.objects(values)
    sums = {}
    for owner, meta, _ in checks.pod_templates(objs):
        if owner["kind"] in ("Deployment", "Job"):
            sums[checks.name_of(owner)] = (meta.get("annotations") or {}).get("checksum/config")
    return sums


CONFIG_CHANGES = {
    "a council added": {"tenants": {"worcs": {"name": "Worcestershire County Council"}}},
    "log level": {"telemetry": {"logLevel": "debug"}},
    "database url": {"database": {"url": "postgres://earlyhelp@other-db:5432/earlyhelp"}},
    "nats url": {"bus": {"natsUrl": "nats://other-nats:4222"}},
    "shutdown grace": {"server": {"shutdownGraceSecs": 20}},
    "existing tenants source": {"existingTenants": {"configMapName": "councils"}},
    "extra config": {"extraConfig": {"bus": {"ack_wait_secs": 60}}},
    "mail relay": {"smtp": {"host": "smtp.example.gov.uk", "from": "Early Help <eh@example.gov.uk>"}},
}


@pytest.mark.parametrize("mode", ["monolithic", "distributed"])
@pytest.mark.parametrize("change", list(CONFIG_CHANGES), ids=list(CONFIG_CHANGES))
def test_a_config_change_changes_the_checksum_of_every_pod_template(mode, change):
    base = chartlib.ci_values(mode)
    before = _checksums(base)
    after = _checksums(chartlib.deep_merge(base, CONFIG_CHANGES[change]))
    assert before and set(before) == set(after)
    for owner, checksum in before.items():
        assert checksum and len(checksum) == 64, owner
        assert after[owner] != checksum, f"{owner}: checksum unchanged after {change}"


def test_a_change_outside_the_config_keeps_the_checksum():
    base = chartlib.ci_values("monolithic")
    assert _checksums(base) == _checksums(chartlib.deep_merge(base, {"monolithic": {"replicas": 5}, "commonLabels": {"team": "eh"}}))
