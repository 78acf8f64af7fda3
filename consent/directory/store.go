package directory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// schema is the same on SQLite and PostgreSQL. Each directory's rows
// belong to a generation; directory_state names the generation in force.
// An import writes a new generation beside the one in force, in batches
// (so that it never holds SQLite's one writer for long), then switches
// to it in one small transaction and deletes the old rows: readers see
// the old directory or the new one, never a mix.
const schema = `
CREATE TABLE directory_state (
	directory TEXT PRIMARY KEY,
	generation BIGINT NOT NULL,
	next_generation BIGINT NOT NULL,
	entries BIGINT NOT NULL,
	imported_nanos BIGINT NOT NULL
);
CREATE TABLE directory_professionals (
	generation BIGINT NOT NULL,
	rpps TEXT NOT NULL,
	title TEXT NOT NULL,
	name TEXT NOT NULL,
	surname TEXT NOT NULL,
	profession TEXT NOT NULL,
	specialty TEXT NOT NULL,
	search TEXT NOT NULL,
	PRIMARY KEY (generation, rpps)
);
CREATE INDEX directory_professionals_search ON directory_professionals (generation, search);
CREATE TABLE directory_establishments (
	generation BIGINT NOT NULL,
	finess TEXT NOT NULL,
	name TEXT NOT NULL,
	town TEXT NOT NULL,
	PRIMARY KEY (generation, finess)
);
INSERT INTO directory_state (directory, generation, next_generation, entries, imported_nanos) VALUES ('rpps', 0, 1, 0, 0);
INSERT INTO directory_state (directory, generation, next_generation, entries, imported_nanos) VALUES ('finess', 0, 1, 0, 0);
`

// Migrations are the directory's tables, applied by ledgersql.Open with
// the rest of Vigie's database.
var Migrations = []sqldb.Migration{{Name: "directory/1", SQLite: schema, PostgreSQL: schema}}

// MaxLookup is the most numbers of each kind that Lookup resolves in one
// call.
const MaxLookup = 500

// Store is the directories on Vigie's database. It is safe for concurrent
// use.
type Store struct {
	db  *sqldb.DB
	now func() time.Time
}

// New returns the directories on db, whose schema includes Migrations.
func New(db *sqldb.DB) *Store { return &Store{db: db, now: time.Now} }

// Files are the extracts an import reads; a nil one leaves its directory
// as it is. Open is called again if the import must start over.
type Files struct {
	RPPS   func() (io.ReadCloser, error)
	FINESS func() (io.ReadCloser, error)
}

// Report is what an import did.
type Report struct {
	// Professionals and Establishments are the entries now in force in
	// the directories imported (distinct numbers).
	Professionals, Establishments int
	// SkippedNotRPPS counts the RPPS extract's lines of professionals
	// known by an ADELI number only.
	SkippedNotRPPS int
	// BadLines counts the lines not imported; Bad lists the first
	// MaxBadReported of them, by file, line and field.
	BadLines int
	Bad      []FileLineError
}

// FileLineError is a LineError of one of the files.
type FileLineError struct {
	File string // "rpps" or "finess"
	LineError
}

// MaxBadReported is the most bad lines a Report lists.
const MaxBadReported = 100

// batchRows is how many rows one transaction of an import writes.
const batchRows = 20000

// errConcurrent: another import replaced the directory during this one.
var errConcurrent = errors.New("directory: another import ran at the same time; run it again")

func tableOf(dir string) string {
	if dir == "finess" {
		return "directory_establishments"
	}
	return "directory_professionals"
}

// ErrEmpty is returned, wrapped, when a file yields no entry: an import
// never replaces a directory with an empty one. Callers test for it with
// errors.Is.
var ErrEmpty = errors.New("directory: no entry in the file")

// Import reads the files given and replaces their directories with what
// they hold, atomically: readers see the directories as they were until
// Import switches to the new ones, all together, in one transaction. If
// any file is not in its published format or yields no entry, nothing is
// replaced. Bad lines are counted and skipped. Of two imports running at
// once, one may fail, asking to be run again; neither leaves a mix.
func (s *Store) Import(ctx context.Context, files Files) (Report, error) {
	var rep Report
	gens := map[string]int64{}
	if files.RPPS != nil {
		g, n, skipped, err := s.importOne(ctx, "rpps", files.RPPS, &rep)
		if err != nil {
			return rep, fmt.Errorf("RPPS extract: %w", err)
		}
		gens["rpps"], rep.Professionals, rep.SkippedNotRPPS = g, n, skipped
	}
	if files.FINESS != nil {
		g, n, _, err := s.importOne(ctx, "finess", files.FINESS, &rep)
		if err != nil {
			return rep, fmt.Errorf("FINESS extract: %w", err)
		}
		gens["finess"], rep.Establishments = g, n
	}
	if len(gens) == 0 {
		return rep, nil
	}
	now := s.now().UnixNano()
	err := s.db.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		for dir, g := range gens {
			n := rep.Professionals
			if dir == "finess" {
				n = rep.Establishments
			}
			// A later import that started meanwhile deletes earlier
			// generations: switch only to a whole one, and never back.
			var have int
			if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM "+tableOf(dir)+" WHERE generation = $1", g).Scan(&have); err != nil {
				return err
			}
			if have != n {
				return errConcurrent
			}
			changed, err := tx.Exec(ctx, "UPDATE directory_state SET generation = $1, entries = $2, imported_nanos = $3 WHERE directory = $4 AND generation < $1",
				g, n, now, dir)
			if err != nil {
				return err
			}
			if changed != 1 {
				return errConcurrent
			}
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("directory: switch to the new directories: %w", err)
	}
	for dir, g := range gens {
		if err := s.deleteOld(ctx, dir, g); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// importOne writes a new generation of one directory and returns it, with
// the number of distinct entries written.
func (s *Store) importOne(ctx context.Context, dir string, open func() (io.ReadCloser, error), rep *Report) (gen int64, n, skipped int, err error) {
	// Claim a generation number of our own (compare-and-swap: two
	// imports at once never write under the same one), then drop what
	// interrupted imports left under earlier ones.
	err = s.db.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		if err := tx.QueryRow(ctx, "SELECT next_generation FROM directory_state WHERE directory = $1", dir).Scan(&gen); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "UPDATE directory_state SET next_generation = $1 WHERE directory = $2 AND next_generation = $3", gen+1, dir, gen)
		return err
	})
	if err != nil {
		return 0, 0, 0, fmt.Errorf("claim a generation: %w", err)
	}
	if err := s.deleteOld(ctx, dir, gen); err != nil {
		return 0, 0, 0, err
	}

	f, err := open()
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	w := &batchWriter{s: s, dir: dir, gen: gen}
	bad := func(e LineError) {
		rep.BadLines++
		if len(rep.Bad) < MaxBadReported {
			rep.Bad = append(rep.Bad, FileLineError{dir, e})
		}
	}
	if dir == "rpps" {
		skipped, err = ParseRPPS(f, func(p Professional) error { return w.add(ctx, professionalRow(gen, p)) }, bad)
	} else {
		err = ParseFINESS(f, func(e Establishment) error { return w.add(ctx, []any{gen, e.FINESS.String(), e.Name, e.Town}) }, bad)
	}
	if err == nil {
		err = w.flush(ctx)
	}
	if err != nil {
		return 0, 0, 0, err
	}
	err = s.db.Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		return tx.QueryRow(ctx, "SELECT COUNT(*) FROM "+tableOf(dir)+" WHERE generation = $1", gen).Scan(&n)
	})
	if err != nil {
		return 0, 0, 0, err
	}
	if n == 0 {
		return 0, 0, 0, ErrEmpty
	}
	return gen, n, skipped, nil
}

func professionalRow(gen int64, p Professional) []any {
	first := strings.TrimSpace(strings.TrimSuffix(p.Name, p.Surname))
	return []any{gen, p.RPPS.String(), p.Title, p.Name, p.Surname, p.Profession, p.Specialty, SearchKey(p.Surname + " " + first)}
}

// batchWriter inserts rows of one generation, batchRows per transaction,
// in statements of a few hundred rows.
type batchWriter struct {
	s    *Store
	dir  string
	gen  int64
	rows [][]any
	// at is the index in rows of each number of the batch: a number comes
	// once per statement (PostgreSQL's ON CONFLICT refuses to change a
	// row twice), merged as the statement's ON CONFLICT clause would.
	at map[any]int
}

func (w *batchWriter) add(ctx context.Context, row []any) error {
	if w.at == nil {
		w.at = make(map[any]int, batchRows)
	}
	if i, dup := w.at[row[1]]; dup {
		if w.dir == "rpps" && w.rows[i][6] == "" {
			w.rows[i][6] = row[6]
		}
		return nil
	}
	w.at[row[1]] = len(w.rows)
	w.rows = append(w.rows, row)
	if len(w.rows) >= batchRows {
		return w.flush(ctx)
	}
	return nil
}

// rowsPerStatement keeps a statement's parameters well under SQLite's
// limit (32766).
const rowsPerStatement = 16

func (w *batchWriter) flush(ctx context.Context) error {
	if len(w.rows) == 0 {
		return nil
	}
	rows := w.rows
	err := w.s.db.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		for start := 0; start < len(rows); start += rowsPerStatement {
			chunk := rows[start:min(start+rowsPerStatement, len(rows))]
			query, args := w.insert(chunk)
			if _, err := tx.Exec(ctx, query, args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write entries: %w", err)
	}
	w.rows = w.rows[:0]
	clear(w.at)
	return nil
}

// insert builds one INSERT of rows. A professional with several
// activities comes several times: the first line wins, but a specialty
// from a later line fills an empty one.
func (w *batchWriter) insert(rows [][]any) (string, []any) {
	var b strings.Builder
	var cols, conflict string
	if w.dir == "rpps" {
		cols = "directory_professionals (generation, rpps, title, name, surname, profession, specialty, search)"
		conflict = " ON CONFLICT (generation, rpps) DO UPDATE SET specialty = excluded.specialty WHERE directory_professionals.specialty = ''"
	} else {
		cols = "directory_establishments (generation, finess, name, town)"
		conflict = " ON CONFLICT (generation, finess) DO NOTHING"
	}
	b.WriteString("INSERT INTO " + cols + " VALUES ")
	args := make([]any, 0, len(rows)*len(rows[0]))
	for n, r := range rows {
		if n > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(")
		for i := range r {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "$%d", len(args)+1)
			args = append(args, r[i])
		}
		b.WriteString(")")
	}
	b.WriteString(conflict)
	return b.String(), args
}

// deleteOld deletes, in batches, the rows of dir's generations below
// limit but the one in force: earlier directories, and what interrupted
// imports left.
func (s *Store) deleteOld(ctx context.Context, dir string, limit int64) error {
	table, key := "directory_professionals", "rpps"
	if dir == "finess" {
		table, key = "directory_establishments", "finess"
	}
	for {
		var deleted int64
		err := s.db.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
			var cur int64
			if err := tx.QueryRow(ctx, "SELECT generation FROM directory_state WHERE directory = $1", dir).Scan(&cur); err != nil {
				return err
			}
			var err error
			deleted, err = tx.Exec(ctx, "DELETE FROM "+table+" WHERE generation <> $1 AND generation < $2 AND "+key+" IN "+
				"(SELECT "+key+" FROM "+table+" WHERE generation <> $1 AND generation < $2 LIMIT 20000)", cur, limit)
			return err
		})
		if err != nil {
			return fmt.Errorf("directory: delete the old %s directory: %w", dir, err)
		}
		if deleted == 0 {
			return nil
		}
	}
}

// Lookup returns the professionals and establishments of the numbers
// given that the directories in force hold; a number they do not hold is
// absent from the maps (not an error). At most MaxLookup numbers of each
// kind.
func (s *Store) Lookup(ctx context.Context, rpps []ident.RPPS, finess []ident.FINESS) (map[ident.RPPS]Professional, map[ident.FINESS]Establishment, error) {
	if len(rpps) > MaxLookup || len(finess) > MaxLookup {
		return nil, nil, fmt.Errorf("directory: more than %d numbers", MaxLookup)
	}
	pros := map[ident.RPPS]Professional{}
	ests := map[ident.FINESS]Establishment{}
	err := s.db.Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		clear(pros)
		clear(ests)
		if len(rpps) > 0 {
			args := make([]any, len(rpps))
			for i, r := range rpps {
				args[i] = r.String()
			}
			rows, err := tx.Query(ctx, "SELECT p.rpps, p.title, p.name, p.surname, p.profession, p.specialty FROM directory_professionals p "+
				"JOIN directory_state s ON s.directory = 'rpps' AND p.generation = s.generation WHERE p.rpps IN ("+placeholders(len(args))+")", args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var num string
				var p Professional
				if err := rows.Scan(&num, &p.Title, &p.Name, &p.Surname, &p.Profession, &p.Specialty); err != nil {
					return err
				}
				if p.RPPS, err = ident.ParseRPPS(num); err != nil {
					return fmt.Errorf("stored RPPS number: %w", err)
				}
				pros[p.RPPS] = p
			}
			if err := rows.Err(); err != nil {
				return err
			}
			rows.Close()
		}
		if len(finess) > 0 {
			args := make([]any, len(finess))
			for i, f := range finess {
				args[i] = f.String()
			}
			rows, err := tx.Query(ctx, "SELECT e.finess, e.name, e.town FROM directory_establishments e "+
				"JOIN directory_state s ON s.directory = 'finess' AND e.generation = s.generation WHERE e.finess IN ("+placeholders(len(args))+")", args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var num string
				var e Establishment
				if err := rows.Scan(&num, &e.Name, &e.Town); err != nil {
					return err
				}
				if e.FINESS, err = ident.ParseFINESS(num); err != nil {
					return fmt.Errorf("stored FINESS number: %w", err)
				}
				ests[e.FINESS] = e
			}
			return rows.Err()
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("directory: lookup: %w", err)
	}
	return pros, ests, nil
}

// MaxSearch is the most entries Search returns.
const MaxSearch = 20

// Search returns at most limit (1 to MaxSearch) professionals of the
// directory in force whose name starts with the words of name (surname
// first, or first name first), compared by SearchKey, in the order of
// their search keys.
func (s *Store) Search(ctx context.Context, name string, limit int) ([]Professional, error) {
	if limit < 1 || limit > MaxSearch {
		return nil, fmt.Errorf("directory: search limit %d outside 1 to %d", limit, MaxSearch)
	}
	q := SearchKey(name)
	if q == "" {
		return nil, nil
	}
	keys := []string{q}
	if words := strings.Fields(q); len(words) > 1 {
		// "claire lefèvre": the first name first.
		keys = append(keys, strings.Join(append(words[1:], words[0]), " "))
	}
	type hit struct {
		p   Professional
		key string
	}
	var out []hit
	err := s.db.Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		out = out[:0]
		seen := map[string]bool{}
		for _, k := range keys {
			// A range on the index, then the prefix itself: the keys are
			// upper-case ASCII, and the range holds every key starting with
			// k under any collation that orders letters alphabetically.
			upper := k[:len(k)-1] + string(k[len(k)-1]+1)
			rows, err := tx.Query(ctx, "SELECT p.rpps, p.title, p.name, p.surname, p.profession, p.specialty, p.search FROM directory_professionals p "+
				"JOIN directory_state s ON s.directory = 'rpps' AND p.generation = s.generation "+
				"WHERE p.search >= $1 AND p.search < $2 AND substr(p.search, 1, $3) = $1 ORDER BY p.search, p.rpps LIMIT $4",
				k, upper, len(k), limit)
			if err != nil {
				return err
			}
			for rows.Next() {
				var num string
				var h hit
				if err := rows.Scan(&num, &h.p.Title, &h.p.Name, &h.p.Surname, &h.p.Profession, &h.p.Specialty, &h.key); err != nil {
					rows.Close()
					return err
				}
				if seen[num] {
					continue
				}
				seen[num] = true
				if h.p.RPPS, err = ident.ParseRPPS(num); err != nil {
					rows.Close()
					return fmt.Errorf("stored RPPS number: %w", err)
				}
				out = append(out, h)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("directory: search: %w", err)
	}
	// Both orders' results, by search key, at most limit.
	slices.SortStableFunc(out, func(a, b hit) int { return strings.Compare(a.key, b.key) })
	pros := make([]Professional, 0, min(len(out), limit))
	for _, h := range out[:min(len(out), limit)] {
		pros = append(pros, h.p)
	}
	return pros, nil
}

func placeholders(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		if i > 1 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", i)
	}
	return b.String()
}

// SearchKey is the form of a name that searches compare: upper case,
// without accents, hyphens or apostrophes, single spaces.
func SearchKey(name string) string {
	var b strings.Builder
	space := true
	for _, r := range strings.ToUpper(name) {
		var out string
		switch {
		case r >= 'A' && r <= 'Z' || r >= '0' && r <= '9':
			out = string(r)
		case strings.ContainsRune("ÀÂÄÁÃÅ", r):
			out = "A"
		case r == 'Ç':
			out = "C"
		case strings.ContainsRune("ÉÈÊË", r):
			out = "E"
		case strings.ContainsRune("ÎÏÍÌ", r):
			out = "I"
		case strings.ContainsRune("ÔÖÓÒÕ", r):
			out = "O"
		case strings.ContainsRune("ÙÛÜÚ", r):
			out = "U"
		case r == 'Ÿ':
			out = "Y"
		case r == 'Œ':
			out = "OE"
		case r == 'Æ':
			out = "AE"
		default:
			if !space {
				b.WriteByte(' ')
				space = true
			}
			continue
		}
		b.WriteString(out)
		space = false
	}
	return strings.TrimSuffix(b.String(), " ")
}
