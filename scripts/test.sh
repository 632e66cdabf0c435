#!/usr/bin/env bash
# The full test suite: bootstrap, lint, type-check, then every test.
#
# Everything the tests need is installed or built here or by the tests themselves, each
# once per machine and cached by its inputs, so a fresh machine needs only this command
# (and Go, Linux with apt-get, root or sudo) and a second run rebuilds nothing:
#   - the virtualenv (scripts/bootstrap.sh);
#   - podman, runc, docker-registry, htpasswd, mmdebstrap from Debian
#     (scripts/install-container-tools.sh, below; silent when installed);
#   - prometheus (with promtool) and chromium from Debian (scripts/install-test-tools.sh);
#   - the real kube-apiserver for tests/e2e (scripts/build-apiserver.sh, below);
#   - helm (scripts/build-helm.sh: tests/unit/test_helm_chart.py and the helm e2e test);
#   - the Debian base image and the kubetrade image (scripts/build-base-image.sh and
#     scripts/build-image.sh: tests/e2e/image.py), built when the first container test
#     needs them, since any change to the code changes the image and a run of a few unit
#     tests should not pay for it;
#   - the test registry is a fixture (tests/e2e/registry.py), started per test session.
set -euo pipefail
# The repository root holds a directory named operator/; keep the current
# directory off sys.path so it never shadows the standard library module.
export PYTHONSAFEPATH=1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/bootstrap.sh dev
scripts/lint.sh
# The container tools first: apt-get may take a minute on a fresh machine, and a
# missing tool should stop the run here with apt's message, not halfway through it.
scripts/install-container-tools.sh
# Prometheus, promtool and Chromium for the observability tests (metrics, alert rules,
# the HTML report's screenshot); silent when installed.
scripts/install-test-tools.sh
# The real kube-apiserver for tests/e2e: built once per machine and cached
# (a cold build takes ~6-7 minutes on 2 cores, then it is instant).
scripts/build-apiserver.sh >/dev/null
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
