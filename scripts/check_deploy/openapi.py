"""openapi/openapi.json: openapi-spec-validator finds no error and the info object matches
Cargo.toml."""

from __future__ import annotations

import json

import openapi_spec_validator
from openapi_spec_validator import OpenAPIV31SpecValidator

from .common import OPENAPI, Failed, cargo_field, fail_if


def check_openapi() -> str:
    """openapi-spec-validator finds no error, and the info object is the crate's."""
    spec = json.loads(OPENAPI.read_text())
    if not str(spec.get("openapi", "")).startswith("3.1."):
        raise Failed(f"openapi is {spec.get('openapi')!r}, not 3.1.x")
    problems = [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in OpenAPIV31SpecValidator(spec).iter_errors()
    ]
    info = spec.get("info", {})
    expected = {
        "title": cargo_field("name"),
        "version": cargo_field("version"),
        "license.identifier": cargo_field("license"),
    }
    actual = {
        "title": info.get("title"),
        "version": info.get("version"),
        "license.identifier": info.get("license", {}).get("identifier"),
    }
    for field, value in expected.items():
        if actual[field] != value:
            problems.append(f"info.{field} is {actual[field]!r}; Cargo.toml says {value!r}")
    for field in ("description",):
        if len(str(info.get(field, "")).strip()) < 20:
            problems.append(f"info.{field} is missing or too short to say anything")
    if not info.get("license", {}).get("name"):
        problems.append("info.license.name is missing")
    fail_if(problems)
    version = openapi_spec_validator.__version__
    return (f"openapi-spec-validator {version}: OpenAPI {spec['openapi']}, {len(spec['paths'])} paths, "
            f"no errors; info {info['title']} {info['version']}, {info['license']['identifier']}")
