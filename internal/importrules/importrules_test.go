package importrules_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/vigie-sante/vigie/"

type pkg struct {
	ImportPath   string
	Dir          string
	Standard     bool
	GoFiles      []string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// rel is a package's path in the module ("ledger/event"), or "" for a
// package of another module.
func rel(path string) string {
	r, ok := strings.CutPrefix(path, module)
	if !ok {
		return ""
	}
	return r
}

// under reports whether a module path is dir or below it.
func under(path, dir string) bool { return path == dir || strings.HasPrefix(path, dir+"/") }

// isDomain: the service core and the formats (docs/architecture.md).
func isDomain(path string) bool { return under(path, "ledger") || under(path, "consent") }

// isFormats: the pure formats and verification room.
func isFormats(path string) bool {
	return path == "ledger/event" || under(path, "ledger/verify") || path == "ledger/audit"
}

// Rooms, in the order of docs/architecture.md: a package imports only
// from its room and the rooms before it.
const (
	formats = iota
	core
	node
	door
	faces
	unassigned
)

var roomNames = []string{"formats and verification", "service core", "the node", "the door", "faces"}

func roomOf(path string) int {
	switch {
	case isFormats(path):
		return formats
	case isDomain(path):
		return core
	case path == "cmd/vigie/internal/node":
		return node
	case path == "api/server" || path == "api/auth" || path == "api/vigie/v1":
		return door
	case under(path, "api/gateway") || path == "api/client" || path == "api/apiserver" || path == "cmd/vigie" || path == "cmd/verify-wasm":
		return faces
	}
	return unassigned
}

// isTrillianAdapter: the packages that talk to Trillian over gRPC and
// read its status codes.
func isTrillianAdapter(path string) bool { return under(path, "ledger/trillian") }

func listModule(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Dir,Standard,GoFiles,Imports,TestImports,XTestImports", "./...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages: not the module?", len(pkgs))
	}
	return pkgs
}

// TestImportRules enforces the rooms' import rules.
func TestImportRules(t *testing.T) {
	for _, p := range listModule(t) {
		from := rel(p.ImportPath)
		all := append(append(append([]string(nil), p.Imports...), p.TestImports...), p.XTestImports...)
		for _, imp := range all {
			to := rel(imp)
			// Nothing outside cmd/ imports cmd/ (Go's internal rule keeps
			// cmd/vigie/internal/... to cmd/vigie; this keeps the rest).
			if to != "" && under(to, "cmd") && !under(from, "cmd") {
				t.Errorf("%s imports %s: nothing outside cmd/ imports cmd/", from, to)
			}
			// The service's assembly is the binary's: a library that
			// started a whole API would hide it from its callers.
			if to == "api/apiserver" && !under(from, "cmd") && from != "api/apiserver" {
				t.Errorf("%s imports %s: only cmd/ starts the whole API", from, to)
			}
		}
		for _, imp := range p.Imports {
			to := rel(imp)
			if to != "" && roomOf(to) != unassigned && roomOf(from) < roomOf(to) {
				t.Errorf("%s (%s) imports %s (%s): a room imports only from itself and the rooms before it", from, roomNames[roomOf(from)], to, roomNames[roomOf(to)])
			}
			switch {
			case isDomain(from) && to != "" && (under(to, "api") || under(to, "cmd")):
				t.Errorf("%s imports %s: ledger and consent never import api/ or cmd/", from, to)
			case isDomain(from) && imp == "flag":
				t.Errorf("%s imports flag: flags are read in cmd/ only", from)
			case isDomain(from) && !isTrillianAdapter(from) && (imp == "google.golang.org/grpc/codes" || imp == "google.golang.org/grpc/status"):
				t.Errorf("%s imports %s: errors become gRPC codes in api/server only", from, imp)
			case from == "cmd/vigie/internal/node" && to != "" && under(to, "api"):
				t.Errorf("%s imports %s: the node is assembled below the API", from, to)
			case isFormats(from) && to != "" && !isFormats(to):
				t.Errorf("%s imports %s: the formats and the verifier import nothing of the module outside them", from, to)
			case isFormats(from) && to == "" && strings.Contains(strings.Split(imp, "/")[0], ".") &&
				!under(imp, "golang.org/x/mod/sumdb") && !under(imp, "github.com/transparency-dev/merkle"):
				t.Errorf("%s imports %s: the formats and the verifier use the standard library, sumdb/note and transparency-dev/merkle only", from, imp)
			}
		}
	}
}

// TestNoEnvironment: no package of the service core reads the environment
// (cmd/vigie maps every VIGIE_* variable onto flags), test helpers aside
// (pgtest finds the test cluster there).
func TestNoEnvironment(t *testing.T) {
	reads := map[string]bool{"Getenv": true, "LookupEnv": true, "Environ": true, "ExpandEnv": true}
	fset := token.NewFileSet()
	checked := 0
	for _, p := range listModule(t) {
		if from := rel(p.ImportPath); !isDomain(from) || strings.HasSuffix(from, "test") {
			continue
		}
		for _, name := range p.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			checked++
			ast.Inspect(f, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if x, ok := sel.X.(*ast.Ident); ok && (x.Name == "os" || x.Name == "syscall") && reads[sel.Sel.Name] {
					t.Errorf("%s: %s.%s: the environment is read in cmd/ only", fset.Position(sel.Pos()), x.Name, sel.Sel.Name)
				}
				return true
			})
		}
	}
	if checked == 0 {
		t.Fatal("no file of ledger/ or consent/ checked")
	}
}
