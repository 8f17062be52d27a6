#!/usr/bin/env bash
# Install one service, and only what it needs, into a fresh virtual environment.
#
#   deploy/docker/install-service.sh <service> <venv-dir> [deps|project|all]
#
# Run from the workspace root (the Dockerfile's build stage, or a checkout). `deps` installs
# the service's third-party dependencies exactly as pinned in uv.lock, hashes checked;
# `project` installs homework-shared and the service itself without dependencies; `all`
# (the default) does both. The Dockerfile runs the two phases as separate layers so that a
# code change does not reinstall the dependencies; the tests run `all` and start the result.
set -euo pipefail

service="${1:?usage: install-service.sh <assignment|reminder|insights> <venv-dir> [deps|project|all]}"
venv="${2:?usage: install-service.sh <service> <venv-dir> [deps|project|all]}"
phase="${3:-all}"
case "$service" in
  assignment | reminder | insights) ;;
  *) echo "install-service.sh: unknown service '$service'" >&2; exit 2 ;;
esac
case "$phase" in
  deps | project | all) ;;
  *) echo "install-service.sh: unknown phase '$phase' (deps, project or all)" >&2; exit 2 ;;
esac

python="${PYTHON:-python3}"
uv="${UV:-uv}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi

if [ "$phase" != project ]; then
  requirements="$(mktemp)"
  trap 'rm -f "$requirements"' EXIT
  # The service's locked dependency closure, without the workspace packages themselves.
  "$uv" export --frozen --no-dev --no-emit-workspace --no-header --no-annotate \
    --package "homework-$service" --format requirements-txt --output-file "$requirements" >/dev/null
  "$venv/bin/python" -m pip install --quiet --require-hashes --no-deps --only-binary=:all: -r "$requirements"
fi

if [ "$phase" != deps ]; then
  # Built as wheels (not editable), without dependencies: those came from the lock file above.
  "$venv/bin/python" -m pip install --quiet --no-deps ./shared "./services/$service"
  "$venv/bin/python" -m pip check
fi
