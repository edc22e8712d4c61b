"""docker-compose.yaml, checked without a Docker engine: valid against the Compose
Specification's JSON schema (vendored in tests/fixtures, see its README) and wired the way
the project needs — every service there, connections pointing at the right containers,
start-up ordered by health. Each check is shown to fail on a file broken on purpose."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from patron_privacy import connections

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "tests" / "fixtures" / "compose-spec.json").read_text())

AIRFLOW_COMMANDS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
SERVICES = {
    *AIRFLOW_COMMANDS,
    "airflow-init",
    "postgres",
    "redis",
    "warehouse-db",
    "koha-db",
    "mailcatcher",
    "airflow-log-groomer",
}
CONNECTIONS = {
    connections.KOHA_DB: "koha-db",
    connections.WAREHOUSE_DB: "warehouse-db",
    "smtp_default": "mailcatcher",
}
OPTIONAL_CONNECTIONS = {
    connections.EVERGREEN_DB,
    connections.LIBKI_DB,
    connections.LIBCAL_API,
    connections.PSEUDONYM_KEYS,
}

# Compose durations are Go's: 1m30s, 10s, 500ms.
_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$")
FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("duration")
def _is_duration(value) -> bool:
    return not isinstance(value, str) or bool(_DURATION.match(value))


_VAR = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` with an empty
    environment: what the containers get when the operator sets nothing."""
    env = env or {}

    def sub(m: re.Match) -> str:
        name, op, arg = m["name"], m["op"], m["arg"]
        if env.get(name):
            return env[name]
        if op and op.endswith("?"):
            raise LookupError(f"{name} must be set: {arg}")
        return arg if op else ""

    return _VAR.sub(sub, value).replace("$$", "$")


def load() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def schema_errors(doc: dict) -> list[str]:
    validator = jsonschema.Draft201909Validator(SCHEMA, format_checker=FORMATS)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def _env(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _depends(svc: dict) -> dict[str, str]:
    dep = svc.get("depends_on") or {}
    if isinstance(dep, list):
        return dict.fromkeys(dep, "service_started")
    return {k: v["condition"] for k, v in dep.items()}


def _conn(env: dict[str, str], conn_id: str, secrets: dict[str, str]):
    raw = interpolate(env.get(f"AIRFLOW_CONN_{conn_id.upper()}", ""), secrets)
    return connections.parse_conn(conn_id, raw) if raw else None


def _host_port(url: str) -> tuple[str | None, int | None]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname, parts.port


def wiring_problems(doc: dict) -> list[str]:
    """What a valid file can still get wrong: a missing service, a dangling or unhealthy
    dependency, a connection pointing nowhere, an image not built from the project."""
    services = doc.get("services") or {}
    out = [f"missing service {name}" for name in sorted(SERVICES - set(services))]
    named_volumes = set(doc.get("volumes") or {})
    for name, svc in services.items():
        for target, cond in _depends(svc).items():
            if target not in services:
                out.append(f"{name} depends on undefined service {target}")
            elif cond == "service_healthy" and "healthcheck" not in services[target]:
                out.append(f"{name} waits for {target} to be healthy; it has no healthcheck")
            elif cond == "service_completed_successfully" and target != "airflow-init":
                out.append(f"{name} waits for {target} to complete; it never does")
        for vol in svc.get("volumes") or []:
            src = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            if src and not src.startswith((".", "/")) and src not in named_volumes:
                out.append(f"{name} mounts undeclared volume {src}")
        image = svc.get("image", "")
        if "build" not in svc and (":" not in image or image.endswith(":latest")):
            out.append(f"{name} runs an unpinned image {image or '(none)'}")

    secrets = {"AIRFLOW_JWT_SECRET": "x", "AIRFLOW_CONN_PSEUDONYM_KEYS": '{"conn_type": "g"}'}
    airflow = [n for n in (*AIRFLOW_COMMANDS, "airflow-init") if n in services]
    for name in airflow:
        svc, env = services[name], _env(services[name])
        deps = _depends(svc)
        if svc.get("build") not in (".", {"context": "."}):
            out.append(f"{name} is not built from the project's Dockerfile")
        want = {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "PYTHONPATH": "/opt/airflow/include",
        }
        for key, value in want.items():
            if env.get(key) != value:
                out.append(f"{name}: {key} is not {value}")
        home = env.get("PATRON_PRIVACY_HOME", "")
        mounts = [v for v in svc.get("volumes") or [] if isinstance(v, str)]
        if not any(
            v.split(":")[1:2] == [home] and v.split(":")[0] in named_volumes for v in mounts
        ):
            out.append(f"{name}: PATRON_PRIVACY_HOME is not on a shared named volume")
        if not env.get("AIRFLOW__API_AUTH__JWT_SECRET"):
            out.append(f"{name}: no shared AIRFLOW__API_AUTH__JWT_SECRET")
        for key, host in (
            ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgres"),
            ("AIRFLOW__CELERY__RESULT_BACKEND", "postgres"),
            ("AIRFLOW__CELERY__BROKER_URL", "redis"),
            ("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "airflow-apiserver"),
        ):
            if _host_port(interpolate(env.get(key, ""), secrets))[0] != host:
                out.append(f"{name}: {key} does not point at {host}")
        if not env.get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "").endswith("/execution/"):
            out.append(f"{name}: the execution API URL must end in /execution/")
        for dep in ("postgres", "redis"):
            if deps.get(dep) != "service_healthy":
                out.append(f"{name} does not wait for {dep} to be healthy")
        if name != "airflow-init":
            if deps.get("airflow-init") != "service_completed_successfully":
                out.append(f"{name} does not wait for airflow-init to complete")
            if AIRFLOW_COMMANDS[name] != svc.get("command"):
                out.append(f"{name} does not run `airflow {AIRFLOW_COMMANDS[name]}`")
            if "healthcheck" not in svc:
                out.append(f"{name} has no healthcheck")
        for conn_id, host in CONNECTIONS.items():
            try:
                conn = _conn(env, conn_id, secrets)
            except (LookupError, connections.ConnectionConfigError) as exc:
                out.append(f"{name}: connection {conn_id}: {exc}")
                continue
            if conn is None or conn.host != host:
                out.append(f"{name}: connection {conn_id} does not point at {host}")
        for conn_id in OPTIONAL_CONNECTIONS:
            if f"AIRFLOW_CONN_{conn_id.upper()}" not in env:
                out.append(f"{name}: connection {conn_id} is not passed through")

    worker = _depends(services.get("airflow-worker", {}))
    for dep in ("warehouse-db", "koha-db", "mailcatcher"):
        if worker.get(dep) != "service_healthy":
            out.append(f"airflow-worker does not wait for {dep} to be healthy")
    replicas = (services.get("airflow-worker", {}).get("deploy") or {}).get("replicas", 1)
    if replicas < 2:
        out.append("fewer than two Celery workers")
    if _depends(services.get("airflow-init", {})).get("warehouse-db") != "service_healthy":
        out.append("airflow-init does not wait for warehouse-db to be healthy")
    init_cmd = " ".join(map(str, services.get("airflow-init", {}).get("command") or []))
    for step in ("airflow db migrate", "python -m patron_privacy warehouse upgrade"):
        if step not in init_cmd:
            out.append(f"airflow-init does not run `{step}`")

    for name, db_env, conn_id in (
        ("warehouse-db", "POSTGRES_DB", connections.WAREHOUSE_DB),
        ("koha-db", "MARIADB_DATABASE", connections.KOHA_DB),
    ):
        conn = _conn(_env(services.get("airflow-worker", {})), conn_id, secrets)
        if name in services and conn is not None:
            if _env(services[name]).get(db_env) != conn.schema:
                out.append(f"connection {conn_id} names a database {name} does not create")
    return out


def dockerfile_problems(text: str, requirements: str) -> list[str]:
    out = []
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    pinned = re.search(r"^apache-airflow==(\S+)", requirements, re.M)
    version = pinned[1] if pinned else "?"
    if not froms or not re.fullmatch(
        rf"apache/airflow:{re.escape(version)}(-python3\.11)?", froms[0]
    ):
        out.append(f"the image is not built FROM apache/airflow:{version} (requirements.txt's)")
    if not re.search(r"pip install\b[^\n]*(\\\n[^\n]*)*-r \S*requirements\.txt", text):
        out.append("the image does not install requirements.txt")
    return out


# --- the file as committed ------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_specification():
    assert schema_errors(load()) == []


def test_compose_file_has_every_service_wired():
    assert wiring_problems(load()) == []


def test_image_is_the_official_airflow_with_the_projects_requirements():
    text = (ROOT / "Dockerfile").read_text()
    assert dockerfile_problems(text, (ROOT / "requirements.txt").read_text()) == []


def test_connections_resolve_to_the_demo_containers_in_the_projects_own_parser():
    env = _env(load()["services"]["airflow-worker"])
    smtp = _conn(env, "smtp_default", {})
    assert (smtp.host, smtp.port) == ("mailcatcher", 1025)
    assert smtp.extra["disable_tls"] == "true" and "@" in smtp.extra["alert_to"]
    wh = connections.sqlalchemy_url(_conn(env, connections.WAREHOUSE_DB, {}))
    assert wh.get_backend_name() == "postgresql"
    koha = connections.sqlalchemy_url(_conn(env, connections.KOHA_DB, {}))
    assert koha.drivername == "mysql+pymysql"
    assert _conn(env, connections.LIBKI_DB, {}) is None, "a system the library lacks stays unset"


def test_secrets_without_a_safe_placeholder_must_be_set():
    env = _env(load()["services"]["airflow-scheduler"])
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW_CONN_PSEUDONYM_KEYS"):
        with pytest.raises(LookupError, match="must be set"):
            interpolate(env[key])


# --- and broken on purpose: each check can fail -----------------------------------------------


def _broken(edit) -> dict:
    doc = copy.deepcopy(load())
    edit(doc)
    return doc


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["services"]["redis"].update(helthcheck={}), "services/redis: 'helthcheck'"),
        (
            lambda d: d["services"]["airflow-worker"]["depends_on"]["redis"].update(
                condition="service_ready"
            ),
            "services/airflow-worker/depends_on: ",
        ),
        (lambda d: d["services"]["postgres"]["healthcheck"].update(interval="ten"), "duration"),
        (lambda d: d["services"]["postgres"].update(ports="5432"), "is not of type 'array'"),
        (lambda d: d.update(servces={}), ": 'servces' does not match"),
        (lambda d: d["services"].update({"bad name!": {"image": "x:1"}}), "does not match"),
    ],
    ids=["misspelt-key", "bad-condition", "bad-duration", "wrong-type", "top-level", "name"],
)
def test_schema_refuses_a_broken_file(edit, expected):
    errors = schema_errors(_broken(edit))
    assert errors and any(expected in e for e in errors), errors


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_missing_service_is_found(service):
    problems = wiring_problems(_broken(lambda d: d["services"].pop(service)))
    assert f"missing service {service}" in problems


def _set_env(service: str, key: str, value: str | None):
    def edit(d):
        env = d["services"][service].setdefault("environment", {})
        d["services"][service]["environment"] = env = dict(env)
        if value is None:
            env.pop(key)
        else:
            env[key] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            _set_env("airflow-worker", "AIRFLOW_CONN_WAREHOUSE_DB", "postgres://w@localhost/w"),
            "airflow-worker: connection warehouse_db does not point at warehouse-db",
        ),
        (
            _set_env("airflow-scheduler", "AIRFLOW_CONN_KOHA_DB", None),
            "airflow-scheduler: connection koha_db does not point at koha-db",
        ),
        (
            _set_env("airflow-worker", "AIRFLOW_CONN_LIBKI_DB", None),
            "airflow-worker: connection libki_db is not passed through",
        ),
        (
            _set_env("airflow-triggerer", "AIRFLOW__CORE__EXECUTOR", "LocalExecutor"),
            "airflow-triggerer: AIRFLOW__CORE__EXECUTOR is not CeleryExecutor",
        ),
        (
            _set_env("airflow-worker", "AIRFLOW__CELERY__BROKER_URL", "redis://cache:6379/0"),
            "airflow-worker: AIRFLOW__CELERY__BROKER_URL does not point at redis",
        ),
        (
            _set_env("airflow-apiserver", "AIRFLOW__API_AUTH__JWT_SECRET", None),
            "airflow-apiserver: no shared AIRFLOW__API_AUTH__JWT_SECRET",
        ),
        (
            _set_env("airflow-worker", "PATRON_PRIVACY_HOME", "/tmp/pp"),
            "airflow-worker: PATRON_PRIVACY_HOME is not on a shared named volume",
        ),
        (
            lambda d: d["services"]["mailcatcher"].pop("healthcheck"),
            "airflow-worker waits for mailcatcher to be healthy; it has no healthcheck",
        ),
        (
            lambda d: d["services"]["airflow-worker"]["depends_on"].pop("warehouse-db"),
            "airflow-worker does not wait for warehouse-db to be healthy",
        ),
        (
            lambda d: d["services"]["airflow-scheduler"]["depends_on"].pop("airflow-init"),
            "airflow-scheduler does not wait for airflow-init to complete",
        ),
        (
            lambda d: d["services"]["airflow-scheduler"]["depends_on"].update(
                cache={"condition": "service_started"}
            ),
            "airflow-scheduler depends on undefined service cache",
        ),
        (
            lambda d: d["services"]["airflow-worker"].update(deploy={"replicas": 1}),
            "fewer than two Celery workers",
        ),
        (
            lambda d: d["services"]["airflow-init"].update(command=["-c", "airflow db migrate"]),
            "airflow-init does not run `python -m patron_privacy warehouse upgrade`",
        ),
        (
            lambda d: d["services"]["koha-db"].update(image="mariadb:latest"),
            "koha-db runs an unpinned image mariadb:latest",
        ),
        (
            lambda d: d["services"]["warehouse-db"]["environment"].update(POSTGRES_DB="wh"),
            "connection warehouse_db names a database warehouse-db does not create",
        ),
        (
            lambda d: d.pop("volumes"),
            "postgres mounts undeclared volume postgres-db-volume",
        ),
        (
            lambda d: d["services"]["airflow-worker"].update(command="worker"),
            "airflow-worker does not run `airflow celery worker`",
        ),
    ],
)
def test_wiring_check_finds_a_broken_file(edit, expected):
    assert expected in wiring_problems(_broken(edit))


@pytest.mark.parametrize(
    ("dockerfile", "expected"),
    [
        ("FROM apache/airflow:3.2.0\nRUN pip install -r requirements.txt\n", "FROM"),
        ("FROM python:3.11\nRUN pip install -r requirements.txt\n", "FROM"),
        ("FROM apache/airflow:3.3.2\nRUN pip install pandas\n", "requirements.txt"),
    ],
)
def test_dockerfile_check_can_fail(dockerfile, expected):
    problems = dockerfile_problems(dockerfile, "apache-airflow==3.3.2\n")
    assert problems and expected in problems[0]
