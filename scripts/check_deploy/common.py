"""What every check shares: the repository's paths, Failed and Skipped, fail_if, run (a
command's captured output), cargo_field, a plain HTTP helper, free_port and the kvstore
binary built in target/."""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "kvstore"
RENDER_DIR = ROOT / "target" / "check-deploy"
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "kvstore.json"
OPENAPI = ROOT / "openapi" / "openapi.json"
# The variables that give kvstore its HTTPS certificate and key (http.tls.*).
HTTPS_FILES = ("KVSTORE_HTTP__TLS__CERT_FILE", "KVSTORE_HTTP__TLS__KEY_FILE")


class Failed(Exception):
    """A check found problems; the message lists them."""


class Skipped(Exception):
    """A check could not run here; the message says why."""


def fail_if(problems: list[str]) -> None:
    if problems:
        raise Failed("\n".join(problems))


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def cargo_field(name: str) -> str:
    match = re.search(rf'^{name} = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.MULTILINE)
    if not match:
        raise Failed(f"Cargo.toml has no {name}")
    return match.group(1)


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kvstore_binary() -> Path | None:
    """The most recently built kvstore in target/ (release or debug), if any."""
    built = [ROOT / "target" / profile / "kvstore" for profile in ("release", "debug")]
    built = [b for b in built if b.is_file() and os.access(b, os.X_OK)]
    return max(built, key=lambda b: b.stat().st_mtime, default=None)


def environment_without_kvstore_settings() -> dict[str, str]:
    """This process's environment minus what would configure a kvstore it starts (KVSTORE_*
    and RUST_LOG), so that only the settings under test reach it."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KVSTORE_") and k != "RUST_LOG"}
