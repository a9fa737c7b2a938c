#!/usr/bin/env bash
# Installs what tcpshift needs on Debian 12, for the Makefile, CI and Vagrant.
#   install-deps.sh test      — running the tests and the demo (Go must be present)
#   install-deps.sh demo      — what the demo's printed commands use (nc)
#   install-deps.sh generate  — rebuilding the BPF objects (clang, libbpf headers)
#   install-deps.sh bench     — the benchmark's peers (iperf3, HAProxy, nginx stream)
#   install-deps.sh vagrant   — a fresh VM (vagrant/Vagrantfile): test's packages, make, and Go
#   install-deps.sh k8s       — the Kubernetes tests (make k8s-test): etcd, which the tests run
#                               themselves; the packaged etcd service is kept stopped and disabled
set -euo pipefail

# The Go release `vagrant` installs when no Go is present (go.mod wants 1.26).
GO_VERSION=1.26.8

want=${1:-test}

# Leaves the etcd that etcd-server installs as a service stopped, disabled and masked,
# under systemd and sysvinit alike, so that installing it changes nothing that runs.
keep_packaged_etcd_off() {
	if [ -d /run/systemd/system ]; then
		systemctl stop etcd.service 2>/dev/null || true
	fi
	if command -v systemctl >/dev/null 2>&1; then
		systemctl disable etcd.service >/dev/null 2>&1 || true
		systemctl mask etcd.service >/dev/null 2>&1 || true
	fi
	if [ -x /etc/init.d/etcd ] && command -v update-rc.d >/dev/null 2>&1; then
		/etc/init.d/etcd stop >/dev/null 2>&1 || true
		update-rc.d etcd disable >/dev/null 2>&1 || true
	fi
}

case "$want" in
test) pkgs=(iproute2 iperf3 systemd ruby netcat-openbsd) ;; # systemd-analyze and ruby check the unit and the Vagrantfile; nc runs the demo's commands
demo) pkgs=(netcat-openbsd) ;;
generate) pkgs=(clang llvm libbpf-dev) ;;
bench) pkgs=(iproute2 iperf3 haproxy nginx libnginx-mod-stream) ;;
vagrant) pkgs=(iproute2 iperf3 systemd ruby netcat-openbsd make ca-certificates curl) ;;
k8s) pkgs=(iproute2 etcd-server) ;;
*) echo "usage: $0 test|demo|generate|bench|vagrant|k8s" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" -eq 0 ] || { echo "install-deps: need root to install ${missing[*]}" >&2; exit 1; }
	apt-get update -qq
	# etcd-server starts and enables a system etcd on the default ports; the tests run
	# their own, so a policy-rc.d keeps the package from starting it during the install.
	own_policy=
	if [[ " ${missing[*]} " == *" etcd-server "* ]] && [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 0755 /usr/sbin/policy-rc.d
		own_policy=1
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
	if [ -n "$own_policy" ]; then
		rm -f /usr/sbin/policy-rc.d
		trap - EXIT
	fi
	if [[ " ${missing[*]} " == *" etcd-server "* ]]; then
		keep_packaged_etcd_off
	fi
fi

if [ "$want" = vagrant ] && ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
	arch=$(dpkg --print-architecture) # amd64 or arm64, as go.dev names them
	curl -fsSL "https://go.dev/dl/go${GO_VERSION}.linux-${arch}.tar.gz" | tar -C /usr/local -xz
	ln -sf /usr/local/go/bin/go /usr/local/bin/go
fi

if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
	echo "install-deps: Go is missing: install Go 1.26 or newer from https://go.dev/dl/" >&2
	exit 1
fi
