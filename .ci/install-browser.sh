#!/usr/bin/env bash
# Install what the browser tests (tests/e2e) need: Debian's Chromium and Playwright's
# Python package (into .venv when it exists). Never Playwright's own browser download:
# the tests launch /usr/bin/chromium through executable_path.
# Exits non-zero if Chromium could not be installed; .ci/run tolerates that, and the
# e2e tests then skip with a clear reason.
set -uo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

if command -v chromium >/dev/null; then
  echo "install-browser: $(chromium --version 2>/dev/null || echo chromium) already present"
else
  echo "install-browser: apt-get install chromium"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null \
    || { echo "install-browser: could not install chromium; the e2e tests will be skipped" >&2; exit 1; }
fi

if [ -x .venv/bin/pip ]; then  # otherwise `make test` installs it with the dev extra
  .venv/bin/pip install -q 'playwright>=1.40' || echo "install-browser: could not pip install playwright" >&2
fi
