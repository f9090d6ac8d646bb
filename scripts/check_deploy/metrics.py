"""The metrics kvstore exports, as README's metrics table documents them (name and kind), and
which metric a series name belongs to.

README's table is the documented catalogue: a unit test in src/metrics.rs holds it to the
metrics the code describes, so the deploy files are checked against the table, not against
the Rust source."""

from __future__ import annotations

import re

from .common import ROOT, Failed, fail_if

KINDS = ("counter", "gauge", "histogram")


def documented_metrics() -> dict[str, str]:
    """Metric name -> counter/gauge/histogram, from the rows of the table under README's
    `## Metrics` heading: the name in backticks in the first column, the type in the second."""
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## Metrics\n(.*?)(?=^## |\Z)", readme, flags=re.MULTILINE | re.DOTALL)
    if not section:
        raise Failed("README.md has no ## Metrics section")
    kinds: dict[str, str] = {}
    problems = []
    rows = re.findall(r"^\| `(kvstore_\w+)` \|\s*([^|]*?)\s*\|", section.group(1), flags=re.MULTILINE)
    for name, kind in rows:
        if kind not in KINDS:
            problems.append(f"README's metrics table gives {name} the type {kind!r}, not counter, gauge or histogram")
        kinds[name] = kind
    fail_if(problems)
    if not kinds:
        raise Failed("README's metrics table (under ## Metrics) lists no `kvstore_...` metric")
    return kinds


def series_metric(series: str, kinds: dict[str, str]) -> str | None:
    """The metric a series name belongs to (histograms export _bucket, _sum and _count)."""
    if series in kinds and kinds[series] != "histogram":
        return series
    for suffix in ("_bucket", "_sum", "_count"):
        base = series.removesuffix(suffix)
        if base != series and kinds.get(base) == "histogram":
            return base
    return None
