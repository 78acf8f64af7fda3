#!/usr/bin/env bash
# The CLI, the tests and the browser run the same verifier. Checks that ledger/verify,
# ledger/verify/report (what the portal's verifier runs), ledger/audit (a
# patient's and an auditor's checks) and ledger/event
#   1. build with GOOS=js GOARCH=wasm;
#   2. depend on nothing outside the standard library but sumdb/note,
#      transparency-dev/merkle and each other (no Trillian, gRPC, database);
#   3. pass their tests under WebAssembly, when Node.js is installed (else
#      this step is skipped with a message; CI=true makes it an error).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

pkgs=(./ledger/event/ ./ledger/verify/ ./ledger/verify/report/ ./ledger/audit/)
export GOOS=js GOARCH=wasm

go build -o /dev/null "${pkgs[@]}"

bad=$(go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' "${pkgs[@]}" |
	grep -v -E '^(github\.com/vigie-sante/vigie/ledger/(event|verify|verify/report|audit)|golang\.org/x/mod/sumdb/note|github\.com/transparency-dev/merkle(/.*)?)$' || true)
if [ -n "$bad" ]; then
	echo "check-wasm.sh: the pure verifier depends on:" >&2
	echo "$bad" >&2
	exit 1
fi
bad=$(go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' ./ledger/event/ |
	grep -v -x 'github.com/vigie-sante/vigie/ledger/event' || true)
if [ -n "$bad" ]; then
	echo "check-wasm.sh: ledger/event depends on more than the standard library:" >&2
	echo "$bad" >&2
	exit 1
fi

if command -v node >/dev/null 2>&1; then
	go test -count=1 -exec="$(go env GOROOT)/lib/wasm/go_js_wasm_exec" "${pkgs[@]}"
elif [ "${CI:-}" = true ]; then
	echo "check-wasm.sh: Node.js is needed to run the tests under WebAssembly, and CI=true" >&2
	exit 1
else
	echo "check-wasm.sh: Node.js not found: built for js/wasm, tests not run under WebAssembly" >&2
fi
echo "check-wasm.sh: ledger/event, ledger/verify, ledger/verify/report and ledger/audit are pure and build for js/wasm"
