#!/usr/bin/env bash
# Installs the real services the integration tests run against (see
# shared/specs/test-services.md):
#   * graphite-carbon + python3-whisper: carbon-cache, carbon-relay, whisper-fetch
#   * carbon-c-relay: the performance yardstick and a second routing reference
#   * netcat-openbsd: `nc`, handy for poking at line receivers by hand
#   * zsh, fish: polymurctl's completion scripts are run by each shell
#   * prometheus: its promtool checks the alert rules in deploy/prometheus
#   * chromium: the headless browser the web console's test drives
#     (playwright-core, an npm dev dependency, downloads no browser of its own)
#   * Consul 1.8.7 (not in Debian 12): extracted from the previous Debian
#     release's package into .cache/bin/consul, through a private apt
#     configuration that leaves the system's apt state untouched.
#
# Idempotent and quick when everything is present (no apt-get update then).
# Runs as root, non-interactively, on a fresh Debian 12 machine (.ci/run calls it).
# Package postinst scripts must not leave system daemons running: a system
# carbon-cache or carbon-c-relay on 2003/2004/7002 would confuse tests, so
# service starts are denied during the install and anything that did start is
# stopped and disabled afterwards.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
packages=(graphite-carbon python3-whisper carbon-c-relay netcat-openbsd zsh fish chromium prometheus)
consul_bin="$repo_root/.cache/bin/consul"

log() { printf 'install-test-deps: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo -n)
else
  sudo=()
fi

export DEBIAN_FRONTEND=noninteractive
export DEBCONF_NONINTERACTIVE_SEEN=true
apt_opts=(-q -y -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef
  -o Dpkg::Options::=--force-confold)

# --- Debian packages ---------------------------------------------------------

missing_packages() {
  local p
  for p in "${packages[@]}"; do
    if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
      printf '%s\n' "$p"
    fi
  done
}

# True when apt knows an installable candidate for every package given.
have_candidates() {
  local p cand
  for p in "$@"; do
    cand="$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2; exit}')"
    if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
      return 1
    fi
  done
}

mapfile -t missing < <(missing_packages)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: ${missing[*]}"

  # Deny service starts from maintainer scripts while we install (both
  # graphite-carbon and carbon-c-relay ship init scripts; carbon-c-relay's
  # would listen on 2003). Docker-style images already have such a file; only
  # add (and later remove) our own when there is none.
  policy=/usr/sbin/policy-rc.d
  added_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, from polymur scripts/install-test-deps.sh\nexit 101\n' |
      "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    added_policy=1
  fi
  cleanup_policy() { if [ -n "$added_policy" ]; then "${sudo[@]}" rm -f "$policy"; fi; }
  trap cleanup_policy EXIT

  # Keep the default answer for graphite-carbon's only question (keep the
  # databases on purge) so debconf never waits for input.
  if command -v debconf-set-selections >/dev/null; then
    echo "graphite-carbon graphite-carbon/postrm_remove_databases boolean false" |
      "${sudo[@]}" debconf-set-selections || true
  fi

  if ! have_candidates "${missing[@]}"; then
    "${sudo[@]}" apt-get "${apt_opts[@]}" update
  fi
  if ! "${sudo[@]}" apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}" </dev/null; then
    # Stale package lists (a mirror moved on): refresh once and retry.
    log "install failed; refreshing package lists and retrying"
    "${sudo[@]}" apt-get "${apt_opts[@]}" update
    "${sudo[@]}" apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}" </dev/null
  fi
  cleanup_policy
  trap - EXIT
else
  log "Debian packages already installed"
fi

# --- mmh3 for carbon's mmh3_ch hash (optional) ---------------------------------
# carbon-relay's ROUTER_HASH_TYPE=mmh3_ch needs the Python module mmh3, which
# Debian 12 does not package. This machine image ships a wheel on disk; install
# it for the system Python (the one carbon runs under) when it is there, from
# that directory only. Without it only the mmh3_ch routing comparison is off.
if ! /usr/bin/python3 -c 'import mmh3' 2>/dev/null; then
  wheel_dir=/opt/pypi/files
  if compgen -G "$wheel_dir/mmh3-*-cp3*.whl" >/dev/null && /usr/bin/python3 -m pip --version >/dev/null 2>&1; then
    log "installing mmh3 for /usr/bin/python3 from $wheel_dir"
    "${sudo[@]}" /usr/bin/python3 -m pip install -q --root-user-action=ignore --no-index --find-links "$wheel_dir" \
      --break-system-packages mmh3 ||
      log "WARNING: mmh3 install failed; carbon-relay mmh3_ch routing will be unavailable"
  else
    log "note: no mmh3 wheel on disk; carbon-relay mmh3_ch routing will be unavailable"
  fi
fi

# --- No system daemons --------------------------------------------------------
# Tests start their own carbon processes on free ports; a system-wide one would
# hold 2003/2004/7002 and write to /var/lib/graphite (prometheus: 9090). Stop and disable them if a
# package (or an earlier run without policy-rc.d) started one.
for svc in carbon-cache carbon-c-relay prometheus; do
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    if systemctl is-active --quiet "$svc" 2>/dev/null; then
      log "stopping system $svc service"
      "${sudo[@]}" systemctl stop "$svc" || true
    fi
    if systemctl is-enabled --quiet "$svc" 2>/dev/null; then
      "${sudo[@]}" systemctl disable --quiet "$svc" || true
    fi
  elif [ -x "/etc/init.d/$svc" ]; then
    # No systemd (containers): ask the init script directly; invoke-rc.d would
    # be refused by policy-rc.d. Quiet no-op when nothing runs.
    pidfile="/var/run/$svc.pid"
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      log "stopping system $svc (init script)"
      "${sudo[@]}" "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
    if command -v update-rc.d >/dev/null; then
      "${sudo[@]}" update-rc.d "$svc" disable >/dev/null 2>&1 || true
    fi
  fi
done

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in 2003 2004 7002; do
  if timeout 2 bash -c "$(declare -f port_open); port_open $port"; then
    log "WARNING: something listens on 127.0.0.1:$port (tests use their own free ports, so this is harmless, but it is not ours)"
  fi
done

# --- Consul 1.8.7 --------------------------------------------------------------

if [ -x "$consul_bin" ] && "$consul_bin" version >/dev/null 2>&1; then
  log "consul already at $consul_bin"
else
  log "fetching consul (previous Debian release's package) into $consul_bin"
  # The archive URI is whatever this machine's apt already uses for Debian.
  uri=""
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    uri="$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
  fi
  if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
    uri="$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; exit } }' /etc/apt/sources.list)"
  fi
  if [ -z "$uri" ]; then
    log "cannot find the Debian archive URI in the apt sources"
    exit 1
  fi
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri bullseye main" >"$work/sources.list"
  o=(-o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache"
    -o APT::Sandbox::User=root)
  apt-get "${o[@]}" update -qq
  (cd "$work" && apt-get "${o[@]}" -qq download consul)
  dpkg-deb -x "$work"/consul_*.deb "$work/root"
  mkdir -p "$(dirname "$consul_bin")"
  install -m 755 "$work/root/usr/bin/consul" "$consul_bin.tmp"
  mv -f "$consul_bin.tmp" "$consul_bin"
  rm -rf "$work"
  trap - EXIT
  # Not `| head -n 1`: with pipefail, consul writing on after head exits
  # (SIGPIPE) would fail the whole script, now and then.
  version="$("$consul_bin" version)"
  echo "${version%%$'\n'*}" >&2
fi

log "done"
