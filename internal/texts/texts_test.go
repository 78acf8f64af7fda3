package texts

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
)

// TestCatalogueWhole: every entry has both languages, with the same
// placeholders, and catalogue.json is in its one form (sorted, one entry
// a line), so that a change is a one-line diff.
func TestCatalogueWhole(t *testing.T) {
	if len(catalogue) < 100 {
		t.Fatalf("catalogue has %d entries", len(catalogue))
	}
	for _, id := range IDs() {
		tx := catalogue[id]
		if tx.FR == "" || tx.EN == "" {
			t.Errorf("%s: fr %q, en %q: both are required", id, tx.FR, tx.EN)
		}
		if fr, en := Placeholders(tx.FR), Placeholders(tx.EN); !slices.Equal(fr, en) {
			t.Errorf("%s: placeholders fr %v, en %v", id, fr, en)
		}
	}
	var want bytes.Buffer
	want.WriteString("{\n")
	for i, id := range IDs() {
		k, _ := json.Marshal(id)
		v, _ := json.Marshal(catalogue[id])
		v = bytes.Replace(bytes.Replace(v, []byte(`{"fr":`), []byte(`{"fr": `), 1), []byte(`,"en":`), []byte(`, "en": `), 1)
		want.Write(k)
		want.WriteString(": ")
		want.Write(v)
		if i < len(catalogue)-1 {
			want.WriteString(",")
		}
		want.WriteString("\n")
	}
	want.WriteString("}\n")
	if !bytes.Equal(decodeHTML(want.Bytes()), catalogueJSON) {
		t.Errorf("catalogue.json is not sorted with one entry a line")
	}
}

// decodeHTML undoes json.Marshal's escaping of <, > and &, which the file
// does not use.
func decodeHTML(b []byte) []byte {
	for _, r := range [][2]string{{`\u003c`, "<"}, {`\u003e`, ">"}, {`\u0026`, "&"}} {
		b = bytes.ReplaceAll(b, []byte(r[0]), []byte(r[1]))
	}
	return b
}

func TestFormat(t *testing.T) {
	catalogue["test.plural"] = Text{FR: "{n} {n:accès refusé|accès refusés} de {who}", EN: "{n} denied {n:access|accesses} by {who}"}
	defer delete(catalogue, "test.plural")
	for _, c := range []struct {
		l    Lang
		id   string
		args []any
		want string
	}{
		{FR, "test.plural", []any{"n", 0, "who", "x"}, "0 accès refusé de x"},
		{FR, "test.plural", []any{"n", 1, "who", "x"}, "1 accès refusé de x"},
		{FR, "test.plural", []any{"n", 2, "who", "x"}, "2 accès refusés de x"},
		{EN, "test.plural", []any{"n", 0, "who", "x"}, "0 denied accesses by x"},
		{EN, "test.plural", []any{"n", 1, "who", "x"}, "1 denied access by x"},
		{EN, "test.plural", []any{"who", "x"}, "{n} denied {n:access|accesses} by x"},
		{EN, "cli.read", []any{"n", 3}, "ledger read (3 events read)"},
		{FR, "no.such.id", nil, "no.such.id"},
	} {
		if got := Format(c.l, c.id, c.args...); got != c.want {
			t.Errorf("Format(%v, %q, %v) = %q, want %q", c.l, c.id, c.args, got, c.want)
		}
	}
}
