#!/usr/bin/env bash
# Installs the Debian packages the interop tests drive, when missing, and
# with "bench" those the end-to-end figures need too. Needs root (CI is
# root); as another user it only reports.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have wg          || need+=(wireguard-tools)
have wireguard-go || need+=(wireguard-go)
have iperf3      || need+=(iperf3)
have dig         || need+=(dnsutils)
have dnsmasq     || need+=(dnsmasq-base)
have ping        || need+=(iputils-ping)
have curl        || need+=(curl)
have git         || need+=(git)  # git daemon serves the policy repository (fleet_test.go)
have ip          || need+=(iproute2)
# The gateway tests check configs/monitoring with promtool and run
# configs/logrotate/wardgate (skipped without them, failing under CI=true).
have promtool    || need+=(prometheus)
have logrotate   || need+=(logrotate)
# The console's browser test (gateway/console) drives it with chromedp.
have chromium-headless-shell || need+=(chromium-headless-shell)
if [ "${1:-}" = bench ]; then
  have unbound   || need+=(unbound)
  have dnsperf   || need+=(dnsperf)
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing ${need[*]}; run as root to install (interop tests skip without them, and fail under CI=true)" >&2
  exit 0
fi
echo "install-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends: wireguard-tools would otherwise pull a kernel.
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
