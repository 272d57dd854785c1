#!/usr/bin/env bash
# What the tests need from the system besides Python: nginx (reverse-proxy tests) and
# Chromium (browser tests). Installed with apt-get when missing and this runs as root;
# otherwise says what to install and fails, so that those tests never skip unseen.
set -euo pipefail

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing ${need[*]} for the browser and proxy tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # nginx starts itself on install on some images; the tests run their own instances.
  service nginx stop >/dev/null 2>&1 || true
  exit 0
fi

echo "The tests need ${need[*]}, which this machine lacks." >&2
echo "Install them (as root): apt-get install ${need[*]}" >&2
echo "(Debian's chromium package at /usr/bin/chromium; nginx on the PATH or /usr/sbin/nginx.)" >&2
exit 1
