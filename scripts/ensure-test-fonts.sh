#!/usr/bin/env bash
# The text-rendering (OCR) tests draw known strings with Debian's DejaVu TrueType font.
set -euo pipefail
if [[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]]; then exit 0; fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's fonts-dejavu-core for the OCR tests..."
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-dejavu-core >/dev/null
else
  echo "fonts-dejavu-core is not installed (apt-get install fonts-dejavu-core): OCR tests will be skipped, or fail under ARENA_STRICT=1." >&2
fi
