package server

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/consent/directory"
)

// importTestDirectories imports consent/directory's test files into l's
// database.
func importTestDirectories(t *testing.T, l *live) {
	t.Helper()
	open := func(name string) func() (io.ReadCloser, error) {
		return func() (io.ReadCloser, error) { return os.Open("../../consent/directory/testdata/" + name) }
	}
	_, err := directory.New(l.env.DB).Import(context.Background(), directory.Files{
		RPPS:   open("PS_LibreAcces_Personne_activite_test.txt"),
		FINESS: open("etalab-cs1100507-stock-test.csv"),
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLookupNames(t *testing.T) {
	l := newLive(t, liveOptions{})
	client := vigiev1.NewDirectoryServiceClient(l.conn)
	req := &vigiev1.LookupNamesRequest{
		Rpps:   []string{"10000000003", "19999999999", "10000000003"},
		Finess: []string{"690000021", "750712184"},
	}
	// Before any import: no names, no error.
	resp, err := client.LookupNames(context.Background(), req)
	if err != nil || len(resp.Professionals) != 0 || len(resp.Establishments) != 0 {
		t.Fatalf("LookupNames before import = %v, %v; want nothing found", resp, err)
	}
	importTestDirectories(t, l)
	// Anonymous (public data) and a patient alike.
	for _, ctx := range []context.Context{context.Background(), l.as(auth.RolePatient, testINS)} {
		resp, err := client.LookupNames(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Professionals) != 1 || len(resp.Establishments) != 1 {
			t.Fatalf("LookupNames = %v; want one professional (asked twice) and one establishment, the absent numbers left out", resp)
		}
		p, e := resp.Professionals[0], resp.Establishments[0]
		if p.Rpps != "10000000003" || p.Name != "CLAIRE LEFÈVRE" || p.Title != "Docteur" || p.Profession != "Médecin" || p.Specialty != "Médecine générale" {
			t.Errorf("professional = %v", p)
		}
		if e.Finess != "690000021" || e.Name != "CLINIQUE ESSAI" || e.Town != "LYON" {
			t.Errorf("establishment = %v", e)
		}
	}

	tooMany := make([]string, directory.MaxLookup+1)
	for i := range tooMany {
		tooMany[i] = "10000000003"
	}
	for _, c := range []struct {
		req   *vigiev1.LookupNamesRequest
		field string
	}{
		{&vigiev1.LookupNamesRequest{Rpps: []string{"10000000003", "123"}}, "invalid rpps[1]"},
		{&vigiev1.LookupNamesRequest{Finess: []string{"750000000"}}, "invalid finess[0]"},
		{&vigiev1.LookupNamesRequest{Rpps: tooMany}, "invalid rpps"},
	} {
		_, err := client.LookupNames(context.Background(), c.req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), c.field) {
			t.Errorf("LookupNames(%v): %v, want INVALID_ARGUMENT naming %s", c.req, err, c.field)
		}
	}
}

func TestSearchProfessionals(t *testing.T) {
	l := newLive(t, liveOptions{})
	importTestDirectories(t, l)
	client := vigiev1.NewDirectoryServiceClient(l.conn)
	ctx := l.as(auth.RolePatient, testINS)
	resp, err := client.SearchProfessionals(ctx, &vigiev1.SearchProfessionalsRequest{Name: "Lefèvre"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Professionals) != 1 || resp.Professionals[0].Rpps != "10000000003" || resp.Professionals[0].Specialty != "Médecine générale" {
		t.Errorf("SearchProfessionals(Lefèvre) = %v", resp)
	}
	for _, c := range []struct {
		req   *vigiev1.SearchProfessionalsRequest
		field string
	}{
		{&vigiev1.SearchProfessionalsRequest{Name: "é"}, "invalid name"},
		{&vigiev1.SearchProfessionalsRequest{Name: "- '"}, "invalid name"},
		{&vigiev1.SearchProfessionalsRequest{Name: strings.Repeat("a", 101)}, "invalid name"},
		{&vigiev1.SearchProfessionalsRequest{Name: "lef", PageSize: 21}, "invalid page_size"},
	} {
		_, err := client.SearchProfessionals(ctx, c.req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), c.field) {
			t.Errorf("SearchProfessionals(%v): %v, want INVALID_ARGUMENT naming %s", c.req, err, c.field)
		}
	}
}
