package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/ledger/audit"
)

// TestAuditThroughTiles: vigie audit --tiles reads every leaf from the
// entry bundles of /tile/entries/ and rebuilds the signed roots from them;
// a bundle changed on its way (a cache in front, say) is a root mismatch.
func TestAuditThroughTiles(t *testing.T) {
	w := newWorld(t, filepath.Join(t.TempDir(), "data"))
	const n = 300
	for i := range n {
		doCheck(t, w.e, fmt.Sprint("tiles-", i), e2ePatient, e2eDoctor, vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT, true)
	}
	waitCheckpoint(t, w, n)

	code, rep, errOut := w.audit(auth.RoleAuditor, t.TempDir(), "--log-only", "--tiles", "--batch", "100")
	if code != exitOK || len(rep.Findings) != 0 || rep.Log.Fetched < n {
		t.Fatalf("vigie audit --tiles: exit %d, %d leaves, findings %+v\n%s", code, rep.Log.Fetched, rep.Findings, errOut)
	}
	for _, cp := range rep.Log.Checkpoints {
		if !cp.RootChecked {
			t.Errorf("the root of the checkpoint of size %d was not rebuilt", cp.Size)
		}
	}

	w.setEdit(func(path string, body []byte) []byte {
		if path != "/tile/entries/000" {
			return body
		}
		b := bytes.Clone(body)
		b[8] ^= 1 // in the commitment of leaf 0, after its length and 0x01
		return b
	})
	code, rep, _ = w.audit(auth.RoleAuditor, t.TempDir(), "--log-only", "--tiles")
	found := false
	for _, f := range rep.Findings {
		found = found || f.Kind == audit.KindRootMismatch
	}
	if code == exitOK || !found {
		t.Errorf("vigie audit --tiles with a changed bundle: exit %d, findings %+v, want %s", code, rep.Findings, audit.KindRootMismatch)
	}
}
