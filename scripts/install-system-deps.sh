#!/usr/bin/env bash
# Installs the system tools the course drives for real: nginx (+ Brotli), Prometheus,
# the two container engines (podman, a Docker-API engine without a daemon, and Docker
# Engine, docker.io, whose dockerd the course starts privately), runc, debootstrap, tini,
# bubblewrap (the grading sandbox), wrk (a load generator that never retries) and Chromium
# (the browser test of the published book).
# Root or sudo: installs with apt. Otherwise: prints what to install and exits 0,
# so a learner without root can still run everything that does not need these tools.
set -euo pipefail

APT_PACKAGES=(
  nginx libnginx-mod-http-brotli-filter
  prometheus
  podman runc debootstrap tini catatonit
  docker.io
  bubblewrap util-linux
  chromium
  wrk
  openssl git make curl
)

if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo"
else
  echo "opslab: not root and no password-less sudo; install these yourself:" >&2
  echo "  Debian/Ubuntu: sudo apt-get install -y ${APT_PACKAGES[*]}" >&2
  echo "  macOS:         brew install nginx prometheus podman" >&2
  echo "Notebooks skip the cells that need a missing tool and say so." >&2
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "opslab: no apt-get here; install with your package manager: ${APT_PACKAGES[*]}" >&2
  echo "  macOS: brew install nginx prometheus podman" >&2
  exit 0
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # --no-install-recommends keeps the install small; the packages above are all we use.
  # No service starts during the install (policy-rc.d answers 101, "action forbidden"):
  # nginx and dockerd would otherwise start system-wide on port 80 and /var/run/docker.sock,
  # and dockerd would rewrite the host's firewall. The course starts its own, privately.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    trap '$SUDO rm -f "$policy"' EXIT
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "opslab: installed ${missing[*]}"
else
  echo "opslab: system packages already installed"
fi

# podman on these hosts: crun fails on hybrid cgroups and the default rlimits are refused.
conf=/etc/containers/containers.conf
if [ -d /etc/containers ] && ! grep -q 'opslab' "$conf" 2>/dev/null; then
  if grep -qE '^\[(containers|engine)\]' "$conf" 2>/dev/null; then
    echo "opslab: $conf already has settings; make sure it selects runtime = \"runc\" under [engine]" >&2
    echo "        and default_ulimits = [\"nofile=1024:1024\", \"nproc=1000:1000\"] under [containers]" >&2
  else
    $SUDO tee -a "$conf" >/dev/null <<'CONF'
# added by opslab (scripts/install-system-deps.sh)
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]
[engine]
runtime = "runc"
CONF
  fi
fi

# The Debian nginx package starts a system service on port 80; the course runs its own
# nginx instances on free loopback ports and does not need it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
  $SUDO systemctl stop nginx || true
fi
