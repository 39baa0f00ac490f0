#!/usr/bin/env bash
# Debian packages that the service's tests use (issue 11): PostgreSQL's server (the tests start their own
# in a temporary folder) and Chromium (the live page's browser test). Installs only what is missing;
# needs root or sudo, else says what to install and leaves the tests that need them to skip with a reason.
set -euo pipefail
missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo -n"; else
	echo "system-deps: cannot install ${missing[*]} (not root, no sudo): apt-get install ${missing[*]}" >&2
	exit 0
fi
if ! command -v apt-get >/dev/null; then
	echo "system-deps: no apt-get here; install ${missing[*]} yourself for the service's tests" >&2
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
