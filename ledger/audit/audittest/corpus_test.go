package audittest

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/corpus from Cases")

// TestCorpusUpToDate checks that the committed corpus is what Cases makes
// (run with -update to rewrite it).
func TestCorpusUpToDate(t *testing.T) {
	cases := Cases()
	if *update {
		old, _ := filepath.Glob(filepath.Join(Dir, "*.json"))
		for _, f := range old {
			os.Remove(f)
		}
		if err := Write(Dir, cases); err != nil {
			t.Fatal(err)
		}
	}
	files, err := filepath.Glob(filepath.Join(Dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(cases) {
		t.Errorf("%d files in %s, %d cases: run go test -update", len(files), Dir, len(cases))
	}
	for _, c := range cases {
		want, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(Dir, c.Name+".json"))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s.json is not what Cases makes (%v): run go test ./ledger/audit/audittest -update", c.Name, err)
		}
	}
	// Twice the same: the corpus does not depend on the run.
	again := Cases()
	for i := range cases {
		a, _ := cases[i].Marshal()
		b, _ := again[i].Marshal()
		if !bytes.Equal(a, b) {
			t.Errorf("case %s differs between two runs of Cases", cases[i].Name)
		}
	}
}
