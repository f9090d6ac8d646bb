"""helm/kvstore: the chart's versions, helm lint and the templates rendered with each
ci/*.yaml values file (kubernetes-validate --strict, and the references between manifests
that no schema sees), and the defaults' refusal to render without a token."""

from __future__ import annotations

import re
import shutil

import helm_python
import kubernetes_validate.utils as kv
import yaml

from .common import CHART, HTTPS_FILES, RENDER_DIR, Failed, cargo_field, fail_if

# Kinds without a schema in kubernetes-validate (custom resources) that the chart may render.
CUSTOM_KINDS = {"ServiceMonitor"}


def chart_kube_versions() -> list[str]:
    """The oldest Kubernetes the chart declares and the newest kubernetes-validate knows."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    match = re.search(r">=\s*v?(\d+\.\d+)", chart.get("kubeVersion", ""))
    if not match:
        raise Failed("Chart.yaml has no kubeVersion lower bound")
    oldest, newest = match.group(1), kv.major_minor(kv.latest_version())
    return [oldest] if oldest == newest else [oldest, newest]


def value_sets() -> list[tuple[str, dict | None]]:
    """The values files of ci/. The bare defaults do not render (see check_defaults_refused)."""
    return [(path.stem, yaml.safe_load(path.read_text())) for path in sorted((CHART / "ci").glob("*.yaml"))]


def check_defaults_refused() -> str:
    """Auth is on by default and a pod listens on 0.0.0.0, so kvstore would refuse to start
    without a token: the chart must refuse to render, saying what to set."""
    try:
        render("defaults", None)
    except helm_python.HelmRenderError as error:
        message = str(error)
        if "auth.tokens" not in message or "auth.enabled=false" not in message:
            raise Failed(f"refused, but without naming auth.tokens and auth.enabled=false: {message}")
        return "refused without a token: " + message.split(": ", 1)[-1].split(",")[0]
    raise Failed("rendered although auth is on without a token (kvstore would refuse to start)")


def check_chart_version() -> str:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    if chart["appVersion"] != cargo_field("version"):
        raise Failed(f"Chart.yaml appVersion {chart['appVersion']} is not Cargo.toml's version")
    return f"appVersion {chart['appVersion']}"


def check_helm_lint(name: str, values: dict | None, versions: list[str]) -> str:
    problems = []
    for version in versions:
        report = helm_python.lint(str(CHART), values, strict=True, kube_version=f"v{version}.0")
        for message in report["messages"]:
            if message["severity"] >= 2:  # warnings and errors; 1 is info
                problems.append(f"k8s {version}: {message['path']}: {message['error'].strip()}")
        problems += [f"k8s {version}: {error.strip()}" for error in report.get("errors", [])]
    fail_if(sorted(set(problems)))
    return f"strict, Kubernetes {' and '.join(versions)}"


def render(name: str, values: dict | None) -> dict[str, str]:
    with helm_python.Chart.load(str(CHART)) as chart:
        return chart.render(values, name="kvstore", namespace="kvstore", is_install=True)


def manifests_of(rendered: dict[str, str]) -> list[dict]:
    documents = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".yaml"):
            documents += [doc for doc in yaml.safe_load_all(text) if doc]
    return documents


def check_helm_render(name: str, values: dict | None, versions: list[str]) -> str:
    rendered = render(name, values)
    out = RENDER_DIR / name
    shutil.rmtree(out, ignore_errors=True)
    for path, text in rendered.items():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    problems = []
    if not rendered.get("kvstore/templates/NOTES.txt", "").strip():
        problems.append("NOTES.txt rendered empty")
    documents = manifests_of(rendered)
    kinds = sorted(doc["kind"] for doc in documents)
    for doc in documents:
        for version in versions:
            where = f"{doc['kind']}/{doc['metadata']['name']} (k8s {version})"
            try:
                kv.validate(doc, version, strict=True)
            except kv.SchemaNotFoundError:
                if doc["kind"] not in CUSTOM_KINDS:
                    problems.append(f"{where}: no schema for {doc['apiVersion']} {doc['kind']}")
            except kv.ValidationError as error:
                path = ".".join(str(part) for part in error.path)
                problems.append(f"{where}: {path}: {error.message}")
    problems += check_references(documents)
    fail_if(problems)
    return f"{' '.join(kinds)}; kubernetes-validate --strict passes"


def check_references(documents: list[dict]) -> list[str]:
    """What the schemas cannot see: selectors, port names and mounts that must line up."""
    problems = []
    by_kind: dict[str, list[dict]] = {}
    for doc in documents:
        by_kind.setdefault(doc["kind"], []).append(doc)
    (deployment,) = by_kind["Deployment"]
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    container = pod["spec"]["containers"][0]
    port_names = {port["name"] for port in container["ports"]}

    def selects(selector: dict) -> bool:
        return all(pod_labels.get(k) == v for k, v in selector.items())

    if not selects(deployment["spec"]["selector"]["matchLabels"]):
        problems.append("the Deployment's selector does not match its pods")
    for service in by_kind.get("Service", []):
        if not selects(service["spec"]["selector"]):
            problems.append(f"Service {service['metadata']['name']} selects no pod")
        for port in service["spec"]["ports"]:
            if port["targetPort"] not in port_names:
                problems.append(f"Service port {port['name']} targets unknown port {port['targetPort']}")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        if not selects(pdb["spec"]["selector"]["matchLabels"]):
            problems.append("the PodDisruptionBudget selects no pod")
    for monitor in by_kind.get("ServiceMonitor", []):
        services = by_kind.get("Service", [])
        labels = monitor["spec"]["selector"]["matchLabels"]
        matched = [s for s in services if all(s["metadata"]["labels"].get(k) == v for k, v in labels.items())]
        if not matched:
            problems.append("the ServiceMonitor selects no Service")
        for endpoint in monitor["spec"]["endpoints"]:
            if not any(endpoint["port"] == p["name"] for s in matched for p in s["spec"]["ports"]):
                problems.append(f"the ServiceMonitor scrapes unknown port {endpoint['port']}")
    volumes = {volume["name"] for volume in pod["spec"].get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        if mount["name"] not in volumes:
            problems.append(f"volume mount {mount['name']} has no volume")
    env = {entry["name"]: entry.get("value") for entry in container.get("env", [])}
    mounts = [mount["mountPath"].rstrip("/") + "/" for mount in container.get("volumeMounts", [])]
    https = any(env.get(name) for name in HTTPS_FILES)
    for name in HTTPS_FILES:
        path = env.get(name)
        if path and not any(path.startswith(mount) for mount in mounts):
            problems.append(f"{name}={path} is in no mounted volume")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if container[probe]["httpGet"]["port"] not in port_names:
            problems.append(f"{probe} probes an unknown port")
        if (container[probe]["httpGet"].get("scheme", "HTTP") == "HTTPS") != https:
            problems.append(f"{probe} uses {'HTTP' if https else 'HTTPS'} but kvstore serves the other")
    if env.get("KVSTORE_AUTH__ENABLED") not in ("true", "false"):
        problems.append("KVSTORE_AUTH__ENABLED is not set to true or false (a pod's default is on)")
    metrics_need_token = env.get("KVSTORE_AUTH__ENABLED") != "false" and env.get("KVSTORE_AUTH__OPEN_METRICS") != "true"
    for monitor in by_kind.get("ServiceMonitor", []):
        for endpoint in monitor["spec"]["endpoints"]:
            credentials = endpoint.get("authorization", {}).get("credentials", {})
            if metrics_need_token and not (credentials.get("name") and credentials.get("key")):
                problems.append("the ServiceMonitor sends no token, but /metrics needs one")
            if (endpoint.get("scheme", "http") == "https") != https:
                problems.append(f"the ServiceMonitor scrapes with {endpoint.get('scheme', 'http')}, "
                                f"but kvstore serves {'HTTPS' if https else 'HTTP'}")
            if "tlsConfig" in endpoint and not https:
                problems.append("the ServiceMonitor has a tlsConfig, but kvstore serves plain HTTP")
    annotations = pod["metadata"].get("annotations", {})
    if metrics_need_token and annotations.get("prometheus.io/scrape") == "true":
        problems.append("the pods invite annotation-based scraping (which sends no token), but /metrics needs one")
    scheme = annotations.get("prometheus.io/scheme", "http")
    if annotations.get("prometheus.io/scrape") == "true" and (scheme == "https") != https:
        problems.append(f"prometheus.io/scheme says {scheme}, but kvstore serves {'HTTPS' if https else 'HTTP'}")
    if "prometheus.io/port" in annotations:
        ports = {str(port["containerPort"]) for port in container["ports"]}
        if annotations["prometheus.io/port"] not in ports:
            problems.append("prometheus.io/port is not a container port")
    return problems
