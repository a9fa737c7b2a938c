#!/usr/bin/env bash
# Prints the path of a kube-apiserver for the Kubernetes tests (test/k8s), building it
# from test/k8s/tools with kubectl beside it only when the cache lacks them. The cache
# lives outside the clone, keyed by the release and the tools module's go.sum:
#   ${TCPSHIFT_CACHE:-/var/cache/tcpshift}/kube-apiserver-v1.34.4-<hash>/{kube-apiserver,kubectl}
#   kube-apiserver.sh            — the kube-apiserver's path
#   kube-apiserver.sh --kubectl  — kubectl's path
# A first build takes 6–16 minutes on two cores and ~2 GB of Go build cache.
set -euo pipefail

GO=${GO:-$(command -v go 2>/dev/null || echo /usr/local/go/bin/go)}
K8S_VERSION=v1.34.4 # the k8s.io/kubernetes release in test/k8s/tools/go.mod
tools=$(cd "$(dirname "$0")/../test/k8s/tools" && pwd)

want=kube-apiserver
case "${1:-}" in
"") ;;
--kubectl) want=kubectl ;;
*) echo "usage: $0 [--kubectl]" >&2; exit 2 ;;
esac

grep -q "k8s.io/kubernetes $K8S_VERSION" "$tools/go.mod" ||
	{ echo "kube-apiserver.sh: $tools/go.mod does not require k8s.io/kubernetes $K8S_VERSION" >&2; exit 1; }
hash=$(sha256sum "$tools/go.sum" | cut -c1-12)
dir=${TCPSHIFT_CACHE:-/var/cache/tcpshift}/kube-apiserver-$K8S_VERSION-$hash

if [ ! -x "$dir/kube-apiserver" ] || [ ! -x "$dir/kubectl" ]; then
	mkdir -p "$(dirname "$dir")"
	# One builder at a time: a second caller waits, then finds the binaries.
	exec 9>"$dir.lock"
	flock 9
	if [ ! -x "$dir/kube-apiserver" ] || [ ! -x "$dir/kubectl" ]; then
		minor=${K8S_VERSION#v1.}
		minor=${minor%%.*}
		# Without a version the server reports v0.0.0-master+$Format:%H$, which kubectl refuses.
		ldflags="-s -w"
		for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
			ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
			ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
		done
		tmp=$(mktemp -d "$dir.tmp.XXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		start=$SECONDS
		echo "kube-apiserver.sh: building kube-apiserver and kubectl $K8S_VERSION into $dir (first time: minutes)" >&2
		(cd "$tools" && "$GO" build -trimpath -ldflags "$ldflags" -o "$tmp/" \
			k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl) >&2
		rm -rf "$dir"
		mv "$tmp" "$dir"
		chmod 0755 "$dir"
		echo "kube-apiserver.sh: built in $((SECONDS - start)) s" >&2
	fi
fi
echo "$dir/$want"
