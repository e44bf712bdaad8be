"""docker-compose.yml and the Dockerfile point at real entry points and bake in no secret.

No Docker engine runs here, so the files are parsed and checked against the project itself:
the `mkt-x` parser, the console scripts of pyproject.toml and the Settings fields.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from mktx.cli import COMMANDS, build_parser
from mktx.settings import (
    DEV_ENCRYPTION_KEY,
    DEV_JWT_SECRET,
    DEV_X_CONSUMER_KEY,
    DEV_X_CONSUMER_SECRET,
    Settings,
)

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PROJECT_SERVICES = {"migrate": "migrate", "worker": "worker", "api": "api"}
SECRET_NAME = re.compile(r"PASSWORD|PWD|SECRET|KEY|TOKEN", re.IGNORECASE)
# ${VAR}, ${VAR:?message} or ${VAR?message}: taken from the operator's environment, no default.
REQUIRED_REFERENCE = re.compile(r"^\$\{[A-Z0-9_]+(?::?\?[^}]*)?\}$")


def _argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _console_scripts() -> dict[str, str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return pyproject["project"]["scripts"]


def _assert_real_entry_point(argv: list[str]) -> str:
    """The argv runs a project entry point; answers the mkt-x subcommand (or "worker.py")."""
    if argv[:2] in (["python", "worker.py"], ["python3", "worker.py"]):
        assert (ROOT / "worker.py").is_file()
        return "worker.py"
    assert argv[0] in _console_scripts(), f"{argv[0]} is not a console script of pyproject.toml"
    assert _console_scripts()[argv[0]] == "mktx.cli:main"
    args = build_parser().parse_args(argv[1:])  # SystemExit on an unknown command or option
    assert args.command in COMMANDS
    return str(args.command)


def test_every_part_of_the_stack_is_a_service() -> None:
    assert {"postgres", "temporal", "temporal-ui", *PROJECT_SERVICES} <= set(SERVICES)


@pytest.mark.parametrize(("service", "subcommand"), PROJECT_SERVICES.items())
def test_project_services_run_a_real_mkt_x_command(service: str, subcommand: str) -> None:
    assert _assert_real_entry_point(_argv(SERVICES[service]["command"])) == subcommand


@pytest.mark.parametrize("service", PROJECT_SERVICES)
def test_project_services_build_this_repository(service: str) -> None:
    build = SERVICES[service]["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / context).resolve() == ROOT
    assert (ROOT / context / dockerfile).is_file()


def test_the_api_listens_on_all_interfaces_on_the_published_port() -> None:
    args = build_parser().parse_args(_argv(SERVICES["api"]["command"])[1:])
    assert args.host == "0.0.0.0"
    port = args.port or Settings.model_fields["port"].default
    assert any(str(mapping).endswith(f":{port}") for mapping in SERVICES["api"]["ports"])


def test_health_checks() -> None:
    assert "pg_isready" in " ".join(_argv(SERVICES["postgres"]["healthcheck"]["test"]))
    assert "health" in " ".join(_argv(SERVICES["temporal"]["healthcheck"]["test"]))
    api_check = " ".join(_argv(SERVICES["api"]["healthcheck"]["test"]))
    assert "/healthz" in api_check


@pytest.mark.parametrize("service", ["api", "worker"])
def test_processes_start_after_migrations_and_a_healthy_temporal(service: str) -> None:
    depends_on = SERVICES[service]["depends_on"]
    assert depends_on["migrate"]["condition"] == "service_completed_successfully"
    assert depends_on["temporal"]["condition"] == "service_healthy"
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_temporal_runs_on_the_compose_postgres() -> None:
    env = SERVICES["temporal"]["environment"]
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == "postgres"


def test_project_settings_are_real_settings() -> None:
    for service in PROJECT_SERVICES:
        for name in SERVICES[service]["environment"]:
            if name.startswith("MKTX_"):
                field = name.removeprefix("MKTX_").lower()
                assert field in Settings.model_fields, f"{service}: {name} is not a setting"
        assert SERVICES[service]["environment"]["MKTX_ENV"] == "production"


def test_no_secret_is_baked_in() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for default in (DEV_JWT_SECRET, DEV_ENCRYPTION_KEY, DEV_X_CONSUMER_KEY, DEV_X_CONSUMER_SECRET):
        assert default not in text
    for service_name, service in SERVICES.items():
        for name, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(name):
                assert value is None or REQUIRED_REFERENCE.match(str(value)), (
                    f"{service_name}: {name} must come from the environment, not {value!r}"
                )
            for password in re.findall(r"://[^:/@]+:([^@]*)@", str(value or "")):
                assert REQUIRED_REFERENCE.match(password), f"{service_name}: {name} password"


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_runs_a_real_entry_point_as_a_non_root_user() -> None:
    instructions = _dockerfile_instructions()
    values = dict(instructions)  # the last occurrence of each instruction wins, as in Docker
    assert values["FROM"].startswith("python:3.11-slim")
    assert values.get("USER") not in (None, "root", "0")
    assert any(kind == "RUN" and "pip install ." in value for kind, value in instructions)
    argv = [*json.loads(values.get("ENTRYPOINT", "[]")), *json.loads(values["CMD"])]
    assert _assert_real_entry_point(argv) == "api"
    assert build_parser().parse_args(argv[1:]).host == "0.0.0.0"


def test_dockerfile_copies_files_that_exist() -> None:
    for kind, value in _dockerfile_instructions():
        if kind == "COPY" and not value.startswith("--from"):
            *sources, _destination = value.split()
            for source in sources:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
