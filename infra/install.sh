#!/usr/bin/env bash
# Installs what Turnlog needs on a fresh Debian machine, idempotently:
#   system packages (Java 17, Maven, PostgreSQL server) when missing, as root via apt-get;
#   the Python packages into .venv (pinned in pyproject.toml), re-installed when it changes.
# The Kafka jars are fetched by `turnlog stack up` (Maven Central, cached once).
set -euo pipefail
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
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    die "missing system packages: ${missing[*]}; install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
  fi
  say "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
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
say "installed"
