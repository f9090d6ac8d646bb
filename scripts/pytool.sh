#!/usr/bin/env bash
# Installs a command-line tool from PyPI at a pinned version, once, into its own venv in the
# tool cache, and prints the path of its command.
#
#   scripts/pytool.sh PACKAGE VERSION [COMMAND]    COMMAND defaults to PACKAGE
#
# The cache lives in $KVSTORE_CACHE (default ~/.cache/kvstore), one venv per PACKAGE-VERSION.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 PACKAGE VERSION [COMMAND]" >&2
  exit 2
fi
package="$1" version="$2" command="${3:-$1}"
venv="${KVSTORE_CACHE:-$HOME/.cache/kvstore}/$package-$version"
if [ ! -x "$venv/bin/$command" ]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$package==$version" >&2
fi
echo "$venv/bin/$command"
