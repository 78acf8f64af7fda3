# Vigie. See README.md: `make run` runs the service, `make test` every test.

GO ?= go
# The patched toolchain named in go.mod (GOTOOLCHAIN=local, as set by this
# machine's Go installation, would silently ignore it): see scripts/env.sh.
export GOTOOLCHAIN := $(shell awk '$$1 == "toolchain" { print $$2 }' go.mod)

# The version the binary reports (vigie version, vigie_build_info,
# /healthz): from git, "devel" outside a checkout.
VERSION ?= $(shell scripts/version.sh)

.PHONY: run build vigie-hsm test test-nodes test-ha bench lint fmt proto clean

## run: run the service with the embedded default (data in ./vigie-data)
run:
	$(GO) run ./cmd/vigie serve

## build: build the static binary bin/vigie
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o bin/vigie ./cmd/vigie

## vigie-hsm: build bin/vigie-hsm, dynamically linked (cgo), with the PKCS#11
## backend (--hsm-module; docs/operations.md, "Keys in a hardware security module")
vigie-hsm:
	CGO_ENABLED=1 $(GO) build -tags pkcs11 -trimpath -ldflags "-X main.version=$(VERSION)" -o bin/vigie-hsm ./cmd/vigie

## test: every test, PostgreSQL ones included (starts a throwaway cluster)
test:
	scripts/test.sh

## test-nodes: the node-kill test: three nodes on PostgreSQL and Trillian's
## binaries, killed with SIGKILL under load (also part of make test)
test-nodes:
	scripts/test-nodes.sh

## test-ha: the failover test: etcd, three PostgreSQL under Patroni, two
## Trillian log servers and two elected signers, three nodes; one of each
## killed with SIGKILL under load (also part of make test)
test-ha:
	scripts/test-nodes.sh ha

## bench: the gate table of docs/performance.md (external HTTP and gRPC load
## beside bare anchors, the API in process), in a few minutes; every
## benchmark, with PostgreSQL: scripts/bench.sh go record api verify
bench:
	scripts/bench.sh gate

## lint: gofmt, go vet, staticcheck and govulncheck (pinned in go.mod as tools;
## govulncheck offline, against the database of scripts/vulncheck.sh)
lint:
	scripts/lint.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

## proto: regenerate api/vigie/v1's Go code and OpenAPI description from its
## .proto files, offline, with the plugin versions pinned in go.mod
proto:
	$(GO) run ./api/internal/protogen

clean:
	rm -rf bin vigie-data bench-results
