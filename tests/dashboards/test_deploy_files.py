"""The deployment files hold together: dashboards, Grafana provisioning, docker-compose.yml, Dockerfile.

No container runs here (no Docker engine on the test machines), so these tests parse the files and
check what would otherwise only fail at `docker compose up`: a panel on the wrong data source, a query
on a table no migration creates, a secret written into the compose file, a mounted file that does not
exist, a config that drifted from ossbss.yaml, a new package the image would not contain. Whether
ClickHouse accepts each query is checked in test_dashboard_queries.py.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from assurance.config import assurance_config
from ossbss.config import parse_config
from tests.dashboards.grafana_files import (
    CLICKHOUSE_PLUGIN,
    DASHBOARD_PROVIDER_FILE,
    DATASOURCE_FILE,
    REPO_ROOT,
    DashboardTarget,
    dashboard_files,
    iter_panels,
    load_dashboard,
    load_yaml,
    migration_tables,
    provisioned_datasource_uid,
    table_references,
)
from warehouse.urls import parse_warehouse_url

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE_CONFIG = REPO_ROOT / "deploy" / "ossbss.compose.yaml"
ENV_EXAMPLE = REPO_ROOT / "deploy" / ".env.example"
EXAMPLE_CONFIG = REPO_ROOT / "ossbss.yaml"

EXPECTED_DASHBOARDS = {"noc-interfaces.json", "usage-revenue.json", "pipeline-health.json"}
EXPECTED_SERVICES = {
    "kafka",
    "clickhouse",
    "postgres",
    "grafana",
    "migrate",
    "streams",
    "sink",
    "assurance",
    "alertmanager",
}
WORKER_VERBS = {
    "migrate": ["migrate"],
    "streams": ["worker", "streams"],
    "sink": ["worker", "sink"],
    "assurance": ["worker", "assurance"],
}
CONFIG_IN_CONTAINER = "/etc/ossbss/ossbss.yaml"
# Tables the brief and the README name; a migration parse that misses them is broken, not the schema.
CORE_TABLES = {
    "telemetry_samples",
    "interface_rates_1m",
    "interface_rates_5m",
    "interface_rates_1h",
    "usage_records",
    "rated_usage",
    "fault_events",
    "alerts",
    "dead_letters",
    "pipeline_metrics",
}

_SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_?KEY|PRIVATE", re.IGNORECASE)
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; $$ is a literal $.
_INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
_GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)(?::\w+)?\]\]|\$(?!__)(\w+)")


# ---- helpers --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = load_yaml(COMPOSE_FILE)
    assert isinstance(doc, dict), "docker-compose.yml is not a mapping"
    return doc


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping, whichever of the two compose forms it uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of the service's bind mounts (sources that are paths, not named volumes)."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((str(volume["source"]), str(volume["target"])))
            continue
        source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/", "~")):
            mounts.append((source, target))
    return mounts


def interpolations(text: str) -> list[tuple[str, str, str]]:
    """(name, operator, default-or-message) of every ${...} in compose text."""
    return _INTERPOLATION.findall(text)


def referenced_variables(sql: str) -> set[str]:
    return {next(name for name in match if name) for match in _GRAFANA_VARIABLE.findall(sql)}


def key_tree(value: Any, prefix: str = "") -> set[str]:
    if not isinstance(value, dict):
        return set()
    keys = set()
    for key, child in value.items():
        keys.add(prefix + str(key))
        keys |= key_tree(child, f"{prefix}{key}.")
    return keys


# ---- dashboards ---------------------------------------------------------------------------------


def test_the_dashboards_are_all_there() -> None:
    assert {path.name for path in dashboard_files()} >= EXPECTED_DASHBOARDS


def test_migration_tables_are_parsed() -> None:
    assert migration_tables() >= CORE_TABLES


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_json_is_well_formed(path: Path) -> None:
    dashboard = load_dashboard(path)  # raises on invalid JSON
    assert dashboard.get("uid") and dashboard.get("title"), "a provisioned dashboard needs a uid and a title"
    assert "id" not in dashboard or dashboard["id"] is None, "remove the instance-specific numeric id"
    panels = list(iter_panels(dashboard.get("panels", [])))
    assert all(isinstance(panel.get("id"), int) for panel in panels), "every panel needs an integer id"
    ids: list[int] = [panel["id"] for panel in panels]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"panel ids used twice: {duplicates}"
    for panel in panels:
        assert {"h", "w", "x", "y"} <= set(panel.get("gridPos", {})), f"panel {panel['id']} has no gridPos"
        if panel.get("type") != "row":
            assert panel.get("targets"), f"panel {panel['id']} ({panel.get('title')}) has no query"
            ref_ids = [t.get("refId") for t in panel["targets"]]
            assert len(set(ref_ids)) == len(ref_ids), f"panel {panel['id']} repeats a refId: {ref_ids}"


def test_dashboard_uids_and_titles_are_unique() -> None:
    dashboards = [load_dashboard(path) for path in dashboard_files()]
    for key in ("uid", "title"):
        values = [d[key] for d in dashboards]
        assert len(set(values)) == len(values), f"dashboard {key}s repeat: {values}"


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_everything_uses_the_provisioned_datasource(path: Path) -> None:
    uid = provisioned_datasource_uid()
    dashboard = load_dashboard(path)
    wrong = []
    for panel in iter_panels(dashboard.get("panels", [])):
        if panel.get("type") == "row":
            continue
        for where, ds in [("panel", panel.get("datasource"))] + [
            (f"query {t.get('refId')}", t.get("datasource")) for t in panel.get("targets", [])
        ]:
            if not isinstance(ds, dict) or ds.get("uid") != uid or ds.get("type") != CLICKHOUSE_PLUGIN:
                wrong.append(f"panel {panel['id']} {where}: {ds}")
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            ds = var.get("datasource")
            if not isinstance(ds, dict) or ds.get("uid") != uid:
                wrong.append(f"variable {var['name']}: {ds}")
    assert not wrong, f"not the provisioned data source {uid!r}:\n" + "\n".join(wrong)


def test_panel_query_is_plugin_sql(dashboard_target: DashboardTarget) -> None:
    target = dashboard_target.target
    assert target.get("editorType") == "sql", f"{dashboard_target.label}: use the SQL editor"
    assert dashboard_target.sql.strip(), f"{dashboard_target.label}: empty rawSql"
    expected = {0: "timeseries", 1: "table"}
    assert target.get("format") in expected, f"{dashboard_target.label}: format must be 0 (time series) or 1 (table)"
    assert target.get("queryType") == expected[target["format"]], f"{dashboard_target.label}: queryType vs format"


def test_panel_query_reads_only_migration_tables(dashboard_target: DashboardTarget) -> None:
    check_tables(dashboard_target.sql, dashboard_target.dashboard, dashboard_target.label)


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_variable_queries_read_only_migration_tables(path: Path) -> None:
    dashboard = load_dashboard(path)
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query" and table_references(str(var["query"])):
            check_tables(str(var["query"]), dashboard, f"{path.name} variable {var['name']}")


def check_tables(sql: str, dashboard: dict[str, Any], label: str) -> None:
    variables = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
    references = table_references(sql)
    assert references, f"{label}: found no FROM <table>"
    known = migration_tables()
    for ref in references:
        if ref.startswith("$"):
            # A table chosen by a variable: test_dashboard_queries runs the query on every value.
            assert ref.strip("${}") in variables, f"{label}: FROM {ref} names no dashboard variable"
        else:
            assert ref in known, f"{label}: table {ref} is not created by warehouse/migrations ({sorted(known)})"


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_variables_are_defined_before_use(path: Path) -> None:
    dashboard = load_dashboard(path)
    defined: list[str] = []
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            missing = referenced_variables(str(var["query"])) - set(defined)
            assert not missing, f"variable {var['name']} uses {missing} before they are defined"
        defined.append(var["name"])
    for panel in iter_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            missing = referenced_variables(str(target.get("rawSql", ""))) - set(defined)
            assert not missing, f"panel {panel['id']} uses undefined variables {missing}"


# ---- Grafana provisioning -----------------------------------------------------------------------


def test_datasource_provisioning_reads_secrets_from_the_environment(compose: dict[str, Any]) -> None:
    doc = load_yaml(DATASOURCE_FILE)
    assert doc.get("apiVersion") == 1
    (source,) = [ds for ds in doc["datasources"] if ds["type"] == CLICKHOUSE_PLUGIN]
    assert source["uid"] == provisioned_datasource_uid()
    assert "password" not in source.get("jsonData", {}), "the password belongs in secureJsonData"
    assert source["secureJsonData"]["password"] in ("${OSSBSS_CLICKHOUSE_PASSWORD}", "$OSSBSS_CLICKHOUSE_PASSWORD")
    for key in ("host", "port", "username", "defaultDatabase"):
        assert key in source["jsonData"], f"jsonData.{key} is missing"
    # Every variable the file reads must be set in the Grafana container.
    grafana_env = environment(compose["services"]["grafana"])
    used = set(re.findall(r"\$\{?(\w+)\}?", DATASOURCE_FILE.read_text()))
    missing = used - set(grafana_env)
    assert not missing, f"clickhouse.yaml reads {sorted(missing)}, which the grafana service does not set"


def test_dashboard_provider_points_at_the_mounted_dashboards(compose: dict[str, Any]) -> None:
    doc = load_yaml(DASHBOARD_PROVIDER_FILE)
    assert doc.get("apiVersion") == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    mounts = {PurePosixPath(target): source for source, target in bind_mounts(compose["services"]["grafana"])}
    path = PurePosixPath(provider["options"]["path"])
    assert path in mounts, f"Grafana reads dashboards from {path}, which docker-compose.yml does not mount"
    assert (REPO_ROOT / mounts[path]).resolve() == (REPO_ROOT / "dashboards/grafana/dashboards").resolve()
    provisioning = mounts.get(PurePosixPath("/etc/grafana/provisioning"))
    assert provisioning is not None, "mount dashboards/grafana/provisioning at /etc/grafana/provisioning"
    assert (REPO_ROOT / provisioning).resolve() == (REPO_ROOT / "dashboards/grafana/provisioning").resolve()
    home = environment(compose["services"]["grafana"]).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        home_path = PurePosixPath(home)
        assert home_path.parent == path, f"home dashboard {home} is not in the provisioned folder"
        assert (REPO_ROOT / mounts[path] / home_path.name).is_file(), f"home dashboard {home} does not exist"


# ---- docker-compose.yml ------------------------------------------------------------------------


def test_compose_has_every_service_and_no_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose, "the compose spec has no `version:` key (obsolete)"
    assert set(compose["services"]) >= EXPECTED_SERVICES


def test_compose_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image, f"service {name} names no image (workers tag what they build)"
        last_part = image.split("@")[0].rsplit("/", 1)[-1]
        tag = last_part.partition(":")[2]
        assert re.match(r"^v?\d+(\.\d+)*", tag), f"service {name}: pin {image!r} to a version tag"


def test_compose_inlines_no_secret(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            if not _SECRET_NAME.search(key):
                continue
            refs = interpolations(value)
            assert len(refs) == 1 and _INTERPOLATION.fullmatch(value), (
                f"service {name}: {key} must come from the environment as ${{VAR}}, not be written here"
            )
            (_, operator, default) = refs[0]
            assert operator in ("", ":?", "?") or default == "", f"service {name}: {key} has a default value"


def test_compose_variables_are_documented_in_env_example() -> None:
    used = {name for name, _, _ in interpolations(COMPOSE_FILE.read_text())}
    lines = [line.strip() for line in ENV_EXAMPLE.read_text().splitlines()]
    entries = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    missing = used - set(entries)
    assert not missing, f"deploy/.env.example does not list {sorted(missing)}"
    filled = {key for key, value in entries.items() if _SECRET_NAME.search(key) and value.strip()}
    assert not filled, f"deploy/.env.example must not hold secret values: {sorted(filled)}"


def test_compose_mounts_files_that_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for source, target in bind_mounts(service):
            assert (REPO_ROOT / source).exists(), f"service {name} mounts {source} -> {target}, which does not exist"


def test_compose_workers_build_the_image_and_run_their_verb(compose: dict[str, Any]) -> None:
    images = set()
    for name, verb in WORKER_VERBS.items():
        service = compose["services"][name]
        build = service.get("build")
        context = build if isinstance(build, str) else build["context"]
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (REPO_ROOT / context / dockerfile).is_file(), f"service {name} builds from a missing Dockerfile"
        images.add(service["image"])
        command = service["command"]
        assert command[:2] == ["-c", CONFIG_IN_CONTAINER] and command[2:] == verb, f"service {name}: {command}"
        mounts = {target.split(":")[0]: source for source, target in bind_mounts(service)}
        assert (REPO_ROOT / mounts[CONFIG_IN_CONTAINER]).resolve() == COMPOSE_CONFIG.resolve()
        assert "OSSBSS_CLICKHOUSE_PASSWORD" in environment(service)
    assert len(images) == 1, f"the workers should run one image: {images}"
    assert compose["services"]["migrate"].get("restart") in ("no", None), "migrate is one-shot"


def test_compose_start_order_waits_for_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"service {name}: use depends_on with conditions"
        for other, rule in depends.items():
            condition = rule.get("condition")
            assert condition in ("service_healthy", "service_completed_successfully"), f"{name} -> {other}"
            if condition == "service_healthy":
                assert services[other].get("healthcheck"), f"{name} waits for {other} to be healthy: it has no check"
    sink = services["sink"]["depends_on"]
    assert sink["migrate"]["condition"] == "service_completed_successfully"
    assert sink["clickhouse"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    for name in ("kafka", "clickhouse", "postgres", "grafana", "alertmanager"):
        assert services[name].get("healthcheck"), f"service {name} has no healthcheck"
    config = assurance_config(parse_config(load_yaml(COMPOSE_CONFIG)).extra)
    host = config.alertmanager_url.split("//", 1)[1].split(":", 1)[0]
    assert host in services, f"assurance.alertmanager_url names no compose service: {host}"
    assert services["assurance"]["depends_on"][host]["condition"] == "service_healthy"


def test_compose_scales_the_workers(compose: dict[str, Any]) -> None:
    for name in ("streams", "sink"):
        service = compose["services"][name]
        assert service.get("deploy", {}).get("replicas", 1) >= 2, f"run {name} with replicas"
        assert "container_name" not in service, f"{name}: a fixed container_name prevents scaling"


def test_compose_config_matches_the_services(compose: dict[str, Any]) -> None:
    config = parse_config(load_yaml(COMPOSE_CONFIG))
    services = compose["services"]
    kafka_host, _, kafka_port = config.kafka.bootstrap_servers.partition(":")
    assert kafka_host in services, f"kafka.bootstrap_servers names no compose service: {kafka_host}"
    advertised = environment(services[kafka_host])["KAFKA_ADVERTISED_LISTENERS"]
    assert f"//{kafka_host}:{kafka_port}" in advertised, f"the broker does not advertise {kafka_host}:{kafka_port}"
    cluster_id = environment(services[kafka_host])["CLUSTER_ID"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id), "CLUSTER_ID must be a base64url UUID (22 characters)"

    url = parse_warehouse_url(config.warehouse.url, environ={})
    assert url.driver == "clickhouse" and not url.password, "warehouse.url: a server, password from the env"
    assert url.host in services, f"warehouse.url names no compose service: {url.host}"
    clickhouse_env = environment(services[url.host])
    assert (clickhouse_env["CLICKHOUSE_USER"], clickhouse_env["CLICKHOUSE_DB"]) == (url.user, url.database)
    grafana_env = environment(services["grafana"])
    assert grafana_env["OSSBSS_CLICKHOUSE_HOST"] == url.host
    assert int(grafana_env["OSSBSS_CLICKHOUSE_PORT"]) == url.port
    assert (grafana_env["OSSBSS_CLICKHOUSE_USER"], grafana_env["OSSBSS_CLICKHOUSE_DATABASE"]) == (
        url.user,
        url.database,
    )
    plugin = grafana_env["GF_INSTALL_PLUGINS"]
    assert re.search(rf"\b{CLICKHOUSE_PLUGIN}[ @]\d+\.\d+\.\d+", plugin), f"pin the plugin version: {plugin}"


def test_compose_config_has_the_keys_of_ossbss_yaml() -> None:
    example, deployed = load_yaml(EXAMPLE_CONFIG), load_yaml(COMPOSE_CONFIG)
    assert key_tree(deployed) == key_tree(example), (
        "deploy/ossbss.compose.yaml and ossbss.yaml differ in keys: "
        f"only in the compose config {sorted(key_tree(deployed) - key_tree(example))}, "
        f"only in ossbss.yaml {sorted(key_tree(example) - key_tree(deployed))}"
    )


# ---- Dockerfile -----------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_dockerfile_builds_a_non_root_ossbss_image() -> None:
    instructions = dockerfile_instructions()
    stages = [args for op, args in instructions if op == "FROM"]
    assert stages and all(s.split()[0] == "python:3.11-slim" for s in stages), stages
    final = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    runs = " ".join(args for op, args in instructions if op == "RUN")
    assert re.search(r"pip install --no-cache-dir \.(\s|$)", runs), "install the package with pip --no-cache-dir"
    users = [args for op, args in final if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the final stage must drop root"
    assert ("ENTRYPOINT", '["ossbss"]') in final


def test_dockerfile_copies_every_package() -> None:
    copied = set()
    for op, args in dockerfile_instructions():
        if op == "COPY" and "--from" not in args:
            *sources, _ = args.split()
            for source in sources:
                assert (REPO_ROOT / source).exists(), f"COPY {source}: no such file in the repository"
                copied.add(source.rstrip("/"))
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    include = re.search(r"include\s*=\s*\[([^\]]*)\]", pyproject)
    assert include, "pyproject.toml lists no packages"
    packages = {name.strip().strip('"').rstrip("*") for name in include.group(1).split(",") if name.strip()}
    missing = packages - copied
    assert not missing, f"the image would lack packages {sorted(missing)}: add a COPY for each"
    assert "pyproject.toml" in copied


def test_yaml_files_parse() -> None:
    for path in (COMPOSE_FILE, COMPOSE_CONFIG, DATASOURCE_FILE, DASHBOARD_PROVIDER_FILE):
        assert isinstance(yaml.safe_load(path.read_text()), dict), f"{path} is not a YAML mapping"
