#!/usr/bin/env bash
# Installs what tcpshift needs on Debian 12, for the Makefile, CI and Vagrant.
#   install-deps.sh test      — running the tests and the demo (Go must be present)
#   install-deps.sh generate  — rebuilding the BPF objects (clang, libbpf headers)
#   install-deps.sh bench     — the benchmark's peers (iperf3, HAProxy, nginx stream)
#   install-deps.sh vagrant   — a fresh VM (vagrant/Vagrantfile): test's packages, make, and Go
set -euo pipefail

# The Go release `vagrant` installs when no Go is present (go.mod wants 1.26).
GO_VERSION=1.26.8

want=${1:-test}
case "$want" in
test) pkgs=(iproute2 iperf3 systemd ruby) ;; # systemd-analyze and ruby check the unit and the Vagrantfile
generate) pkgs=(clang llvm libbpf-dev) ;;
bench) pkgs=(iproute2 iperf3 haproxy nginx libnginx-mod-stream) ;;
vagrant) pkgs=(iproute2 iperf3 systemd ruby make ca-certificates curl) ;;
*) echo "usage: $0 test|generate|bench|vagrant" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" -eq 0 ] || { echo "install-deps: need root to install ${missing[*]}" >&2; exit 1; }
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
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
