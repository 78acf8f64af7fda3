package main

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/sqldb"
	"github.com/vigie-sante/vigie/ledger/sqldb/pgtest"
)

// The values of the scripted run that must never be stored in clear: the
// patient's INS (callers put it in request ids too), directive ids,
// document ids, a justification and request ids.
const (
	atRestDirective  = "hide-ivg-5517"
	atRestBlock      = "block-dr-5517"
	atRestDocument   = "doc-ivg-report-5517"
	atRestOtherDoc   = "doc-discharge-5517"
	atRestJustify    = "unconscious-patient-5517-er"
	atRestRequest    = "his-" + e2ePatient + "-0001"
	atRestRequestBG  = "his-" + e2ePatient + "-0002"
	atRestRequestDoc = "his-" + e2ePatient + "-0003"
	atRestReview     = "rv-" + e2ePatient
)

var atRestSecrets = []string{e2ePatient, atRestDirective, atRestBlock, atRestDocument, atRestOtherDoc, atRestJustify, atRestRequest, atRestRequestBG, atRestRequestDoc, atRestReview}

// scriptedRun makes the calls of a day: a consent with a hidden document,
// checks of the record and of documents (one break-glass, justified), a
// DPO's review. It returns the first answer's leaf index.
func scriptedRun(t *testing.T, e *e2e) uint64 {
	t.Helper()
	access := vigiev1.NewAccessServiceClient(e.conn)
	consents := vigiev1.NewConsentServiceClient(e.conn)
	service := e.as(auth.RoleService, "hospital-his", e2eHospital)
	patient := e.as(auth.RolePatient, e2ePatient)

	first, err := access.Check(service, checkRequest(atRestRequest))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	directives := []*vigiev1.Directive{
		{Id: atRestDirective, Kind: &vigiev1.Directive_HideDocument{HideDocument: &vigiev1.HideDocument{DocumentId: atRestDocument}}},
		{Id: atRestBlock, Kind: &vigiev1.Directive_BlockProfessional{BlockProfessional: &vigiev1.BlockProfessional{Rpps: "10000000002"}}},
	}
	if _, err := consents.UpdateConsent(patient, &vigiev1.UpdateConsentRequest{ExpectedVersion: 0, Directives: directives}); err != nil {
		t.Fatalf("UpdateConsent: %v", err)
	}
	bg := checkRequest(atRestRequestBG)
	bg.PurposeOfUse = vigiev1.PurposeOfUse_PURPOSE_OF_USE_BTG
	bg.BreakGlassJustification = atRestJustify
	bg.Resource = &vigiev1.Resource{Kind: &vigiev1.Resource_Document{Document: &vigiev1.Document{Id: atRestDocument, Type: "advance-directives"}}}
	bgResp, err := access.Check(service, bg)
	if err != nil {
		t.Fatalf("break-glass Check: %v", err)
	}
	doc := checkRequest(atRestRequestDoc)
	doc.Resource = &vigiev1.Resource{Kind: &vigiev1.Resource_Document{Document: &vigiev1.Document{Id: atRestOtherDoc, Type: "advance-directives"}}}
	if _, err := access.Check(service, doc); err != nil {
		t.Fatalf("Check of a document: %v", err)
	}
	if bgResp.Decision == vigiev1.Decision_DECISION_ALLOW {
		dpo := e.as(auth.RoleDPO, "dpo-a", e2eHospital)
		audit := vigiev1.NewAuditServiceClient(e.conn)
		if _, err := audit.ReviewBreakGlass(dpo, &vigiev1.ReviewBreakGlassRequest{RequestId: atRestReview, EventCommitment: bgResp.Event.Commitment, Verdict: vigiev1.BreakGlassVerdict_BREAK_GLASS_VERDICT_JUSTIFIED}); err != nil {
			t.Fatalf("ReviewBreakGlass: %v", err)
		}
	}
	return first.Event.LeafIndex
}

// stop stops the server. Its exit code is not what this test is about: a
// drain cut short leaves events in the outbox, sent at the next start.
func stop(t *testing.T, e *e2e) {
	t.Helper()
	if code := e.proc.stop(t, syscall.SIGTERM); code != 0 {
		t.Logf("serve exit %d:\n%s", code, e.proc.stderr)
	}
}

// scanFiles returns, for each secret found in clear in a file under one of
// dirs, where: every file, whatever it is (databases, write-ahead logs,
// their index files).
func scanFiles(t *testing.T, secrets []string, dirs ...string) map[string][]string {
	t.Helper()
	found := map[string][]string{}
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // removed while walking (PostgreSQL)
				}
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			b, err := os.ReadFile(p)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			for _, s := range secrets {
				if bytes.Contains(b, []byte(s)) {
					found[s] = append(found[s], p)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return found
}

// legacify turns a stopped node's database back into what the version
// before the sealing wrote, as that version's schema (migrations ledger/1
// and consent/1) holds it: request ids in clear in idem_service and
// idem_request, the column organisation and its index
// events_by_organisation (before ledger/3), consents in clear, neither
// conversion recorded.
func legacify(t *testing.T, db *sqldb.DB, dataDir string, requestIDs []string) {
	t.Helper()
	keyHex := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dataDir, "keys", name))
		if err != nil {
			t.Fatal(err)
		}
		k, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	pseudonyms, err := ledger.NewPseudonymizer(keyHex("pseudonym.key"))
	if err != nil {
		t.Fatal(err)
	}
	kek := keyHex("kek")
	open := func(key, sealed, ad []byte) ([]byte, error) {
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		a, err := cipher.NewGCM(b)
		if err != nil {
			return nil, err
		}
		return a.Open(nil, sealed[:a.NonceSize()], sealed[a.NonceSize():], ad)
	}
	ctx := context.Background()
	err = db.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		for _, q := range []string{
			"ALTER TABLE events ADD COLUMN idem_service TEXT",
			"ALTER TABLE events ADD COLUMN idem_request TEXT",
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		type keyed struct {
			index   int64
			service string
			key     []byte
		}
		var todo []keyed
		rows, err := tx.Query(ctx, "SELECT leaf_index, service, request_key FROM events WHERE request_key IS NOT NULL")
		if err != nil {
			return err
		}
		for rows.Next() {
			var k keyed
			if err := rows.Scan(&k.index, &k.service, &k.key); err != nil {
				rows.Close()
				return err
			}
			todo = append(todo, k)
		}
		rows.Close()
		for _, k := range todo {
			id := ""
			for _, r := range requestIDs {
				if h := pseudonyms.RequestHash(ledger.Key{Service: k.service, RequestID: r}); bytes.Equal(h[:], k.key) {
					id = r
				}
			}
			if id == "" {
				t.Fatalf("event %d: request key of no request id of the run", k.index)
			}
			if _, err := tx.Exec(ctx, "UPDATE events SET idem_service = $1, idem_request = $2 WHERE leaf_index = $3", k.service, id, k.index); err != nil {
				return err
			}
		}
		for _, q := range []string{
			"DROP INDEX events_by_request",
			"ALTER TABLE events DROP COLUMN request_key",
			"CREATE UNIQUE INDEX events_by_key ON events (idem_service, idem_request)",
			"DELETE FROM schema_migrations WHERE name = 'ledger/2'",
			"ALTER TABLE events RENAME COLUMN organization TO organisation",
			"DROP INDEX events_by_organization",
			"CREATE INDEX events_by_organisation ON events (organisation, leaf_index)",
			"DELETE FROM schema_migrations WHERE name = 'ledger/3'",
			"DELETE FROM ledger_meta WHERE name IN ('request-ids-hashed', 'consents-sealed', 'plaintext-compacted')",
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		type sealedConsent struct {
			pseudonym, sealed, wrapped []byte
			version                    int64
		}
		var consents []sealedConsent
		rows, err = tx.Query(ctx, "SELECT c.pseudonym, c.version, c.consent, p.wrapped_key FROM consents c JOIN patients p ON p.pseudonym = c.pseudonym")
		if err != nil {
			return err
		}
		for rows.Next() {
			var c sealedConsent
			if err := rows.Scan(&c.pseudonym, &c.version, &c.sealed, &c.wrapped); err != nil {
				rows.Close()
				return err
			}
			consents = append(consents, c)
		}
		rows.Close()
		if len(consents) == 0 {
			t.Fatal("no consent to turn back into clear text")
		}
		for _, c := range consents {
			dk, err := open(kek, c.wrapped, c.pseudonym)
			if err != nil {
				return err
			}
			ad := append([]byte("vigie/patient-data/v1\x00vigie/consent/v1\x00"), c.pseudonym...)
			plain, err := open(dk, c.sealed, binary.BigEndian.AppendUint64(ad, uint64(c.version)))
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "UPDATE consents SET consent = $1 WHERE pseudonym = $2 AND version = $3", plain, c.pseudonym, c.version); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("legacify: %v", err)
	}
}

// TestNothingInClearAtRest runs a day's calls, then checks that the files
// of the database hold none of the INS, directive ids, document ids,
// justification and request ids used; then turns the database back into
// what the version before the sealing wrote (request ids and consents in
// clear, which the files are checked to hold), opens it with this version
// (which migrates it: a retry gets its first answer, the consent reads
// back), and checks the files again. On PostgreSQL, another database of
// the cluster has a write transaction open across the migration
// (holdOtherWriter), as on a shared cluster.
func TestNothingInClearAtRest(t *testing.T) {
	requestIDs := []string{atRestRequest, atRestRequestBG, atRestRequestDoc, atRestReview}
	for _, backend := range []string{"SQLite", "PostgreSQL"} {
		t.Run(backend, func(t *testing.T) {
			dataDir := filepath.Join(t.TempDir(), "data")
			var args []string
			var dsn string
			scanDirs := []string{dataDir}
			openDatabase := func() *sqldb.DB {
				db, err := sqldb.OpenSQLiteDB(context.Background(), filepath.Join(dataDir, "vigie.db"), sqldb.Options{SQLite: sqldb.SQLiteOptions{ApplicationID: dbApplicationID}})
				if err != nil {
					t.Fatal(err)
				}
				return db
			}
			if backend == "PostgreSQL" {
				pgdata := os.Getenv("VIGIE_TEST_PGDATA")
				if os.Getenv(pgtest.EnvVar) == "" || pgdata == "" {
					t.Skip("no test cluster (scripts/with-pg.sh sets VIGIE_TEST_POSTGRES and VIGIE_TEST_PGDATA)")
				}
				dsn = pgtest.NewDatabase(t)
				args = []string{"--db", dsn}
				scanDirs = append(scanDirs, filepath.Join(pgdata, "base"), filepath.Join(pgdata, "pg_wal"))
				openDatabase = func() *sqldb.DB {
					db, err := sqldb.OpenPostgres(context.Background(), dsn, sqldb.Options{})
					if err != nil {
						t.Fatal(err)
					}
					return db
				}
			}
			// settle makes the files what a scan should see: PostgreSQL's
			// write-ahead log switched to a new segment and checkpointed
			// (twice: the segments before the last checkpoint go), with
			// wal_recycle off so that they are removed, not reused.
			settle := func() {
				if dsn == "" {
					return
				}
				db := openDatabase()
				defer db.Close()
				for range 2 {
					for _, q := range []string{"SELECT pg_switch_wal()", "CHECKPOINT"} {
						if err := db.ReadWrite(context.Background(), func(ctx context.Context, tx sqldb.Tx) error {
							_, err := tx.Exec(ctx, q)
							return err
						}); err != nil {
							t.Fatalf("%s: %v", q, err)
						}
					}
				}
			}

			e := startE2EAt(t, dataDir, args...)
			firstIndex := scriptedRun(t, e)
			stop(t, e)
			settle()
			if found := scanFiles(t, atRestSecrets, scanDirs...); len(found) > 0 {
				t.Errorf("after a run, in clear in the files: %v %s", found, relationsOf(t, dsn, found))
			}

			// The database as the version before the sealing left it.
			db := openDatabase()
			legacify(t, db, dataDir, requestIDs)
			if dsn != "" {
				// The plain rows reach the data files, as they had on a
				// deployment of that version, and not only the
				// write-ahead log (whose pages may also split a value
				// the scan looks for).
				if err := db.ReadWrite(context.Background(), func(ctx context.Context, tx sqldb.Tx) error {
					_, err := tx.Exec(ctx, "CHECKPOINT")
					return err
				}); err != nil {
					t.Fatalf("CHECKPOINT: %v", err)
				}
			}
			db.Close()
			if found := scanFiles(t, []string{atRestRequest, atRestDirective, atRestDocument}, scanDirs...); len(found) != 3 {
				t.Fatalf("the database made as the earlier version holds in clear only %v: the scan cannot see what it looks for", found)
			}

			release := func() {}
			if dsn != "" {
				release = holdOtherWriter(t, dsn)
			}
			e = startE2EAt(t, dataDir, args...)
			release()
			access := vigiev1.NewAccessServiceClient(e.conn)
			again, err := access.Check(e.as(auth.RoleService, "hospital-his", e2eHospital), checkRequest(atRestRequest))
			if err != nil || again.Event.LeafIndex != firstIndex {
				t.Errorf("retry after the migration = %v, %v; want the first answer (leaf %d)", again, err, firstIndex)
			}
			c, err := vigiev1.NewConsentServiceClient(e.conn).GetConsent(e.as(auth.RolePatient, e2ePatient), &vigiev1.GetConsentRequest{})
			if err != nil || len(c.Directives) != 2 || c.Directives[0].GetHideDocument().GetDocumentId() != atRestDocument {
				t.Errorf("consent after the migration = %v, %v", c, err)
			}
			// The events are found by their organization (ledger/3 renamed
			// the column and its index).
			found, err := vigiev1.NewAuditServiceClient(e.conn).SearchEvents(e.as(auth.RoleDPO, "dpo-a", e2eHospital), &vigiev1.SearchEventsRequest{Organization: e2eHospital, Kind: vigiev1.EventKind_EVENT_KIND_ACCESS})
			if err != nil || len(found.GetEvents()) != 3 {
				t.Errorf("a DPO's search by organization after the migration = %d events, %v; want the run's 3 accesses", len(found.GetEvents()), err)
			}
			stop(t, e)
			settle()
			if found := scanFiles(t, atRestSecrets, scanDirs...); len(found) > 0 {
				t.Errorf("after the migration, in clear in the files: %v %s", found, relationsOf(t, dsn, found))
			}
			if dsn != "" {
				checkLiveRows(t, dsn, atRestSecrets)
			}
		})
	}
}

// holdOtherWriter opens, in another database of the test cluster, a
// transaction that has a transaction id, as another application's (or
// another package's test's) may be open while a node converts: VACUUM
// FULL's own snapshot sees it as running, and kept the rows it replaced
// in the rewritten files while it ran. The transaction ends once the
// conversion of the database at dsn has recorded its compaction, or after
// a few seconds (a conversion that waits, as it must, records it only
// after). The returned function waits for that end.
func holdOtherWriter(t *testing.T, dsn string) func() {
	t.Helper()
	ctx := context.Background()
	other, err := pgx.Connect(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := other.Begin(ctx)
	if err != nil {
		other.Close(ctx)
		t.Fatal(err)
	}
	var xid int64
	if err := tx.QueryRow(ctx, "SELECT txid_current()").Scan(&xid); err != nil {
		other.Close(ctx)
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		defer other.Close(ctx)
		watch, err := pgx.Connect(ctx, dsn)
		if err != nil {
			done <- err
			return
		}
		defer watch.Close(ctx)
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			var n int
			if err := watch.QueryRow(ctx, "SELECT count(*) FROM ledger_meta WHERE name = 'plaintext-compacted'").Scan(&n); err != nil {
				done <- err
				return
			}
			if n > 0 {
				break
			}
		}
		done <- tx.Commit(ctx)
	}()
	return func() {
		t.Helper()
		if err := <-done; err != nil {
			t.Errorf("the other database's transaction: %v", err)
		}
	}
}

// relationsOf names the PostgreSQL relations whose files hold what the
// scan found, and where in them: the block, the page's LSN and, in a heap
// page, the line pointer and the tuple's xmin and xmax (for the failure
// message).
func relationsOf(t *testing.T, dsn string, found map[string][]string) string {
	if dsn == "" {
		return ""
	}
	db, err := sqldb.OpenPostgres(context.Background(), dsn, sqldb.Options{})
	if err != nil {
		return err.Error()
	}
	defer db.Close()
	inFile := map[string][]string{}
	for secret, files := range found {
		for _, f := range files {
			inFile[f] = append(inFile[f], secret)
		}
	}
	var names []string
	for _, f := range slices.Sorted(maps.Keys(inFile)) {
		node, err := strconv.ParseInt(strings.SplitN(filepath.Base(f), ".", 2)[0], 10, 64)
		if err != nil {
			names = append(names, f)
			continue
		}
		var name string
		err = db.Read(context.Background(), func(ctx context.Context, tx sqldb.Tx) error {
			return tx.QueryRow(ctx, `SELECT coalesce((SELECT c.oid::regclass::text || ' (kind ' || c.relkind::text || ', ' || pg_relation_size(c.oid) / 8192 || ' pages)'
				FROM pg_class c WHERE c.oid = pg_filenode_relation(0, $1::oid)), 'no relation') || ' of database ' || (SELECT oid FROM pg_database WHERE datname = current_database())`, node).Scan(&name)
		})
		if err != nil {
			name = err.Error()
		}
		names = append(names, f+": "+name+" "+pageDetails(f, inFile[f]))
	}
	return strings.Join(names, "; ")
}

// pageDetails says where in file f each of secrets is: the file's size
// and modification time, and for each occurrence the block, the page's
// LSN and, if the page's item pointers point at it, the item and, in a
// heap page, its tuple header.
func pageDetails(f string, secrets []string) string {
	b, err := os.ReadFile(f)
	if err != nil {
		return err.Error()
	}
	st, err := os.Stat(f)
	if err != nil {
		return err.Error()
	}
	le := binary.LittleEndian
	out := fmt.Sprintf("[size %d, modified %s]", len(b), st.ModTime().UTC().Format("15:04:05.000"))
	for _, secret := range slices.Sorted(slices.Values(secrets)) {
		for off := 0; ; {
			i := bytes.Index(b[off:], []byte(secret))
			if i < 0 {
				break
			}
			at := off + i
			off = at + 1
			const pageSize = 8192
			blk := at / pageSize
			if (blk+1)*pageSize > len(b) {
				out += fmt.Sprintf(" %s @%d (not in a whole page)", secret, at)
				continue
			}
			p := b[blk*pageSize : (blk+1)*pageSize]
			lower, special := int(le.Uint16(p[12:])), int(le.Uint16(p[16:]))
			out += fmt.Sprintf(" %s @%d: block %d, lsn %X/%X, special %d,", secret, at, blk, le.Uint32(p[0:]), le.Uint32(p[4:]), special)
			in := at - blk*pageSize
			item := " in no item"
			for j := 24; j+4 <= lower && j+4 <= pageSize; j += 4 {
				lp := le.Uint32(p[j:])
				lpOff, lpFlags, lpLen := int(lp&0x7fff), (lp>>15)&3, int(lp>>17)
				if lpOff <= in && in < lpOff+lpLen {
					item = fmt.Sprintf(" in item %d (flags %d)", (j-24)/4+1, lpFlags)
					if special == pageSize && lpOff+24 <= pageSize {
						h := p[lpOff:]
						item += fmt.Sprintf(", xmin %d, xmax %d, infomask %#x", le.Uint32(h[0:]), le.Uint32(h[4:]), le.Uint16(h[20:]))
					}
				}
			}
			out += item
		}
	}
	return out
}

// checkLiveRows fails if a live row of the converted tables, or a
// statistic the planner keeps of them, holds one of secrets in clear.
func checkLiveRows(t *testing.T, dsn string, secrets []string) {
	t.Helper()
	db, err := sqldb.OpenPostgres(context.Background(), dsn, sqldb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var texts []string
	err = db.Read(context.Background(), func(ctx context.Context, tx sqldb.Tx) error {
		texts = texts[:0]
		for _, q := range []string{
			"SELECT encode(consent, 'escape') FROM consents",
			"SELECT coalesce(most_common_vals::text, '') || coalesce(histogram_bounds::text, '') FROM pg_stats WHERE tablename IN ('consents', 'events')",
		} {
			rows, err := tx.Query(ctx, q)
			if err != nil {
				return err
			}
			for rows.Next() {
				var s string
				if err := rows.Scan(&s); err != nil {
					rows.Close()
					return err
				}
				texts = append(texts, s)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(texts) == 0 {
		t.Fatal("no consent row read: the check proves nothing")
	}
	for _, s := range texts {
		for _, secret := range secrets {
			if strings.Contains(s, secret) {
				t.Errorf("after the migration, a live row or statistic holds %s in clear", secret)
			}
		}
	}
}
