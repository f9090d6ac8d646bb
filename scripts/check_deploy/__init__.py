"""The checks behind `make check-deploy` (run through scripts/check-deploy.sh, which installs
the tools, as `python -m check_deploy` with scripts/ on the path). Each check prints `ok`,
`FAIL` (with the reasons) or `skip`; any FAIL makes the exit status 1. Rendered Helm manifests
are left in target/check-deploy/ for inspection.

One check runs things for real: a Tansu broker, target/debug/kvstore (with the compose
replicas' auth settings) and a Prometheus scraping it with the compose job's token, on free
loopback ports, all stopped when the check ends. Each rendered Helm configuration is also
started, briefly, with throwaway files standing in for the Secrets it mounts.

__main__.py runs the checks in order; each of the other modules owns one concern.
"""
