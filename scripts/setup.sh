#!/usr/bin/env bash
# Prepare this checkout on a fresh machine: system packages (when root and missing),
# a virtual environment in .venv, and driftsvakt installed into it with its extras.
#   scripts/setup.sh [EXTRAS]      EXTRAS defaults to "test,demo"
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test,demo}"

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
# mosquitto_sub: tests read what reaches the broker with it
command -v mosquitto_sub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
command -v snmpd >/dev/null 2>&1 || [ -x /usr/sbin/snmpd ] || need_apt+=(snmpd)
command -v snmpbulkwalk >/dev/null 2>&1 || need_apt+=(snmp)
# promtool tests deploy/prometheus; a real Prometheus scrapes an engine in the tests
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# a real Alertmanager receives the engine's alerts in the tests
command -v prometheus-alertmanager >/dev/null 2>&1 || need_apt+=(prometheus-alertmanager)
# headless Chromium renders the SLA portal and prints the report to PDF in the tests
case ",$extras," in
  *,test,*) command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
            # systemd-analyze verifies the units in deploy/systemd
            command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
            # nft cuts the link between the two locations' network namespaces
            command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need_apt+=(nftables)
            command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || need_apt+=(iproute2)
            # OpenLDAP's slapd is the directory the sign-in tests bind against
            [ -x /usr/sbin/slapd ] || need_apt+=(slapd)
            # lldpd, net-snmp's AgentX subagent, cables the live topology test's switches
            [ -x /usr/sbin/lldpd ] || need_apt+=(lldpd) ;;
esac
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${need_apt[*]} with apt-get"
    apt-get update -qq
    # The packages would start their daemons (a broker, an SNMP agent, an LLDP agent
    # speaking on the machine's network); driftsvakt's tests start their own: none is
    # started while installing (policy-rc.d), and none at boot.
    held_back=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
      held_back=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${need_apt[@]}" >/dev/null || { [ -n "$held_back" ] && rm -f /usr/sbin/policy-rc.d; exit 1; }
    [ -n "$held_back" ] && rm -f /usr/sbin/policy-rc.d
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now mosquitto snmpd prometheus prometheus-alertmanager slapd lldpd \
      >/dev/null 2>&1 || true; fi
  else
    echo "setup: ${need_apt[*]} missing and not root: install it, or the demo uses amqtt" >&2
  fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[${extras}]"
