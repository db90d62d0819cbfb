"""Run the repo's deploy/nginx.conf for real, in front of loopback upstreams.

The compose file points nginx at `api:8000` through Docker's DNS. Tests have no Docker,
so `render_config` rewrites only what ties the file to a container (the upstream servers,
the listen port, pid/log/temp paths) and keeps every proxy setting as written.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.services import free_port, require

NGINX_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0

_MARKERS = re.compile(r"(# upstream-servers-begin\n)(.*?)(\s*# upstream-servers-end)", re.S)
_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_binary() -> str | None:
    # /usr/sbin is often missing from a non-root PATH, where Debian installs nginx.
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/usr/local/nginx/sbin")


def nginx_available() -> bool:
    return nginx_binary() is not None


def require_nginx() -> str:
    """The nginx binary, or skip the test; CI sets HERALD_REQUIRE_SERVICES=1 to fail instead."""
    return require("nginx", "apt-get install nginx-light")


def _sub_once(pattern: str, repl: str, text: str) -> str:
    new, count = re.subn(pattern, repl, text, flags=re.M)
    if count != 1:
        raise ValueError(f"deploy/nginx.conf: expected exactly one match for {pattern!r}, found {count}")
    return new


def _compiled_without(binary: str) -> set[str]:
    """Modules the local build leaves out, so their *_temp_path directives would not parse."""
    info = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=10).stderr
    return set(re.findall(r"--without-http_(\w+?)_module", info))


def render_config(
    upstreams: list[int],
    listen_port: int,
    workdir: Path,
    binary: str | None = None,
    *,
    websockets: bool = True,
    backups: int = 0,
) -> Path:
    """Write deploy/nginx.conf rewritten for 127.0.0.1 upstreams into workdir; return its path.

    ``websockets=False``: the proxy passes no ``Upgrade`` (as an HTTP proxy that does not know
    WebSockets), so every WebSocket handshake through it fails while plain HTTP and SSE work.
    ``backups``: the last that many upstreams get traffic only when the others refuse it (a failover pair).
    """
    if not upstreams:
        raise ValueError("need at least one upstream port")
    text = NGINX_CONF.read_text()

    match = _MARKERS.search(text)
    if match is None:
        raise ValueError("deploy/nginx.conf: upstream-servers markers not found")
    # Keep the real server parameters (max_fails, fail_timeout) minus `resolve`, which
    # needs a DNS name and nginx >= 1.27.3.
    block = match.group(2)
    indent = block[: len(block) - len(block.lstrip())]
    params = [p for p in block.strip().rstrip(";").split()[2:] if p != "resolve"]
    primaries = len(upstreams) - backups
    servers = "\n".join(
        f"{indent}{' '.join(['server', f'127.0.0.1:{port}', *params, *(['backup'] if i >= primaries else [])])};"
        for i, port in enumerate(upstreams)
    )
    text = text[: match.start(2)] + servers + text[match.end(2) :]

    if not websockets:
        text = _sub_once(r"^(\s*)proxy_set_header Upgrade \$http_upgrade;", r'\g<1>proxy_set_header Upgrade "";', text)
        text = _sub_once(
            r"^(\s*)proxy_set_header Connection \$connection_upgrade;", r"\g<1>proxy_set_header Connection close;", text
        )
    text = _sub_once(r"^(\s*)listen\s+80;", rf"\g<1>listen 127.0.0.1:{listen_port};", text)
    text = _sub_once(r"^(\s*)worker_processes\s+[^;]+;", r"\g<1>worker_processes 1;", text)
    text = _sub_once(r"^(\s*)pid\s+[^;]+;", rf"\g<1>pid {workdir / 'nginx.pid'};", text)
    text = _sub_once(r"^(\s*)error_log\s+[^;]+;", rf"\g<1>error_log {workdir / 'error.log'} notice;", text)
    text = _sub_once(r"^(\s*)access_log\s+[^;]+;", rf"\g<1>access_log {workdir / 'access.log'};", text)

    binary = binary or nginx_binary()
    without = _compiled_without(binary) if binary else set()
    temp_lines = [f"    {name}_temp_path {workdir / 'temp' / name};" for name in _TEMP_PATHS if name not in without]
    text = _sub_once(r"^http \{\n", "http {\n" + "\n".join(temp_lines) + "\n", text)

    if os.geteuid() == 0:
        # As root, workers would switch to `nobody`, which cannot enter pytest's 0700 tmp dirs.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n"
        text = user + text

    (workdir / "temp").mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(text)
    return conf


def _base_args(binary: str, workdir: Path, conf: Path) -> list[str]:
    # -p and -e keep nginx away from /var/log/nginx and its other compiled-in paths.
    return [binary, "-p", f"{workdir}/", "-e", str(workdir / "error.log"), "-c", str(conf)]


def check_config(conf: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on a rendered config; returncode 0 when the syntax is valid."""
    binary = require_nginx()
    return subprocess.run([*_base_args(binary, workdir, conf), "-t"], capture_output=True, text=True, timeout=30)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)  # master: fast shutdown, takes its workers down
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # The session we started holds only this master and its workers; kill them together
        # so no orphaned worker keeps the port.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT_S)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@contextmanager
def run_nginx(upstreams: list[int], tmp_path: Path, *, websockets: bool = True, backups: int = 0) -> Iterator[int]:
    """Start nginx with the repo config in front of 127.0.0.1:<upstreams>; yield its port."""
    binary = require_nginx()
    workdir = tmp_path / "nginx"
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = render_config(upstreams, port, workdir, binary, websockets=websockets, backups=backups)
    with (workdir / "stderr.log").open("wb") as stderr:
        proc = subprocess.Popen(
            [*_base_args(binary, workdir, conf), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _accepts(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (workdir / "error.log").read_text(errors="replace") if (workdir / "error.log").exists() else ""
                raise RuntimeError(f"nginx did not start on 127.0.0.1:{port} (exit {proc.poll()}):\n{log}")
            time.sleep(0.05)
        yield port
    finally:
        _stop(proc)
