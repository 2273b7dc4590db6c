#!/usr/bin/env bash
# Installs Debian's chromium and chromedriver for the console's browser test
# (tests/tests/admin_browser.rs) when they are missing. Exits 0 either way:
# the test itself says SKIPPED when they could not be installed.
set -u
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || true
fi
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    echo "chromium and chromedriver installed"
else
    echo "chromium could not be installed: the browser test will be skipped"
fi
