"""The deployment files agree with each other and with mailflow's configuration.

There is no container engine on our machines, so docker-compose.yml and the Dockerfile
are never run here. What can go wrong without an engine is checked instead: a service,
volume, secret or file that is named but missing, a password file the config reads from
a path no secret is mounted at, a config the loader rejects, a root container, a unit
without its hardening.
"""

from __future__ import annotations

import configparser
import fnmatch
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from mailflow import config as config_mod

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DEPLOY_CONFIG = ROOT / "deploy" / "mailflow.yaml"
_VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}``, with the variables unset (as on a fresh checkout)."""
    return _VAR.sub(lambda m: os.environ.get(m.group(1)) or m.group(2) or "", value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def deploy_config() -> dict[str, Any]:
    data = yaml.safe_load(DEPLOY_CONFIG.read_text())
    assert isinstance(data, dict)
    return data


def _volumes(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) for each short-syntax volume of a service."""
    out = []
    for spec in service.get("volumes", []):
        parts = spec.split(":")
        out.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    return out


def _secret_names(service: dict[str, Any]) -> set[str]:
    return {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}


def _mounted_config(service: dict[str, Any]) -> tuple[Path, PurePosixPath]:
    """The host file mounted as the service's MAILFLOW_CONFIG, and where."""
    target = PurePosixPath(service["environment"]["MAILFLOW_CONFIG"])
    [source] = [s for s, t, _ in _volumes(service) if PurePosixPath(t) == target]
    return ROOT / source, target


def test_services_and_build(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"mailflow", "postgres", "dovecot"} <= set(services)
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        if "build" in svc:
            context = ROOT / svc["build"]["context"]
            assert context.is_dir(), name
            assert (context / svc["build"].get("dockerfile", "Dockerfile")).is_file(), name
    assert "build" in services["mailflow"]


def test_schema_is_upgraded_before_mailflow_starts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    deps = services["mailflow"]["depends_on"]
    [migrator] = [n for n, c in deps.items()
                  if c.get("condition") == "service_completed_successfully"]
    assert services[migrator]["command"] == ["db", "upgrade"]
    assert services[migrator]["image"] == services["mailflow"]["image"]
    assert services[migrator]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["postgres"]


def test_volumes_are_declared_and_bind_sources_exist(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, svc in compose["services"].items():
        for source, target, _ in _volumes(svc):
            assert target.startswith("/"), (name, target)
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), (name, source)
            else:
                assert source in declared, (name, source)
                used.add(source)
    assert used == declared, "declared but unused volumes"
    mounts = {t: (s, ro) for s, t, ro in _volumes(compose["services"]["mailflow"])}
    data = [s for t, (s, ro) in mounts.items() if t == "/var/lib/mailflow"]
    assert data and data[0] in declared
    # Configuration and rules read-only; only the data volume writable.
    assert all(ro for t, (_, ro) in mounts.items() if t.startswith("/etc/mailflow"))


def test_secrets_are_declared_and_their_files_exist(compose: dict[str, Any]) -> None:
    declared = compose["secrets"]
    for name, svc in compose["services"].items():
        assert _secret_names(svc) <= set(declared), name
    for name, spec in declared.items():
        assert "file" in spec or "environment" in spec, name
        if "file" in spec:
            assert (ROOT / _interpolate(spec["file"])).is_file(), name


def test_every_secret_the_config_names_is_mounted(compose: dict[str, Any],
                                                  deploy_config: dict[str, Any]) -> None:
    svc = compose["services"]["mailflow"]
    mounted = {f"/run/secrets/{n}" for n in _secret_names(svc)}
    env = svc.get("environment", {})
    needed = set()
    for section in ("imap", "smtp"):
        block = deploy_config.get(section) or {}
        if "password_file" in block:
            assert block["password_file"] in mounted, section
            needed.add(block["password_file"])
        if "password_env" in block:
            assert block["password_env"] in env, section
        assert "password" not in block, f"{section}: a secret written into the config"
    # libpq's password, through the image's entry point.
    assert env["PGPASSWORD_FILE"] in mounted
    needed.add(env["PGPASSWORD_FILE"])
    assert needed == mounted, "secrets mounted that nothing reads"
    pg = compose["services"]["postgres"]
    assert pg["environment"]["POSTGRES_PASSWORD_FILE"] == env["PGPASSWORD_FILE"]
    assert pg["environment"]["POSTGRES_PASSWORD_FILE"].removeprefix("/run/secrets/") \
        in _secret_names(pg)


def test_config_points_at_the_compose_services(compose: dict[str, Any],
                                               deploy_config: dict[str, Any]) -> None:
    services = compose["services"]
    url = urlsplit(deploy_config["database"].replace("postgresql+psycopg", "postgresql"))
    pg = services["postgres"]["environment"]
    assert url.hostname == "postgres" and url.username == pg["POSTGRES_USER"]
    assert url.password is None, "the database password belongs in a secret"
    assert url.path.lstrip("/") == pg["POSTGRES_DB"]
    assert deploy_config["imap"]["host"] == "dovecot"
    assert deploy_config["smtp"]["host"] in services
    for name in ("migrate", "mailflow"):
        source, target = _mounted_config(services[name])
        assert source == DEPLOY_CONFIG, name
        mounts = {PurePosixPath(t): s for s, t, _ in _volumes(services[name])}
        for key in ("rules_dir", "templates_dir"):
            inside = target.parent / deploy_config[key]
            assert inside in mounts, (name, key)
            assert (ROOT / mounts[inside]).is_dir(), (name, key)


def test_trial_mailbox_password_matches_the_secret(compose: dict[str, Any],
                                                   deploy_config: dict[str, Any]) -> None:
    users = dict(line.split(":", 1)[0:2] for line in
                 (ROOT / "deploy/dovecot/users").read_text().splitlines() if line.strip())
    imap = deploy_config["imap"]
    secret = imap["password_file"].removeprefix("/run/secrets/")
    value = (ROOT / _interpolate(compose["secrets"][secret]["file"])).read_text().strip()
    assert users[imap["username"]] == "{PLAIN}" + value
    mounts = {t: s for s, t, _ in _volumes(compose["services"]["dovecot"])}
    assert mounts["/etc/dovecot/users"] == "./deploy/dovecot/users"
    assert "/etc/dovecot/users" in (ROOT / mounts["/etc/dovecot/dovecot.conf"]).read_text()


def test_example_config_validates_with_mailflows_loader() -> None:
    """What ``mailflow check`` would say about the compose's config: nothing."""
    settings = config_mod.load(DEPLOY_CONFIG)
    assert settings.imap.password_file == Path("/run/secrets/imap_password")
    assert settings.database_url.startswith("postgresql+psycopg://mailflow@postgres")


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics for our allow-list: the last matching pattern wins."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        parts = PurePosixPath(path).parts
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatch(p, pat) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerfile_runs_unprivileged_with_a_healthcheck() -> None:
    steps = _dockerfile()
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM"):]
    users = [rest for w, rest in final if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    [health] = [rest for w, rest in final if w == "HEALTHCHECK"]
    assert "NONE" not in health and "mailflow" in health
    assert any(w == "ENTRYPOINT" for w, _ in final)
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    for word, rest in steps:
        if word == "COPY" and "--from=" not in rest:
            *sources, _ = rest.split()
            for src in sources:
                assert (ROOT / src).exists(), src
                assert not _ignored(src, patterns), f"{src} is left out by .dockerignore"
    entry = ROOT / "deploy" / "docker-entrypoint.sh"
    assert os.access(entry, os.X_OK) and entry.read_text().startswith("#!/bin/sh")


def test_systemd_unit_has_the_required_keys() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "contrib" / "mailflow.service")
    svc = unit["Service"]
    assert svc["User"] not in ("root", "0")
    assert svc["EnvironmentFile"].lstrip("-").startswith("/etc/mailflow/")
    assert svc["Restart"] == "on-failure"
    assert svc["ExecStart"].endswith("mailflow run")
    assert svc["ProtectSystem"] == "strict"
    assert "/var/lib/mailflow" in svc["ReadWritePaths"].split()
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome", "PrivateDevices"):
        assert svc[key] == "true", key
    assert unit["Install"]["WantedBy"] == "multi-user.target"
