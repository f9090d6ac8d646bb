"""docker-compose.yml: reading it as docker compose would (kvstore replicas, their auth
settings and tokens, `${VAR:-default}` values, mounts), and the checks of its schema, its
wiring against the integration tests' settings and its Kafka version."""

from __future__ import annotations

import re

import yaml

from .common import COMPOSE, ROOT, Failed, fail_if, run


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def kvstore_services(compose: dict) -> dict[str, dict]:
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


def check_compose_kafka_version() -> str:
    """The compose file's Kafka image is the version the tests run (scripts/kafka.sh)."""
    tested = run([str(ROOT / "scripts" / "kafka.sh"), "version"]).stdout.strip()
    image = load_compose()["services"]["kafka"]["image"]
    fail_if([] if image == f"apache/kafka:{tested}" else
            [f"docker-compose.yml runs {image}, the tests Apache Kafka {tested}"])
    return image


def check_compose_schema(check_jsonschema: str) -> str:
    result = run([check_jsonschema, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    if result.returncode != 0:
        raise Failed((result.stdout + result.stderr).strip())
    return "Compose specification schema"


def harness_settings() -> dict[str, str]:
    """The KVSTORE_* settings the integration tests start every kvstore with."""
    harness = ROOT / "tests" / "integration" / "common" / "server.rs"
    settings = dict(re.findall(r'\.env\("(KVSTORE_\w+)",\s*"([^"]*)"\)', harness.read_text()))
    if not settings:
        raise Failed(f"found no .env(\"KVSTORE_...\", ...) settings in {harness.relative_to(ROOT)}")
    return settings


def compose_default(value) -> str | None:
    """A compose value as `docker compose` sets it when no variable it names is in the
    environment: `${VAR:-default}` and `${VAR-default}` give the default. None when a
    variable has no default."""
    missing = False

    def default(match: re.Match) -> str:
        nonlocal missing
        missing = missing or match.group(2) is None
        return match.group(2) or ""

    text = re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", default, str(value))
    return None if missing else text


# One entry of KVSTORE_AUTH__TOKENS as docker-compose.yml writes it (kvstore reads more forms).
TOKEN_ENTRY = re.compile(r'\{name="([^"]+)", secret=\{(env|file)="([^"]+)"\}, scopes=\[([^\]]*)\]\}')


def compose_tokens(service: dict) -> list[dict]:
    """The tokens a kvstore service lists: name, where the secret is (env or file), scopes."""
    tokens = str(service.get("environment", {}).get("KVSTORE_AUTH__TOKENS", ""))
    return [
        {"name": name, "kind": kind, "ref": ref, "scopes": re.findall(r'"([^"]+)"', scopes)}
        for name, kind, ref, scopes in TOKEN_ENTRY.findall(tokens)
    ]


def compose_auth(service: dict) -> str | None:
    """`true` or `false` as the service sets KVSTORE_AUTH__ENABLED; None if it does not."""
    value = str(service.get("environment", {}).get("KVSTORE_AUTH__ENABLED", "")).lower()
    return value if value in ("true", "false") else None


def metrics_need_token(service: dict) -> bool:
    env = service.get("environment", {})
    return compose_auth(service) != "false" and str(env.get("KVSTORE_AUTH__OPEN_METRICS", "")).lower() != "true"


def mount_targets(service: dict) -> set[str]:
    """Paths a compose service gets files at: volumes, configs and secrets."""
    targets = {str(volume).split(":")[1] for volume in service.get("volumes", []) if ":" in str(volume)}
    for kind in ("configs", "secrets"):
        for entry in service.get(kind, []):
            targets.add(entry["target"] if isinstance(entry, dict) and "target" in entry else f"/{entry}")
    return targets


def check_compose_auth(name: str, service: dict) -> tuple[list[str], str]:
    """Problems with a kvstore service's auth, and a note: the replicas listen on 0.0.0.0,
    where kvstore refuses to start without tokens unless auth is explicitly off."""
    env = service.get("environment", {})
    auth = compose_auth(service)
    if auth is None:
        return [f"{name}: KVSTORE_AUTH__ENABLED must say true or false; on 0.0.0.0 kvstore needs tokens"], ""
    if auth == "false":
        return [], "auth explicitly off"
    tokens = compose_tokens(service)
    problems = [] if tokens else [f"{name}: auth is on but KVSTORE_AUTH__TOKENS lists no token"]
    for token in tokens:
        where = f"{name}: token {token['name']}"
        if token["kind"] == "file":
            if token["ref"] not in mount_targets(service):
                problems.append(f"{where} is read from {token['ref']}, which nothing mounts")
            continue
        value = compose_default(env[token["ref"]]) if token["ref"] in env else None
        if value is None:
            problems.append(f"{where} is read from {token['ref']}, which the service does not set with a default")
        elif len(value) < 16:
            problems.append(f"{where}: the default of {token['ref']} is shorter than 16 characters")
    return problems, f"auth on, tokens {', '.join(t['name'] for t in tokens)}"


def check_compose_wiring() -> str:
    compose = load_compose()
    services = compose["services"]
    problems = []
    replicas = kvstore_services(compose)
    if len(replicas) != 2:
        problems.append(f"expected two kvstore services (with build:), found {sorted(replicas)}")
    kafka = services.get("kafka")
    if kafka is None:
        raise Failed("no kafka service")
    env = kafka.get("environment", {})
    if str(env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE")).lower() != "false":
        problems.append("kafka: KAFKA_AUTO_CREATE_TOPICS_ENABLE must be false (kvstore creates topics)")
    if "healthcheck" not in kafka:
        problems.append("kafka: no healthcheck")
    listeners = env.get("KAFKA_ADVERTISED_LISTENERS", "")
    tests = harness_settings()
    published = set()
    auth_notes = set()
    for name, svc in replicas.items():
        auth_problems, auth_note = check_compose_auth(name, svc)
        problems += auth_problems
        auth_notes.add(auth_note)
        depends = svc.get("depends_on", {})
        if not isinstance(depends, dict) or depends.get("kafka", {}).get("condition") != "service_healthy":
            problems.append(f"{name}: must depend on kafka with condition service_healthy")
        svc_env = svc.get("environment", {})
        brokers = svc_env.get("KVSTORE_BROKERS", "")
        for broker in brokers.split(","):
            if f"//{broker}" not in listeners:
                problems.append(f"{name}: KVSTORE_BROKERS {broker} is not an advertised Kafka listener")
        for key, value in tests.items():
            if str(svc_env.get(key)) != value:
                problems.append(f"{name}: {key} is {svc_env.get(key)!r}; the tests use {value!r}")
        for port in svc.get("ports", []):
            published.add(str(port).split(":")[0].strip('"'))
    if published != {"8080", "8081"}:
        problems.append(f"kvstore replicas publish {sorted(published)}, not 8080 and 8081")
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith(".") and not (ROOT / source).exists():
                problems.append(f"{name}: mounts {source}, which does not exist")
    fail_if(problems)
    return (f"replicas {', '.join(sorted(replicas))} match the tests' {', '.join(sorted(tests))}; "
            f"{'; '.join(sorted(auth_notes))}")


def compose_auth_env(compose: dict) -> tuple[dict[str, str], dict[str, str]]:
    """The auth settings of the compose replicas, as docker compose sets them with no
    variable in the environment, and each token's value by scope."""
    replica = next(iter(kvstore_services(compose).values()))
    env = {key: compose_default(value) or "" for key, value in replica.get("environment", {}).items()}
    settings = {key: value for key, value in env.items() if key.startswith("KVSTORE_AUTH__")}
    by_scope: dict[str, str] = {}
    for token in compose_tokens(replica):
        if token["kind"] == "env":
            settings[token["ref"]] = env[token["ref"]]
            for scope in token["scopes"]:
                by_scope.setdefault(scope, env[token["ref"]])
    return settings, by_scope
