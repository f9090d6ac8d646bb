#!/usr/bin/env bash
# Installs openapi-python-client (generates Python SDKs from an OpenAPI document, from PyPI)
# once into the tool cache and prints the path of its command. Its venv also holds what a
# generated SDK needs at run time (httpx, attrs), so the `python` beside the command runs the
# SDK smoke test. Used by `make test`.
exec "$(dirname "$0")/pytool.sh" openapi-python-client 0.29.1
