"""Dockerfile: its runtime stage installs every shared library the kvstore binary links."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from .common import ROOT, Skipped, fail_if, run


def check_dockerfile_libraries(binary: Path | None) -> str:
    """The runtime stage installs the Debian package of every shared library kvstore links."""
    if binary is None:
        raise Skipped("no kvstore binary in target/ (make build)")
    if shutil.which("dpkg") is None or shutil.which("ldd") is None:
        raise Skipped("needs ldd and dpkg (a Debian machine)")
    dockerfile = (ROOT / "Dockerfile").read_text()
    runtime = dockerfile[dockerfile.rindex("\nFROM ") :]
    installed = {"libc6"}  # in every Debian image
    for line in re.findall(r"apt-get install ([^\n&]+)", runtime.replace("\\\n", " ")):
        installed |= {word for word in line.split() if not word.startswith("-")}
    problems = []
    needed = set()
    ldd = run(["ldd", str(binary)])
    for library in re.findall(r"=> (/\S+)", ldd.stdout):
        owner = run(["dpkg", "-S", library])
        if owner.returncode != 0:
            owner = run(["dpkg", "-S", "/usr" + library])
        if owner.returncode != 0:
            problems.append(f"{library}: no Debian package owns it")
            continue
        package = owner.stdout.split(":")[0]
        needed.add(package)
        if package not in installed:
            problems.append(f"{library} comes from {package}, which the runtime stage does not install")
    fail_if(problems)
    return f"links {', '.join(sorted(needed))}"
