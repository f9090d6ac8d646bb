#!/usr/bin/env bash
# Installs schemathesis (OpenAPI-driven fuzzing, from PyPI) once into the tool cache and prints
# the path of its command. Used by `make test`.
exec "$(dirname "$0")/pytool.sh" schemathesis 4.32.5
