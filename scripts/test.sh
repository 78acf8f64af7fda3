#!/usr/bin/env bash
# Runs every test of Vigie (make test):
#   1. static checks: gofmt, go vet, a static (CGO_ENABLED=0) build, the
#      verifier's WebAssembly build and tests (scripts/check-wasm.sh),
#      govulncheck offline (scripts/vulncheck.sh, about 20 s);
#   2. Debian's chromium for the portal's browser tests (scripts/chromium.sh;
#      screenshots go to $VIGIE_TEST_ARTIFACTS, default test-artifacts/);
#   3. a throwaway PostgreSQL cluster (installed from Debian's packages if
#      needed, see scripts/pg.sh), stopped whatever happens;
#   4. go test over the whole module, then the race detector on a few;
#   5. the node-kill test (scripts/test-nodes.sh: three nodes, Trillian's
#      binaries, SIGKILLs under load; its summary line ends its output);
#   6. the failover test (scripts/test-nodes.sh ha, make test-ha: etcd,
#      PostgreSQL under Patroni, Trillian's signers elected, one of each
#      process killed; about two and a half minutes);
#   7. the deploy files' tests (deploy/, a module of its own: podman builds
#      the image, systemd-analyze checks the unit);
#   8. the hardware security module backend (build tag pkcs11): a second,
#      dynamically linked binary (CGO_ENABLED=1), vetted and tested against
#      SoftHSM2 (Debian's softhsm2; a token in a temporary directory);
#      about 75 s with a warm build cache.
# Commands the tests need (curl, Node.js, promtool, podman, systemd-analyze,
# Patroni, etcd, SoftHSM2, a C compiler for cgo)
# and Debian's CA bundle are installed from Debian's packages if missing
# (scripts/deps.sh). Each phase prints its wall time as it ends
# ("phase <name>: <seconds> s"), and the last line sums them up.
# Under CI (CI=true) a test that cannot reach PostgreSQL or chromium fails
# instead of skipping. Extra arguments go to go test (e.g. scripts/test.sh -run Crash).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
. scripts/pg.sh
. scripts/chromium.sh
. scripts/deps.sh

# phase NAME COMMAND...: runs COMMAND (under set -e, as the rest of this
# script) and prints its wall time; a phase that fails prints its time
# from the EXIT trap, before the summary.
phases=()
phase_name=
phase() {
	phase_name=$1 phase_start=$EPOCHREALTIME
	shift
	"$@"
	phase_done ""
}
phase_done() {
	local took
	took=$(awk -v a="$phase_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
	echo "phase $phase_name: $took s$1"
	phases+=("$phase_name $took s")
	phase_name=
}
on_exit() {
	[ -z "$phase_name" ] || phase_done " (failed)"
	local all
	if [ ${#phases[@]} -gt 0 ]; then
		printf -v all '%s, ' "${phases[@]}"
		echo "test.sh: phases: ${all%, }"
	fi
	pg_stop
}
trap on_exit EXIT

deps() {
	# Commands some tests run: curl (the README's walk-through), Node.js
	# (the verifier's tests under WebAssembly).
	need_command curl curl || [ "${CI:-}" != true ] || return 1
	need_command node nodejs || [ "${CI:-}" != true ] || return 1
	# promtool (Debian's prometheus package, of which only promtool is
	# used) checks /metrics and the alerting rules of docs/operations.md.
	need_command promtool prometheus || [ "${CI:-}" != true ] || return 1
	# The deploy tests: podman builds the image (FROM scratch, with
	# Debian's CA bundle), systemd-analyze checks the unit.
	need_command podman podman || [ "${CI:-}" != true ] || return 1
	need_command systemd-analyze systemd || [ "${CI:-}" != true ] || return 1
	need_command update-ca-certificates ca-certificates || [ "${CI:-}" != true ] || return 1
	# The failover test: Patroni runs PostgreSQL, etcd holds its state
	# and elects Trillian's signer.
	need_command patroni patroni || [ "${CI:-}" != true ] || return 1
	need_command etcd etcd-server || [ "${CI:-}" != true ] || return 1
	# The HSM phase: SoftHSM2 (PKCS#11 with CKM_EDDSA), gcc for cgo.
	need_command softhsm2-util softhsm2 || [ "${CI:-}" != true ] || return 1
	need_command gcc gcc || [ "${CI:-}" != true ] || return 1
}

static() {
	local unformatted
	unformatted=$(gofmt -l $(git ls-files '*.go' | grep -v '\.pb\.'))
	if [ -n "$unformatted" ]; then
		echo "test.sh: gofmt would change:" >&2
		echo "$unformatted" >&2
		return 1
	fi
	go vet ./...
	CGO_ENABLED=0 go build -o /dev/null ./... # one static binary, no cgo
}

chromium() {
	if ! chromium_install; then
		if [ "${CI:-}" = true ]; then
			echo "test.sh: chromium could not be installed, and CI=true" >&2
			return 1
		fi
		echo "test.sh: chromium unavailable: the portal's browser tests will skip" >&2
	fi
}

postgres() {
	local rc=0
	pg_start || rc=$?
	trap on_exit EXIT # pg_start set its own (pg_stop, which on_exit runs)
	if [ $rc -ne 0 ]; then
		if [ "${CI:-}" = true ]; then
			echo "test.sh: PostgreSQL could not be started, and CI=true" >&2
			return 1
		fi
		echo "test.sh: PostgreSQL unavailable: its tests will skip" >&2
	fi
}

# The deploy files' tests, in deploy/'s own module (compose-go, kustomize
# and k8s.io/api never enter vigie's module graph).
deploy_tests() {
	(cd deploy && go vet ./... && go test -count=1 -timeout 10m "$@" ./...)
}

phase deps deps
phase static static
phase wasm scripts/check-wasm.sh  # the verifier runs in browsers
phase vulncheck scripts/vulncheck.sh # no reachable known vulnerability (also in make lint)
phase chromium chromium
phase postgres postgres
phase litewitness scripts/litewitness-bin.sh >/dev/null # the witnesses of TestLitewitness (built once, cached)

phase test go test -count=1 -timeout 20m "$@" ./...

# The race detector on the packages with shared caches and concurrency of
# their own; not on everything (the pure-Go SQLite driver is slow under it).
if [ $# -eq 0 ]; then
	phase race env CGO_ENABLED=1 go test -race -count=1 -timeout 10m ./consent/ ./consent/ladonpolicy/ ./ledger/sqldb/
fi

# The node-kill test (make test-nodes), on the cluster started above.
if [ $# -eq 0 ] && [ -n "${VIGIE_TEST_POSTGRES:-}" ]; then
	phase nodes scripts/test-nodes.sh
fi

# The failover test (make test-ha): its own PostgreSQL under Patroni.
if [ $# -eq 0 ]; then
	phase ha scripts/test-nodes.sh ha
fi

phase deploy deploy_tests "$@"

# The PKCS#11 backend, built with cgo under its build tag (make vigie-hsm):
# its package against SoftHSM2, and a node signing and sealing through a
# token, vigie verify and vigie audit passing, a KEK rotated while it
# serves (TestHSMServe).
hsm_tests() {
	CGO_ENABLED=1 go vet -tags pkcs11 ./ledger/keys/hsm/... ./cmd/vigie/
	CGO_ENABLED=1 go test -count=1 -tags pkcs11 -timeout 10m ./ledger/keys/hsm/...
	CGO_ENABLED=1 go test -count=1 -tags pkcs11 -timeout 10m -run '^TestHSM' ./cmd/vigie/
}
if [ $# -eq 0 ]; then
	phase hsm hsm_tests
fi
