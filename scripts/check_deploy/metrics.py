"""The metrics kvstore exports: their names and kinds, per src/metrics.rs, the names README's
metrics table documents, and which metric a series name belongs to."""

from __future__ import annotations

import re

from .common import ROOT, Failed


def service_metrics() -> dict[str, str]:
    """Metric name -> counter/gauge/histogram, from the constants and describe_* calls."""
    source = (ROOT / "src" / "metrics.rs").read_text()
    constants = dict(re.findall(r'pub const (\w+): &str = "(\w+)";', source))
    kinds: dict[str, str] = {}
    for kind, constant in re.findall(r"describe_(counter|gauge|histogram)!\(\s*(\w+)", source):
        if constant in constants:
            kinds[constants[constant]] = kind
    if not kinds:
        raise Failed("found no described metrics in src/metrics.rs")
    return kinds


def documented_metrics() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    return set(re.findall(r"^\| `(kvstore_\w+)` \|", readme, flags=re.MULTILINE))


def series_metric(series: str, kinds: dict[str, str]) -> str | None:
    """The metric a series name belongs to (histograms export _bucket, _sum and _count)."""
    if series in kinds and kinds[series] != "histogram":
        return series
    for suffix in ("_bucket", "_sum", "_count"):
        base = series.removesuffix(suffix)
        if base != series and kinds.get(base) == "histogram":
            return base
    return None
