"""The deployment files, checked without a Docker engine.

docker-compose.yml and the Dockerfile are read as data; deploy/nginx.conf is rendered for
loopback upstreams and checked by a real `nginx -t`.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.helpers.nginx import NGINX_CONF, check_config, free_port, nginx_binary, render_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_CMD = "docker compose up --scale api=3"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    result: dict[str, Any] = compose["services"]
    return result


@pytest.fixture(scope="module")
def nginx_conf() -> str:
    return NGINX_CONF.read_text()


def _env(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env)


def _location(conf: str, spec: str) -> str:
    match = re.search(r"location\s+" + re.escape(spec) + r"\s*\{(.*?)\}", conf, re.S)
    assert match, f"nginx.conf has no `location {spec}` block"
    return match.group(1)


def _dockerfile() -> list[str]:
    # Join continuation lines, drop comments: one instruction per entry.
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_compose_defines_redis_api_and_nginx(services: dict[str, Any]) -> None:
    assert {"redis", "api", "nginx"} <= services.keys()


def test_redis_is_the_official_image_with_a_ping_healthcheck(services: dict[str, Any]) -> None:
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])


def test_api_is_built_here_and_scales_without_host_ports(services: dict[str, Any]) -> None:
    api = services["api"]
    build = api["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    assert (ROOT / context / "Dockerfile").is_file()
    assert api["deploy"]["replicas"] >= 2
    # A published host port or a fixed container name makes `--scale api=3` fail.
    assert "ports" not in api
    assert "container_name" not in api


def test_api_reaches_the_redis_service_once_it_is_healthy(services: dict[str, Any]) -> None:
    api = services["api"]
    url = urlsplit(_env(api)["HERALD_REDIS_URL"])
    assert url.scheme == "redis"
    assert url.hostname in services
    assert services[url.hostname]["image"].startswith("redis:")
    assert api["depends_on"][url.hostname]["condition"] == "service_healthy"


def test_each_api_replica_keeps_its_own_replica_id(services: dict[str, Any]) -> None:
    assert "HERALD_REPLICA_ID" not in _env(services["api"])


def test_api_has_a_healthcheck_on_health(services: dict[str, Any]) -> None:
    assert "/health" in " ".join(services["api"]["healthcheck"]["test"])


# Set in docker-compose.yml ahead of the branch that adds the setting (the hardening work); drop the
# exemption once api/settings.py reads it.
ADDED_ELSEWHERE = {"HERALD_TRUSTED_PROXIES"}


def test_compose_settings_are_real_settings_with_their_defaults(services: dict[str, Any]) -> None:
    settings = pytest.importorskip("api.settings", reason="api/settings.py is not written yet")
    model = settings.Settings
    prefix = model.model_config.get("env_prefix", "HERALD_").upper()
    fields = {prefix + name.upper(): info for name, info in model.model_fields.items()}
    for key, value in _env(services["api"]).items():
        if key in ADDED_ELSEWHERE and key not in fields:
            continue
        assert key in fields, f"docker-compose.yml sets {key}, which Settings does not read"
        match = re.fullmatch(r"\$\{(\w+):-(.*)\}", str(value))
        if match is None:
            continue
        assert match.group(1) == key
        default = fields[key].default
        if isinstance(default, int | float) and not isinstance(default, bool):
            assert float(match.group(2)) == float(default), f"{key}: compose default differs from Settings"
        else:
            assert match.group(2) == str(default), f"{key}: compose default differs from Settings"


def test_redis_keeps_an_append_only_file_on_a_named_volume(services: dict[str, Any]) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    redis = services["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    volume, target = redis["volumes"][0].split(":")[:2]
    assert target == "/data"  # the official image's working directory, where the AOF is written
    assert volume in compose["volumes"]  # named, so `docker compose down` (without -v) keeps it


def test_nginx_worker_connections_hold_every_replica_socket_twice(services: dict[str, Any], nginx_conf: str) -> None:
    api = services["api"]
    per_replica = int(re.fullmatch(r"\$\{\w+:-(\d+)\}", _env(api)["HERALD_MAX_CONNECTIONS"]).group(1))  # type: ignore[union-attr]
    replicas = api["deploy"]["replicas"]
    worker_connections = int(re.search(r"worker_connections\s+(\d+);", nginx_conf).group(1))  # type: ignore[union-attr]
    # Client side and replica side of each socket, all of them possibly in one worker.
    assert worker_connections >= 2 * per_replica * replicas
    rlimit = int(re.search(r"worker_rlimit_nofile\s+(\d+);", nginx_conf).group(1))  # type: ignore[union-attr]
    assert rlimit >= worker_connections
    assert services["nginx"]["ulimits"]["nofile"]["soft"] >= rlimit
    assert api["ulimits"]["nofile"]["soft"] > per_replica


def test_only_the_compose_network_is_trusted_to_forward_client_addresses(services: dict[str, Any]) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    (subnet,) = [pool["subnet"] for pool in compose["networks"]["default"]["ipam"]["config"]]
    assert _env(services["api"])["HERALD_TRUSTED_PROXIES"] == subnet
    assert "*" not in subnet


def test_nginx_publishes_a_port_and_mounts_the_repo_config(services: dict[str, Any], nginx_conf: str) -> None:
    nginx = services["nginx"]
    targets = []
    for port in nginx["ports"]:
        targets.append(str(port["target"]) if isinstance(port, dict) else str(port).split(":")[-1])
    listen = re.search(r"^\s*listen\s+(\d+);", nginx_conf, re.M)
    assert listen and listen.group(1) in targets

    mounts = {}
    for volume in nginx["volumes"]:
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume["source"]
        else:
            source, target, *_ = volume.split(":")
            mounts[target] = source
    assert (ROOT / mounts["/etc/nginx/nginx.conf"]).resolve() == NGINX_CONF
    assert "api" in nginx["depends_on"]


def test_nginx_image_supports_upstream_resolve(services: dict[str, Any], nginx_conf: str) -> None:
    # `server ... resolve` is open-source nginx only from 1.27.3 on.
    if " resolve" not in nginx_conf:
        pytest.skip("nginx.conf does not use `resolve`")
    version = re.match(r"nginx:(\d+)\.(\d+)\.(\d+)", services["nginx"]["image"])
    assert version, "pin the nginx image to a full x.y.z version"
    assert tuple(int(part) for part in version.groups()) >= (1, 27, 3)


def test_nginx_upstream_points_at_the_api_service_port(nginx_conf: str) -> None:
    servers = re.search(r"# upstream-servers-begin\n(.*?)# upstream-servers-end", nginx_conf, re.S)
    assert servers
    assert re.search(r"server\s+api:8000\b", servers.group(1))


def test_nginx_passes_websocket_upgrades(nginx_conf: str) -> None:
    assert re.search(r"map\s+\$http_upgrade\s+\$connection_upgrade", nginx_conf)
    assert "proxy_http_version 1.1;" in nginx_conf
    assert "proxy_set_header Upgrade $http_upgrade;" in nginx_conf
    assert "proxy_set_header Connection $connection_upgrade;" in nginx_conf
    for header in ("Host", "X-Real-IP", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"):
        assert f"proxy_set_header {header} " in nginx_conf
    assert "proxy_buffering off;" in nginx_conf
    assert re.search(r"proxy_next_upstream\s+error\s+timeout", nginx_conf)


@pytest.mark.parametrize("spec", ["/ws/", "= /graphql"])
def test_nginx_keeps_long_lived_sockets_open(nginx_conf: str, spec: str) -> None:
    block = _location(nginx_conf, spec)
    assert "proxy_pass http://herald;" in block
    assert "proxy_read_timeout 3600s;" in block
    assert "proxy_send_timeout 3600s;" in block
    # A proxy_set_header here would drop every header set at server level.
    assert "proxy_set_header" not in block


def test_rendered_loopback_config_keeps_the_proxy_settings(tmp_path: Path, nginx_conf: str) -> None:
    rendered = render_config([7001, 7002], 7000, tmp_path, nginx_binary()).read_text()
    assert re.findall(r"server (127\.0\.0\.1:\d+)", rendered) == ["127.0.0.1:7001", "127.0.0.1:7002"]
    assert "listen 127.0.0.1:7000;" in rendered
    assert "api:8000" not in rendered
    assert str(tmp_path) in rendered
    for line in ("proxy_set_header Connection $connection_upgrade;", "proxy_read_timeout 3600s;"):
        assert rendered.count(line) == nginx_conf.count(line)


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    conf = render_config([free_port(), free_port()], free_port(), tmp_path)
    result = check_config(conf, tmp_path)
    assert result.returncode == 0, result.stderr


def test_dockerfile_builds_a_non_root_replica() -> None:
    lines = _dockerfile()
    assert lines[0] == "FROM python:3.11-slim"
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert 'CMD ["herald", "serve", "--host", "0.0.0.0", "--port", "8000"]' in lines
    assert "EXPOSE 8000" in lines
    health = next(line for line in lines if line.startswith("HEALTHCHECK "))
    assert "/health" in health and "curl" not in health


def test_dockerfile_installs_dependencies_before_copying_the_code() -> None:
    lines = _dockerfile()
    copies = [line for line in lines if line.startswith("COPY ")]
    # `COPY <sources...> <dest>`: the first one that brings in package code.
    first_code = next(i for i, line in enumerate(copies) if {"api", "broker", "."} & set(line.split()[1:-1]))
    assert any("pyproject.toml" in line for line in copies[:first_code])
    installs = [line for line in lines if "pip install" in line]
    assert any(re.search(r"pip install \.(\s|$)", line) for line in installs)
    assert not any("[dev]" in line for line in installs)


def test_dockerfile_ships_the_benchmarks_and_can_add_the_bench_extra() -> None:
    lines = _dockerfile()
    assert "COPY benchmarks ./benchmarks" in lines
    assert 'ARG EXTRAS=""' in lines
    requirements = next(line for line in lines if "requirements.txt" in line and "tomllib" in line)
    assert "optional-dependencies" in requirements


def test_dockerignore_keeps_the_build_inputs_and_drops_local_state() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".venv", ".git"} <= set(patterns)
    for needed in ("pyproject.toml", "README.md", "api/app.py", "broker/types.py", "benchmarks/run.py"):
        hits = [p for p in patterns if fnmatch.fnmatch(needed, p) or needed.startswith(p.rstrip("/") + "/")]
        assert not hits, f".dockerignore drops {needed}, which the image needs ({hits})"


def test_readme_shows_how_to_run_the_cluster() -> None:
    readme = ROOT / "README.md"
    if not readme.exists():
        pytest.skip("README.md is not written yet")
    assert COMPOSE_CMD in readme.read_text()
