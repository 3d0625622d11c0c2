#!/usr/bin/env bash
# Installs Mesa's software Vulkan driver (lavapipe) from bookworm-backports plus the Vulkan loader,
# so Dawn (npm `webgpu`) finds an adapter and the webgpu tests run for real on a machine without a
# GPU. Debian bookworm's own mesa-vulkan-drivers (22.3) yields no Dawn adapter; 25.x from
# bookworm-backports does. Idempotent: a no-op (no apt call) when a new enough driver is installed.
# Needs root and Debian bookworm; anywhere else it says so and exits 0 (the webgpu tests then skip).
set -euo pipefail

MIN_MESA=25
installed_major() {
  dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null | awk '$3=="installed" {split($4, v, "."); sub(/^[0-9]+:/, "", v[1]); print v[1]}'
}

mesa=$(installed_major mesa-vulkan-drivers || true)
loader=$(installed_major libvulkan1 || true)
if [[ -n "$mesa" && "$mesa" -ge $MIN_MESA && -n "$loader" ]]; then
  echo "lavapipe: mesa-vulkan-drivers $mesa.x and libvulkan1 already installed"
  exit 0
fi
if [[ "$(id -u)" != 0 ]] || ! grep -qs 'VERSION_CODENAME=bookworm' /etc/os-release; then
  echo "lavapipe: not installing (needs root on Debian bookworm); the webgpu tests will skip without an adapter" >&2
  exit 0
fi

SOURCES=/etc/apt/sources.list.d/bookworm-backports.sources
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  tmp=$(mktemp)
  cat >"$tmp" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  chmod 644 "$tmp"
  mv "$tmp" "$SOURCES"
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends -t bookworm-backports mesa-vulkan-drivers libvulkan1
echo "lavapipe: installed mesa-vulkan-drivers $(installed_major mesa-vulkan-drivers).x"
