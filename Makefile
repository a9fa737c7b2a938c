SHELL := /bin/bash
# tcpshift — run `make help` for the targets.

# sudo's secure_path often lacks Go: fall back to the usual install location.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN := bin

.PHONY: help build generate test k8s-test k8s-bench demo bench bench-smoke deps install uninstall clean

# Where `make install` puts things; DESTDIR stages them elsewhere (packaging, tests).
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
DOCDIR ?= $(PREFIX)/share/doc/tcpshift
CONFDIR ?= /etc/tcpshift
UNITDIR ?= /etc/systemd/system

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# What `tcpshift version` reports; empty (no git) falls back to Go's build info.
# safe.directory: under sudo, git refuses a checkout its user owns.
VERSION ?= $(shell git -c safe.directory='$(CURDIR)' describe --always --dirty 2>/dev/null)

build: ## build bin/tcpshift and bin/tcp-echo
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN)/tcpshift ./cmd/tcpshift
	$(GO) build -o $(BIN)/tcp-echo ./cmd/tcp-echo

generate: ## rebuild the BPF objects and their Go bindings (needs clang, libbpf-dev)
	bash scripts/install-deps.sh generate
	cd bpf && $(GO) generate ./...

# summary prints failed and skipped tests in full and the counts; bin/test.log has everything.
test: ## run every test, kernel tests included (needs root); a skipped test fails the run
	bash scripts/install-deps.sh test
	$(GO) vet ./...
	$(GO) build -o $(BIN)/summary ./test/summary
	set -o pipefail; $(GO) test -count=1 -json ./... 2>&1 | $(BIN)/summary -log $(BIN)/test.log

# The apiserver comes from scripts/kube-apiserver.sh: built once (minutes) into a cache outside the
# clone, then only looked up. bin/k8s-test.log has the whole log.
k8s-test: build ## run the Kubernetes tests: real etcd and kube-apiserver, simulated nodes and pods (needs root)
	bash scripts/install-deps.sh k8s
	$(GO) build -o $(BIN)/summary ./test/summary
	set -o pipefail; apiserver=$$(bash scripts/kube-apiserver.sh) && \
	  TCPSHIFT_KUBE_APISERVER=$$apiserver TCPSHIFT_BIN=$(CURDIR)/$(BIN) \
	  $(GO) test -tags k8s -count=1 -timeout 20m -json ./test/k8s/... 2>&1 | $(BIN)/summary -log $(BIN)/k8s-test.log

# The agent at cluster scale (10 000 Services), against the real API server; writes
# docs/benchmarks/kubernetes.md. Minutes, not seconds: not part of CI.
k8s-bench: build ## measure the Kubernetes agent with 10 000 Services; writes docs/benchmarks/kubernetes.md (needs root)
	bash scripts/install-deps.sh k8s
	apiserver=$$(bash scripts/kube-apiserver.sh) && \
	  TCPSHIFT_KUBE_APISERVER=$$apiserver TCPSHIFT_BIN=$(CURDIR)/$(BIN) TCPSHIFT_K8S_BENCH_OUT=$(CURDIR)/docs/benchmarks/kubernetes.md \
	  $(GO) test -tags k8s,k8sbench -count=1 -timeout 60m -run TestScale -v ./test/k8s/

demo: build ## run Istio's tcp-echo traffic-shifting task in a private network namespace (needs root)
	bash scripts/install-deps.sh demo
	$(BIN)/tcpshift demo

bench: build ## measure tcpshift against direct, HAProxy and nginx; writes docs/benchmarks/ (needs root)
	bash scripts/install-deps.sh bench
	$(GO) build -o $(BIN)/bench ./test/bench
	$(BIN)/bench -bin $(BIN) -out docs/benchmarks

bench-smoke: build ## the benchmark for a few seconds, to keep it working; writes bin/bench-smoke/
	bash scripts/install-deps.sh bench
	$(GO) build -o $(BIN)/bench ./test/bench
	$(BIN)/bench -smoke -bin $(BIN) -out $(BIN)/bench-smoke

deps: ## install what tests and the demo need on Debian
	bash scripts/install-deps.sh test

install: build ## install tcpshift, its systemd unit and an example config (needs root)
	install -D -m 0755 $(BIN)/tcpshift $(DESTDIR)$(BINDIR)/tcpshift
	install -D -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -d -m 0755 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(CONFDIR)
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@CONFDIR@|$(CONFDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' \
	  packaging/tcpshift.service.in > $(DESTDIR)$(UNITDIR)/tcpshift.service
	install -m 0644 packaging/routes.yaml.example $(DESTDIR)$(CONFDIR)/routes.yaml.example
	@if [ -z "$(DESTDIR)" ] && [ "$(UNITDIR)" = /etc/systemd/system ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "installed: copy $(CONFDIR)/routes.yaml.example to $(CONFDIR)/routes.yaml, edit it, then: systemctl enable --now tcpshift"

uninstall: ## remove what install put in place (keeps routes.yaml and the kernel state)
	rm -f $(DESTDIR)$(BINDIR)/tcpshift $(DESTDIR)$(UNITDIR)/tcpshift.service $(DESTDIR)$(CONFDIR)/routes.yaml.example
	rm -rf $(DESTDIR)$(DOCDIR)
	@if [ -z "$(DESTDIR)" ] && [ "$(UNITDIR)" = /etc/systemd/system ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

clean: ## remove build output
	rm -rf $(BIN)
