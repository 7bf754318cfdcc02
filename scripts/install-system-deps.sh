#!/usr/bin/env bash
# Debian packages the tests and benchmarks use as real peers: net-snmp's agent and tools (snmpd,
# snmpbulkwalk, snmptrap), snmpsim's recorded-data agent and Prometheus Alertmanager
# (/usr/bin/prometheus-alertmanager). Installed only when missing.
set -euo pipefail

need=()
command -v snmpd >/dev/null 2>&1 || need+=(snmpd)
command -v snmpbulkwalk >/dev/null 2>&1 || need+=(snmp)
command -v snmpsimd >/dev/null 2>&1 || command -v snmpsim-command-responder >/dev/null 2>&1 || need+=(snmpsim)
[ -x /usr/bin/prometheus-alertmanager ] || need+=(prometheus-alertmanager)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-system-deps: need root (or sudo) to install: ${need[*]}" >&2
    exit 1
  fi
fi
echo "install-system-deps: installing ${need[*]} from Debian ..." >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts snmpd as a service on install; the tests run their own agents on free ports.
$SUDO systemctl stop snmpd >/dev/null 2>&1 || $SUDO service snmpd stop >/dev/null 2>&1 || true
# Likewise Alertmanager: the tests start their own on free ports (ossbss/localstack/alertmanager.py).
if [[ " ${need[*]} " == *" prometheus-alertmanager "* ]]; then
  $SUDO systemctl stop prometheus-alertmanager >/dev/null 2>&1 || $SUDO service prometheus-alertmanager stop >/dev/null 2>&1 || true
fi
