package server

import (
	"context"
	"fmt"
	"log/slog"
	"unicode/utf8"

	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/directory"
	"github.com/vigie-sante/vigie/consent/ident"
)

// Directory is the public directories of professionals and
// establishments (consent/directory.Store implements it). Both methods
// are safe for concurrent use and read only.
type Directory interface {
	// Lookup returns the entries of the numbers given that the
	// directories hold; a number they do not hold is absent, not an
	// error. At most directory.MaxLookup numbers of each kind.
	Lookup(ctx context.Context, rpps []ident.RPPS, finess []ident.FINESS) (map[ident.RPPS]directory.Professional, map[ident.FINESS]directory.Establishment, error)
	// Search returns at most limit professionals whose name starts with
	// name's words.
	Search(ctx context.Context, name string, limit int) ([]directory.Professional, error)
}

var _ Directory = (*directory.Store)(nil)

type directoryService struct {
	vigiev1.UnimplementedDirectoryServiceServer
	b *Backend
}

// LookupNames resolves a page's numbers to names. Without a directory
// (Backend.Directory nil) every number is absent.
func (s *directoryService) LookupNames(ctx context.Context, req *vigiev1.LookupNamesRequest) (*vigiev1.LookupNamesResponse, error) {
	if len(req.Rpps) > directory.MaxLookup {
		return nil, &FieldError{Field: "rpps", Problem: fmt.Sprintf("at most %d numbers", directory.MaxLookup), Kind: consent.ProblemTooMany, Limit: directory.MaxLookup}
	}
	if len(req.Finess) > directory.MaxLookup {
		return nil, &FieldError{Field: "finess", Problem: fmt.Sprintf("at most %d numbers", directory.MaxLookup), Kind: consent.ProblemTooMany, Limit: directory.MaxLookup}
	}
	rpps := make([]ident.RPPS, len(req.Rpps))
	for i, r := range req.Rpps {
		var err error
		if rpps[i], err = ident.ParseRPPS(r); err != nil {
			return nil, &FieldError{Field: fmt.Sprintf("rpps[%d]", i), Problem: "must be an RPPS number (11 digits)", Kind: consent.ProblemInvalidFormat, Err: err}
		}
	}
	finess := make([]ident.FINESS, len(req.Finess))
	for i, f := range req.Finess {
		var err error
		if finess[i], err = ident.ParseFINESS(f); err != nil {
			return nil, &FieldError{Field: fmt.Sprintf("finess[%d]", i), Problem: "must be a FINESS number", Kind: consent.ProblemInvalidFormat, Err: err}
		}
	}
	resp := &vigiev1.LookupNamesResponse{}
	if s.b.Directory == nil {
		return resp, nil
	}
	pros, ests, err := s.b.Directory.Lookup(ctx, rpps, finess)
	if err != nil {
		return nil, err
	}
	for _, r := range rpps {
		if p, ok := pros[r]; ok {
			delete(pros, r) // a number asked twice comes once
			resp.Professionals = append(resp.Professionals, professionalPB(p))
		}
	}
	for _, f := range finess {
		if e, ok := ests[f]; ok {
			delete(ests, f)
			resp.Establishments = append(resp.Establishments, &vigiev1.Establishment{Finess: e.FINESS.String(), Name: e.Name, Town: e.Town})
		}
	}
	AddLogAttrs(ctx, slog.Int("asked", len(rpps)+len(finess)), slog.Int("found", len(resp.Professionals)+len(resp.Establishments)))
	return resp, nil
}

// Bounds of SearchProfessionals.
const (
	searchMinLetters = 2
	searchMaxLetters = 100
	searchPageSize   = 10
)

// SearchProfessionals searches the professionals' directory by name. The
// name searched is not logged.
func (s *directoryService) SearchProfessionals(ctx context.Context, req *vigiev1.SearchProfessionalsRequest) (*vigiev1.SearchProfessionalsResponse, error) {
	key := directory.SearchKey(req.Name)
	if n := utf8.RuneCountInString(req.Name); n > searchMaxLetters {
		return nil, &FieldError{Field: "name", Problem: fmt.Sprintf("at most %d letters", searchMaxLetters), Kind: consent.ProblemTooLong, Limit: searchMaxLetters}
	}
	if len(key) < searchMinLetters {
		return nil, InvalidField("name", fmt.Sprintf("at least %d letters", searchMinLetters))
	}
	size, err := PageSize(req.PageSize, searchPageSize, directory.MaxSearch)
	if err != nil {
		return nil, err
	}
	resp := &vigiev1.SearchProfessionalsResponse{}
	if s.b.Directory == nil {
		return resp, nil
	}
	found, err := s.b.Directory.Search(ctx, req.Name, size)
	if err != nil {
		return nil, err
	}
	for _, p := range found {
		resp.Professionals = append(resp.Professionals, professionalPB(p))
	}
	AddLogAttrs(ctx, slog.Int("found", len(found)))
	return resp, nil
}

func professionalPB(p directory.Professional) *vigiev1.Professional {
	return &vigiev1.Professional{Rpps: p.RPPS.String(), Title: p.Title, Name: p.Name, Profession: p.Profession, Specialty: p.Specialty}
}
