package verify

import (
	"bytes"
	"errors"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vigie-sante/vigie/ledger/event"
)

// chain returns a valid chain of n links, in order.
func chain(n int) []Link {
	var links []Link
	var prev event.Hash
	for i := range n {
		c := testCommitment("chain", i)
		links = append(links, Link{Seq: uint64(i + 1), Prev: prev, Commitment: c})
		prev = c
	}
	return links
}

func TestVerifyChain(t *testing.T) {
	c := chain(6)
	forked := c[3]
	forked.Commitment = testCommitment("fork", 3)
	badFirst := slices.Clone(c)
	badFirst[0].Prev = testCommitment("before", 0)
	wrongLink := slices.Clone(c)
	wrongLink[4].Prev = c[2].Commitment
	reversed := slices.Clone(c)
	slices.Reverse(reversed)
	// Every event names patient A, but the fifth names patient B.
	foreign := slices.Clone(c)
	for i := range foreign {
		foreign[i].Patient = testCommitment("patient A", 0)
	}
	foreign[4].Patient = testCommitment("patient B", 0)
	tests := []struct {
		name  string
		links []Link
		want  error  // nil for a valid chain
		seq   uint64 // where it breaks
	}{
		{"empty", nil, nil, 0},
		{"one", c[:1], nil, 0},
		{"six", c, nil, 0},
		{"six in reverse order", reversed, nil, 0},
		{"first missing", c[1:], ErrMissingEvent, 1},
		{"gap", append(slices.Clone(c[:2]), c[3:]...), ErrMissingEvent, 3},
		{"gaps", append(slices.Clone(c[:1]), c[4:]...), ErrMissingEvent, 2},
		{"first with a previous", badFirst, ErrWrongLink, 1},
		{"wrong link", wrongLink, ErrWrongLink, 5},
		{"duplicate", append(slices.Clone(c), c[2]), ErrDuplicateSeq, 3},
		{"fork", append(slices.Clone(c), forked), ErrDuplicateSeq, 4},
		{"fork before a gap", append(append(slices.Clone(c[:4]), forked), c[5]), ErrDuplicateSeq, 4},
		{"gap before a fork", append(append(slices.Clone(c[:2]), c[3]), forked), ErrMissingEvent, 3},
		{"foreign patient", foreign, ErrForeignPatient, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.links)
			err := VerifyChain(tt.links)
			if !slices.Equal(in, tt.links) {
				t.Error("VerifyChain changed its input")
			}
			if tt.want == nil {
				if err != nil {
					t.Errorf("VerifyChain = %v, want nil", err)
				}
				return
			}
			var ce *ChainError
			if !errors.Is(err, tt.want) || !errors.As(err, &ce) || ce.Seq != tt.seq {
				t.Errorf("VerifyChain = %v, want %v at seq %d", err, tt.want, tt.seq)
			}
		})
	}
	t.Run("erased", func(t *testing.T) {
		erased := slices.Clone(c)
		for i := range 3 { // the first three events were erased
			erased[i] = ErasedLink(c[i].Seq, c[i].Commitment)
		}
		// Without the erasure's record after them, nothing explains them.
		if err := VerifyChain(erased); !errors.Is(err, ErrUnexplainedErasure) {
			t.Errorf("erased events with no erasure record: %v, want ErrUnexplainedErasure", err)
		}
		erased[3].ErasureDone = true
		if err := VerifyChain(erased); err != nil {
			t.Errorf("VerifyChain with erased events = %v, want nil", err)
		}
		// An erased event after a readable one: no erasure leaves that.
		middle := slices.Clone(c)
		middle[2] = ErasedLink(c[2].Seq, c[2].Commitment)
		middle[4].ErasureDone = true
		var ce *ChainError
		if err := VerifyChain(middle); !errors.Is(err, ErrUnexplainedErasure) || !errors.As(err, &ce) || ce.Seq != 3 {
			t.Errorf("an erased event after readable ones: %v, want ErrUnexplainedErasure at seq 3", err)
		}
		// An erasure record before the erased events explains nothing.
		before := slices.Clone(erased)
		before[3].ErasureDone = false
		before[0] = Link{Seq: 1, Commitment: c[0].Commitment, ErasureDone: true}
		before[1] = ErasedLink(c[1].Seq, c[1].Commitment)
		if err := VerifyChain(before); !errors.Is(err, ErrUnexplainedErasure) {
			t.Errorf("an erasure record before the erased events: %v, want ErrUnexplainedErasure", err)
		}
		// The link from an erased event to the next is still checked.
		wrong := slices.Clone(erased)
		wrong[3].Prev = c[1].Commitment
		if err := VerifyChain(wrong); !errors.Is(err, ErrWrongLink) {
			t.Errorf("wrong link after an erased event: %v, want ErrWrongLink", err)
		}
		// So is its place: an erased event does not fill a gap.
		if err := VerifyChain(append(slices.Clone(erased[:2]), erased[3:]...)); !errors.Is(err, ErrMissingEvent) {
			t.Errorf("gap among erased events: %v, want ErrMissingEvent", err)
		}
	})
	if err := VerifyChain([]Link{{Seq: 0}}); err == nil {
		t.Error("VerifyChain(seq 0) succeeded")
	}
}

func TestVerifyEvent(t *testing.T) {
	evs := goldenEvents(t)
	var links []Link
	for i, ev := range evs {
		b, err := VerifyEvent(ev.body, ev.salt, ev.commitment)
		if err != nil {
			t.Fatalf("VerifyEvent(golden %d): %v", i+1, err)
		}
		links = append(links, LinkOf(b, ev.commitment))
	}
	if err := VerifyChain(links); err != nil {
		t.Errorf("VerifyChain(golden) = %v", err)
	}

	ev := evs[0]
	otherSalt := ev.salt
	otherSalt[31] ^= 1
	changed := bytes.Replace(ev.body, []byte(`"allow"`), []byte(`"deny!"`), 1)
	reencoded := bytes.Replace(ev.body, []byte(`"seq":1`), []byte(`"seq": 1`), 1)
	v2 := bytes.Replace(ev.body, []byte(`{"v":1,`), []byte(`{"v":2,`), 1)
	tests := []struct {
		name       string
		body       []byte
		salt       [SaltSize]byte
		commitment event.Hash
		want       error
	}{
		{"other salt", ev.body, otherSalt, ev.commitment, ErrCommitmentMismatch},
		{"body changed", changed, ev.salt, ev.commitment, ErrCommitmentMismatch},
		{"body re-encoded", reencoded, ev.salt, ev.commitment, ErrCommitmentMismatch},
		{"other commitment", ev.body, ev.salt, evs[1].commitment, ErrCommitmentMismatch},
		{"empty body", nil, ev.salt, ev.commitment, ErrCommitmentMismatch},
		// Committed, but not a body this verifier reads.
		{"committed version 2", v2, ev.salt, Commitment(ev.salt, v2), event.ErrUnsupportedVersion},
		{"committed non-canonical", reencoded, ev.salt, Commitment(ev.salt, reencoded), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := VerifyEvent(tt.body, tt.salt, tt.commitment)
			if err == nil {
				t.Fatalf("VerifyEvent = %+v, want an error", b)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("VerifyEvent = %v, want %v", err, tt.want)
			}
			if tt.want == nil && errors.Is(err, ErrCommitmentMismatch) {
				t.Errorf("VerifyEvent = %v, want a parse error", err)
			}
		})
	}
}

// TestPureImports keeps the package pure, for the browser to run the same
// verifier as the CLI and the tests: it may import only the standard
// library (minus what a pure verifier has no use for), sumdb/note,
// transparency-dev/merkle and ledger/event. scripts/check-wasm.sh checks
// the whole dependency graph.
func TestPureImports(t *testing.T) {
	for _, dir := range []string{".", "../event"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range files {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range f.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				if !allowedImport(dir, path) {
					t.Errorf("%s imports %s", name, path)
				}
			}
		}
	}
}

func allowedImport(dir, path string) bool {
	switch path {
	case "os", "os/exec", "flag", "net", "net/http", "database/sql", "log", "log/slog", "syscall", "unsafe", "time/tzdata":
		return false // no environment, flags, network, storage or logging
	}
	if !strings.Contains(strings.SplitN(path, "/", 2)[0], ".") {
		return true // standard library
	}
	if dir != "." {
		return false // ledger/event: standard library only
	}
	return path == "golang.org/x/mod/sumdb/note" ||
		strings.HasPrefix(path, "github.com/transparency-dev/merkle") ||
		path == "github.com/vigie-sante/vigie/ledger/event"
}
