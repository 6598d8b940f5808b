#!/usr/bin/env bash
# Installs what Turnlog needs on a fresh Debian machine, idempotently:
#   system packages (Java 17, Maven, PostgreSQL server, Node.js) when missing, as root via
#   apt-get; with --test also the tools the tests drive: Chromium and Prometheus (promtool);
#   the Python packages into .venv (pinned in pyproject.toml), re-installed when it changes;
#   the console (console/package-lock.json), rebuilt when its sources or the catalog change.
# The Kafka jars are fetched by `turnlog stack up` (Maven Central, cached once).
set -euo pipefail
testing=0
[[ ${1:-} == --test ]] && testing=1
cd "$(dirname "$0")/.."

say() { printf '\033[1m==>\033[0m %s\n' "$*"; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# -- system packages ---------------------------------------------------------------------
missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
# Offline speech synthesis for the agent: Festival with the HTS voice the recognizer hears best
command -v text2wave >/dev/null 2>&1 || missing+=(festival)
[[ -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts ]] || missing+=(festvox-us-slt-hts)
# PortAudio: livekit-agents' `console` mode opens the sound device through it
ldconfig -p 2>/dev/null | grep -q libportaudio.so.2 || missing+=(libportaudio2)
# The console is built with Node.js 18.19 or newer (Debian 12's own nodejs is 18.19)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((testing)); then
  [[ -x /usr/bin/chromium ]] || missing+=(chromium)
  fc-list 2>/dev/null | grep -qi dejavu || missing+=(fonts-dejavu-core)
  # the dashboards' expressions and the alert rules are checked against a real Prometheus
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
fi
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    die "missing system packages: ${missing[*]}; install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
  fi
  say "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # install only: the packages' own services (PostgreSQL's cluster, Prometheus on :9090)
  # are not started; Turnlog runs its own instances
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# -- Python --------------------------------------------------------------------------------
python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || die "Python 3.11 is required (found $("$python" --version 2>&1)); set PYTHON=/path/to/python3.11"
if [[ ! -x .venv/bin/python ]]; then
  say "creating .venv"
  "$python" -m venv .venv
fi
stamp=.venv/.turnlog-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  say "installing Python packages into .venv (pinned in pyproject.toml)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[platform,offline,providers,dev]'
  echo "$want" > "$stamp"
fi
# -- console -----------------------------------------------------------------------------
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 18 || (a === 18 && b >= 19) ? 0 : 1)' \
  || die "Node.js 18.19 or newer is required to build the console (found $(node --version))"
console_sources() {
  find console -path console/node_modules -prune -o -path console/dist -prune -o -type f -print
  find schemas/jsonschema -type f
}
lock=$(sha256sum console/package-lock.json | cut -d' ' -f1)
if [[ ! -d console/node_modules || $(cat console/node_modules/.turnlog-lock 2>/dev/null) != "$lock" ]]; then
  say "installing the console's packages (console/package-lock.json)"
  (cd console && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock" > console/node_modules/.turnlog-lock
fi
built=$(console_sources | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
if [[ ! -f console/dist/index.html || $(cat console/dist/.turnlog-built 2>/dev/null) != "$built" ]]; then
  say "building the console (console/dist)"
  (cd console && npm run --silent build -- --logLevel warn)
  echo "$built" > console/dist/.turnlog-built
fi
say "installed"
