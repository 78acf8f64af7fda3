package directory_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent/directory"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/ledger/ledgersql"
	"github.com/vigie-sante/vigie/ledger/sqldb"
	"github.com/vigie-sante/vigie/ledger/sqldb/pgtest"
)

const (
	rppsTestFile   = "testdata/PS_LibreAcces_Personne_activite_test.txt"
	finessTestFile = "testdata/etalab-cs1100507-stock-test.csv"
)

// engines runs f on SQLite and on PostgreSQL.
func engines(t *testing.T, f func(t *testing.T, db *sqldb.DB)) {
	t.Run("SQLite", func(t *testing.T) { f(t, open(t, ledgersql.DBConfig{SQLite: filepath.Join(t.TempDir(), "vigie.db")})) })
	t.Run("PostgreSQL", func(t *testing.T) { f(t, open(t, ledgersql.DBConfig{PostgreSQL: pgtest.NewDatabase(t)})) })
}

// open opens Vigie's database with the directory's tables, as a node does.
func open(t testing.TB, cfg ledgersql.DBConfig) *sqldb.DB {
	cfg.Also = directory.Migrations
	db, _, err := ledgersql.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func file(name string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return os.Open(name) }
}

func text(s string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(s)), nil }
}

var (
	claire  = ident.MustParseRPPS("10000000003")
	jean    = ident.MustParseRPPS("10000000011")
	elodie  = ident.MustParseRPPS("10000000045")
	absent  = ident.MustParseRPPS("19999999999")
	nord    = ident.MustParseFINESS("750000010")
	lyon    = ident.MustParseFINESS("690000021")
	nowhere = ident.MustParseFINESS("750712184")
)

func TestImportAndLookup(t *testing.T) {
	engines(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := directory.New(db)
		// Before any import: every number is missing, none is an error.
		pros, ests, err := s.Lookup(ctx, []ident.RPPS{claire}, []ident.FINESS{nord})
		if err != nil || len(pros) != 0 || len(ests) != 0 {
			t.Fatalf("Lookup before import = %v, %v, %v; want empty maps", pros, ests, err)
		}

		rep, err := s.Import(ctx, directory.Files{RPPS: file(rppsTestFile), FINESS: file(finessTestFile)})
		if err != nil {
			t.Fatalf("Import: %v", err)
		}
		if rep.Professionals != 3 || rep.Establishments != 3 || rep.SkippedNotRPPS != 1 || rep.BadLines != 7 || len(rep.Bad) != 7 {
			t.Errorf("report = %+v, want 3 professionals, 3 establishments, 1 skipped, 7 bad lines", rep)
		}
		if b := rep.Bad[0]; b.File != "rpps" || b.Line != 7 || b.Field != "Identifiant PP" {
			t.Errorf("first bad line = %+v, want rpps line 7 field Identifiant PP", b)
		}

		pros, ests, err = s.Lookup(ctx, []ident.RPPS{claire, jean, absent}, []ident.FINESS{nord, lyon, nowhere})
		if err != nil {
			t.Fatal(err)
		}
		// The first activity's line wins; a later one fills an empty
		// specialty.
		if p := pros[claire]; p.Name != "CLAIRE LEFÈVRE" || p.Title != "Docteur" || p.Profession != "Médecin" || p.Specialty != "Médecine générale" {
			t.Errorf("Lookup(claire) = %+v", p)
		}
		if p := pros[jean]; p.Specialty != "Infirmier de bloc opératoire" {
			t.Errorf("Lookup(jean).Specialty = %q, want the second line's", p.Specialty)
		}
		if _, ok := pros[absent]; ok || len(pros) != 2 {
			t.Errorf("Lookup: %d professionals, want 2 (the absent one missing)", len(pros))
		}
		if e := ests[lyon]; e.Name != "CLINIQUE ESSAI" || e.Town != "LYON" {
			t.Errorf("Lookup(lyon) = %+v", e)
		}
		if _, ok := ests[nowhere]; ok || len(ests) != 2 {
			t.Errorf("Lookup: %d establishments, want 2", len(ests))
		}

		// A refresh replaces the whole directory: Claire is gone, Élodie
		// stays; the FINESS directory, not given, is unchanged.
		header, _, _ := strings.Cut(mustRead(t, rppsTestFile), "\r\n")
		elodieOnly := header + "\n" + lineOf(t, rppsTestFile, "ÉLODIE") + "\n"
		if _, err := s.Import(ctx, directory.Files{RPPS: text(elodieOnly)}); err != nil {
			t.Fatal(err)
		}
		pros, ests, err = s.Lookup(ctx, []ident.RPPS{claire, elodie}, []ident.FINESS{nord})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := pros[claire]; ok || pros[elodie].Name != "ÉLODIE ŒILLET" || ests[nord].Name == "" {
			t.Errorf("after refresh: %v, %v", pros, ests)
		}
		var rows int
		if err := db.Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
			return tx.QueryRow(ctx, "SELECT COUNT(*) FROM directory_professionals").Scan(&rows)
		}); err != nil {
			t.Fatal(err)
		}
		if rows != 1 {
			t.Errorf("%d rows of professionals after refresh, want 1 (the old generation deleted)", rows)
		}
	})
}

// TestImportRefusedChangesNothing: a file not in its format, or without
// any entry, replaces nothing, the other file's directory included.
func TestImportRefusedChangesNothing(t *testing.T) {
	engines(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := directory.New(db)
		if _, err := s.Import(ctx, directory.Files{RPPS: file(rppsTestFile), FINESS: file(finessTestFile)}); err != nil {
			t.Fatal(err)
		}
		header, _, _ := strings.Cut(mustRead(t, rppsTestFile), "\r\n")
		for _, c := range []struct {
			name  string
			files directory.Files
			want  error
		}{
			{"FINESS not in format", directory.Files{RPPS: text(header + "\n" + lineOf(t, rppsTestFile, "ÉLODIE") + "\n"), FINESS: text("nofinesset;rs\n")}, directory.ErrFormat},
			{"RPPS with no entry", directory.Files{RPPS: text(header + "\n"), FINESS: file(finessTestFile)}, directory.ErrEmpty},
			{"RPPS not in format", directory.Files{RPPS: file(finessTestFile), FINESS: file(finessTestFile)}, directory.ErrFormat},
			{"FINESS only, not in format", directory.Files{FINESS: text("nofinesset;rs\n")}, directory.ErrFormat},
		} {
			t.Run(c.name, func(t *testing.T) {
				if _, err := s.Import(ctx, c.files); !errors.Is(err, c.want) {
					t.Fatalf("Import: %v, want %v", err, c.want)
				}
				pros, ests, err := s.Lookup(ctx, []ident.RPPS{claire}, []ident.FINESS{nord})
				if err != nil || pros[claire].Name == "" || ests[nord].Name == "" {
					t.Errorf("after a refused import: %v, %v, %v; want the directories as they were", pros, ests, err)
				}
			})
		}
	})
}

func TestLookupBounded(t *testing.T) {
	engines(t, func(t *testing.T, db *sqldb.DB) {
		many := make([]ident.RPPS, directory.MaxLookup+1)
		for i := range many {
			many[i] = ident.MustParseRPPS(fmt.Sprintf("1%010d", i))
		}
		if _, _, err := directory.New(db).Lookup(context.Background(), many, nil); err == nil {
			t.Errorf("Lookup of %d numbers succeeded, want an error", len(many))
		}
	})
}

func mustRead(t testing.TB, name string) string {
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func lineOf(t testing.TB, name, substr string) string {
	for _, l := range strings.Split(mustRead(t, name), "\r\n") {
		if strings.Contains(l, substr) {
			return l
		}
	}
	t.Fatalf("%s has no line with %q", name, substr)
	return ""
}

// generatedRPPS is an RPPS extract of n lines in the published format,
// generated as it is read: the header, then one line per activity, a
// third of the professionals with a second activity.
type generatedRPPS struct {
	header string
	n, i   int
	buf    []byte
}

func (g *generatedRPPS) Read(p []byte) (int, error) {
	for len(g.buf) < len(p) && g.i <= g.n {
		if g.i == 0 {
			g.buf = append(g.buf, g.header...)
			g.buf = append(g.buf, "\r\n"...)
		} else {
			person := g.i - g.i/3
			g.buf = fmt.Appendf(g.buf, "8|1%010d|81%010d|DR|Docteur|M|Monsieur|NOM%d|PRENOM%d|10|Médecin|C|Civil|S|Spécialité ordinale|SM54|Médecine générale|S|Salarié|||||R%d|CABINET %d||||12||R|Rue|DES ESSAIS|||75013|75113|PARIS|||||||75|Paris||CNOM/CNOM/CNOM|SA07|Cabinet individuel|||FON-01|Titulaire de cabinet|GENR01|Activité standard de soin|\r\n",
				person, person, person, person, person, person)
		}
		g.i++
	}
	if len(g.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

// BenchmarkImportRPPS imports a generated RPPS extract the size of the
// real one (about 2 million lines; VIGIE_DIRECTORY_BENCH_LINES changes
// it) on SQLite, and reports the time, the lines per second and the
// process's peak resident memory.
func BenchmarkImportRPPS(b *testing.B) {
	lines := 2_000_000
	if v := os.Getenv("VIGIE_DIRECTORY_BENCH_LINES"); v != "" {
		fmt.Sscan(v, &lines)
	}
	header, _, _ := strings.Cut(mustRead(b, rppsTestFile), "\r\n")
	for b.Loop() {
		b.StopTimer()
		db := open(b, ledgersql.DBConfig{SQLite: filepath.Join(b.TempDir(), "vigie.db")})
		runtime.GC()
		b.StartTimer()
		start := time.Now()
		rep, err := directory.New(db).Import(context.Background(), directory.Files{RPPS: func() (io.ReadCloser, error) {
			return io.NopCloser(&generatedRPPS{header: header, n: lines}), nil
		}})
		if err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		if want := lines - lines/3; rep.Professionals < want-1 || rep.BadLines != 0 {
			b.Fatalf("report %+v, want about %d professionals and no bad line", rep, want)
		}
		b.ReportMetric(float64(lines)/elapsed.Seconds(), "lines/s")
		b.StartTimer()
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB")
	}
}

func TestSearch(t *testing.T) {
	engines(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := directory.New(db)
		if _, err := s.Import(ctx, directory.Files{RPPS: file(rppsTestFile)}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			query string
			want  []ident.RPPS
		}{
			{"lefevre", []ident.RPPS{claire}},
			{"Lefèvre Cl", []ident.RPPS{claire}},
			{"claire lefèvre", []ident.RPPS{claire}},
			{"n'guyen", []ident.RPPS{jean}},
			{"nguyen", nil},
			{"oeil", []ident.RPPS{elodie}},
			{"claire", nil},
			{"zz", nil},
		} {
			got, err := s.Search(ctx, c.query, 10)
			if err != nil {
				t.Fatalf("Search(%q): %v", c.query, err)
			}
			var nums []ident.RPPS
			for _, p := range got {
				nums = append(nums, p.RPPS)
			}
			if fmt.Sprint(nums) != fmt.Sprint(c.want) {
				t.Errorf("Search(%q) = %v, want %v", c.query, nums, c.want)
			}
		}
		if got, _ := s.Search(ctx, "lefevre", 1); len(got) != 1 || got[0].Name != "CLAIRE LEFÈVRE" || got[0].Specialty != "Médecine générale" {
			t.Errorf("Search(lefevre) = %+v", got)
		}
		if _, err := s.Search(ctx, "lefevre", directory.MaxSearch+1); err == nil {
			t.Errorf("Search beyond MaxSearch succeeded")
		}
	})
}
