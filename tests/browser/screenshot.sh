#!/usr/bin/env bash
# Makes docs/console.png: runs the browser test with a screenshot taken
# after it blocked an address from the page.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp)
SELGATE_CONSOLE_SCREENSHOT="$out" cargo test -p selgate-tests --test admin_browser -- --nocapture
base64 -d "$out" > docs/console.png
rm -f "$out"
echo "docs/console.png written"
