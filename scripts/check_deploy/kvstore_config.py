"""The kvstore.toml each Helm values file renders, started by the real kvstore binary with
the pod's environment and throwaway files standing in for the Secrets it mounts; a probe then
checks the auth the pod's clients would meet."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from .common import (HTTPS_FILES, ROOT, Failed, Skipped, environment_without_kvstore_settings, fail_if, free_port,
                     http)
from .helm import manifests_of, render


def container_env(container: dict) -> dict[str, str]:
    """The container's environment as kubelet would set it: Secret values stand in as
    placeholders and $(VAR) references are expanded."""
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = re.sub(
                r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), entry["value"]
            )
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            env[entry["name"]] = f"secret-{entry['valueFrom']['secretKeyRef']['key']}"
    return env


def secret_mounts(pod: dict, container: dict) -> dict[str, set[str] | None]:
    """mountPath -> the file names a Secret volume mounted there holds (None: the whole
    Secret, so any name), for the container's mounts of `secret` and `projected` volumes."""
    volumes = {volume["name"]: volume for volume in pod["spec"].get("volumes", [])}
    mounts: dict[str, set[str] | None] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        if "secret" in volume:
            sources = [volume["secret"]]
        elif "projected" in volume:
            sources = [source["secret"] for source in volume["projected"]["sources"] if "secret" in source]
        else:
            continue
        names: set[str] | None = set()
        for source in sources:
            if "items" not in source:
                names = None
                break
            names |= {item["path"] for item in source["items"]}
        mounts[mount["mountPath"].rstrip("/")] = names
    return mounts


def secret_files(config: str, env: dict[str, str]) -> dict[str, str]:
    """Files kvstore is told to read, by what they hold (`cert` or `key` for Kafka's TLS,
    `https-cert` or `https-key` for its own HTTPS listener, else `secret`): the
    `KVSTORE_*_FILE` variables and every `file = "..."` secret reference."""
    kinds = {"KVSTORE_KAFKA__TLS__CA_FILE": "cert", "KVSTORE_KAFKA__TLS__CERT_FILE": "cert",
             "KVSTORE_KAFKA__TLS__KEY_FILE": "key", HTTPS_FILES[0]: "https-cert", HTTPS_FILES[1]: "https-key"}
    files = {value: kinds.get(name, "secret") for name, value in env.items()
             if name.startswith("KVSTORE_") and name.endswith("_FILE")}
    for text in [config, *env.values()]:
        for path in re.findall(r'\bfile\s*=\s*"([^"]+)"', text):
            files.setdefault(path, "secret")
    return files


def stage_secrets(config: str, env: dict[str, str], mounts: dict[str, set[str] | None],
                  tmp: Path) -> tuple[str, dict[str, str], dict[str, str]]:
    """The Secrets a pod mounts do not exist here. Every file kvstore is told to read must lie
    in a mounted Secret that holds it; each is then made under `tmp` (the paths in `config`
    and `env` rewritten to match): a throwaway certificate and key made with openssl for
    Kafka's TLS (the key encrypted with the password the pod would get) and another pair, for
    127.0.0.1, for kvstore's HTTPS listener, else a placeholder secret. Returns the new config
    and env, and the placeholder secrets by their pod path."""
    problems = []
    staged: dict[str, Path] = {}
    for path, kind in secret_files(config, env).items():
        directory, _, name = path.rpartition("/")
        if directory not in mounts:
            problems.append(f"{path} is named as a {kind} file, but no Secret is mounted at {directory}")
        elif mounts[directory] is not None and name not in mounts[directory]:
            problems.append(f"{path}: the Secret mounted at {directory} holds only {sorted(mounts[directory])}")
        else:
            staged[path] = tmp / "secrets" / f"{len(staged)}-{name}"
    fail_if(problems)
    (tmp / "secrets").mkdir(exist_ok=True)
    kinds = secret_files(config, env)
    secrets = {}
    for path, target in staged.items():
        if kinds[path] == "secret":
            # Distinct, and long enough for a bearer token.
            secrets[path] = f"check-deploy-placeholder-{target.name}"
            target.write_text(secrets[path] + "\n")
    key_password = secrets.get(env.get("KVSTORE_KAFKA__TLS__KEY_PASSWORD__FILE", ""))
    if any(kinds[path] in ("cert", "key") for path in staged):
        key, cert = tmp / "tls.key", tmp / "tls.crt"
        command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-days", "1",
                   "-subj", "/CN=kvstore-check", "-keyout", str(key), "-out", str(cert)]
        command += ["-passout", f"pass:{key_password}"] if key_password else ["-noenc"]
        subprocess.run(command, check=True, capture_output=True)
        for path in staged:
            if kinds[path] in ("cert", "key"):
                shutil.copy(key if kinds[path] == "key" else cert, staged[path])
    if any(kinds[path] in ("https-cert", "https-key") for path in staged):
        # For the address the check connects to, so that the client can verify it.
        key, cert = tmp / "https.key", tmp / "https.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-days", "1", "-subj", "/CN=localhost", "-noenc", "-keyout", str(key), "-out", str(cert),
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-addext", "basicConstraints=critical,CA:FALSE"],
                       check=True, capture_output=True)
        for path in staged:
            if kinds[path] in ("https-cert", "https-key"):
                shutil.copy(key if kinds[path] == "https-key" else cert, staged[path])

    def rewrite(text: str) -> str:
        # Longest first, so that no path is rewritten inside a longer one.
        for path in sorted(staged, key=len, reverse=True):
            text = text.replace(path, str(staged[path]))
        return text

    return rewrite(config), {name: rewrite(value) for name, value in env.items()}, secrets


def https_context(env: dict[str, str]) -> ssl.SSLContext | None:
    """A client context trusting the certificate kvstore is given (http.tls.cert_file), when
    `env` gives it one; None for plain HTTP."""
    cert = env.get(HTTPS_FILES[0])
    return ssl.create_default_context(cafile=cert) if cert else None


def start_kvstore(binary: Path, config: Path, env: dict[str, str], probe=None) -> tuple[bool, str]:
    """Starts kvstore with `config` and `env` against an unreachable broker; once it answers
    /healthz (over HTTPS, verifying its certificate, when `env` gives it one), calls
    `probe(base_url, context)` (if given) while it runs. True and the probe's note if it
    started, False and its output if it exits first."""
    clean = environment_without_kvstore_settings()
    context = https_context(env)
    port = free_port()
    process = subprocess.Popen(
        # --listen and --brokers override the file: a free loopback port, and a broker
        # address that refuses at once (kvstore serves /healthz without a broker).
        [str(binary), "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}",
         "--brokers", "127.0.0.1:9"],
        cwd=config.parent, env={**clean, **env, "RUST_BACKTRACE": "0"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"{'https' if context else 'http'}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False, process.communicate()[0]
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1, context=context):
                    return True, probe(base, context) if probe else ""
            except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError):
                time.sleep(0.2)
        return False, "did not answer /healthz within 20s"
    finally:
        # Only the configuration is under test here, not shutdown: no need to wait for it.
        if process.poll() is None:
            process.kill()
            process.wait()


def auth_probe(env: dict[str, str]):
    """What the pod's clients would meet, checked on a running kvstore: with auth on, a request
    without a token gets 401 and each configured token is recognised (200, or 403 for one
    without the scope), and /metrics answers 401 without a token unless it is open."""

    def probe(base: str, context: ssl.SSLContext | None) -> str:
        def status(path: str, token: str | None = None) -> int:
            headers = {"authorization": f"Bearer {token}"} if token else {}
            return http("GET", f"{base}{path}", headers=headers, context=context)[0]

        if env.get("KVSTORE_AUTH__ENABLED") != "true":
            if status("/v1/topics") != 200 or status("/metrics") != 200:
                raise Failed("auth is off, yet /v1/topics or /metrics wants a token")
            return "auth off"
        problems = []
        if (answer := status("/v1/topics")) != 401:
            problems.append(f"/v1/topics without a token answered {answer}, not 401")
        metrics_open = env.get("KVSTORE_AUTH__OPEN_METRICS") == "true"
        if (answer := status("/metrics")) != (200 if metrics_open else 401):
            problems.append(f"/metrics without a token answered {answer} (open_metrics {metrics_open})")
        tokens = re.findall(r'name="([^"]+)", secret=\{file="([^"]+)"\}', env.get("KVSTORE_AUTH__TOKENS", ""))
        if not tokens:
            problems.append("auth is on but KVSTORE_AUTH__TOKENS names no token file")
        for token, path in tokens:
            if (answer := status("/v1/topics", Path(path).read_text().strip())) not in (200, 403):
                problems.append(f"token {token} was not recognised: /v1/topics answered {answer}")
        fail_if(problems)
        return f"auth on, {len(tokens)} token{'s' if len(tokens) > 1 else ''} accepted"

    return probe


def check_config_starts_kvstore(name: str, values: dict | None, binary: Path | None) -> str:
    if binary is None:
        raise Skipped("no kvstore binary in target/ (make build)")
    documents = manifests_of(render(name, values))
    configmaps = [doc for doc in documents if doc["kind"] == "ConfigMap"]
    if not configmaps:
        raise Skipped("the configuration comes from an existing Secret")
    config = configmaps[0]["data"]["kvstore.toml"]
    (deployment,) = [doc for doc in documents if doc["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    env = container_env(container)
    files = secret_files(config, env)
    with tempfile.TemporaryDirectory() as tmp:
        config, env, _ = stage_secrets(config, env, secret_mounts(pod, container), Path(tmp))
        path = Path(tmp) / "kvstore.toml"
        path.write_text(config)
        started, output = start_kvstore(binary, path, env, auth_probe(env))
    if started:
        kafka = env.get("KVSTORE_KAFKA__SECURITY_PROTOCOL", "plaintext")
        scheme = "HTTPS" if env.get(HTTPS_FILES[0]) else "HTTP"
        return (f"{binary.relative_to(ROOT)} starts with it and answers over {scheme} (Kafka {kafka}"
                f"{f', {len(files)} mounted secret file' + ('s' if len(files) > 1 else '') if files else ''}; {output})")
    raise Failed(f"kvstore refused the rendered configuration:\n{output.strip()[-2000:]}")
