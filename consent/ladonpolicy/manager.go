package ladonpolicy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ory/ladon"

	"github.com/vigie-sante/vigie/consent"
)

// Manager is a ladon.Manager whose FindRequestCandidates returns, from
// indexes, only the policies that can apply to a request:
//
//   - the patient's policies, from the compiled consent the request's
//     context carries (the Engine puts it there), filtered by subject,
//     action and resource kind, never a scan over patients;
//   - the national rules' policies, from the compiled rules the context
//     carries, indexed by action, profession, document type and sector;
//   - policies written with Create or Update, indexed by literal subject
//     (policies whose subjects are patterns are always candidates).
//
// The stock memory manager returns every policy it holds for every
// request, which ladon allows (a superset) but which makes each decision
// cost the total number of policies.
//
// Create and Update compile every pattern of the policy (subjects,
// resources, actions) when it is written, and reject a pattern that does
// not compile; the [Matcher] then never compiles anything per request.
//
// Manager is safe for concurrent use. Reads take no lock: writes replace
// an immutable index (copy on write), as policies written through the
// Manager are few and rarely change.
type Manager struct {
	mu  sync.Mutex // serializes writers
	idx atomic.Pointer[managerIndex]
}

type managerIndex struct {
	byID      map[string]*managedPolicy
	bySubject map[string][]*managedPolicy // literal subjects
	patterned []*managedPolicy            // policies with a pattern subject
}

// managedPolicy is a policy with its patterns compiled.
type managedPolicy struct {
	ladon.Policy
	pats map[string]*Pattern
}

func (p *managedPolicy) compiledPattern(tpl string) (*Pattern, bool) {
	pat, ok := p.pats[tpl]
	return pat, ok
}

var _ ladon.Manager = (*Manager)(nil)

// NewManager returns an empty Manager.
func NewManager() *Manager {
	m := &Manager{}
	m.idx.Store(&managerIndex{byID: map[string]*managedPolicy{}, bySubject: map[string][]*managedPolicy{}})
	return m
}

func (m *Manager) index() *managerIndex {
	if ix := m.idx.Load(); ix != nil {
		return ix
	}
	return &managerIndex{}
}

func compileManaged(p ladon.Policy) (*managedPolicy, error) {
	if p == nil || p.GetID() == "" {
		return nil, errors.New("ladonpolicy: policy without an ID")
	}
	pats, err := compilePatterns(p.GetStartDelimiter(), p.GetEndDelimiter(), p.GetSubjects(), p.GetResources(), p.GetActions())
	if err != nil {
		return nil, fmt.Errorf("ladonpolicy: policy %q: %w", p.GetID(), err)
	}
	return &managedPolicy{Policy: p, pats: pats}, nil
}

// Create stores a new policy, after compiling its patterns.
func (m *Manager) Create(_ context.Context, p ladon.Policy) error {
	mp, err := compileManaged(p)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.index().byID[p.GetID()]; dup {
		return fmt.Errorf("ladonpolicy: policy %q exists", p.GetID())
	}
	m.rebuild(func(byID map[string]*managedPolicy) { byID[p.GetID()] = mp })
	return nil
}

// Update replaces a policy (or stores it), after compiling its patterns.
func (m *Manager) Update(_ context.Context, p ladon.Policy) error {
	mp, err := compileManaged(p)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rebuild(func(byID map[string]*managedPolicy) { byID[p.GetID()] = mp })
	return nil
}

// Delete removes a policy.
func (m *Manager) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rebuild(func(byID map[string]*managedPolicy) { delete(byID, id) })
	return nil
}

// rebuild builds a new index after edit; m.mu must be held.
func (m *Manager) rebuild(edit func(map[string]*managedPolicy)) {
	old := m.index()
	ix := &managerIndex{byID: make(map[string]*managedPolicy, len(old.byID)+1), bySubject: map[string][]*managedPolicy{}}
	for id, p := range old.byID {
		ix.byID[id] = p
	}
	edit(ix.byID)
	ids := make([]string, 0, len(ix.byID))
	for id := range ix.byID {
		ids = append(ids, id)
	}
	sort.Strings(ids) // candidates in a stable order
	for _, id := range ids {
		p := ix.byID[id]
		pattern := false
		for _, s := range p.GetSubjects() {
			if strings.IndexByte(s, p.GetStartDelimiter()) >= 0 {
				pattern = true
			}
		}
		if pattern {
			ix.patterned = append(ix.patterned, p)
			continue
		}
		seen := map[string]bool{}
		for _, s := range p.GetSubjects() {
			if !seen[s] {
				seen[s] = true
				ix.bySubject[s] = append(ix.bySubject[s], p)
			}
		}
	}
	m.idx.Store(ix)
}

// Get returns a policy by ID.
func (m *Manager) Get(_ context.Context, id string) (ladon.Policy, error) {
	p, ok := m.index().byID[id]
	if !ok {
		return nil, ladon.NewErrResourceNotFound(fmt.Errorf("policy %q not found", id))
	}
	return p.Policy, nil
}

// GetAll returns up to limit policies in ID order from offset.
func (m *Manager) GetAll(_ context.Context, limit, offset int64) (ladon.Policies, error) {
	ix := m.index()
	ids := make([]string, 0, len(ix.byID))
	for id := range ix.byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	if offset < 0 || offset > int64(len(ids)) {
		offset = int64(len(ids))
	}
	end := int64(len(ids))
	if limit >= 0 && offset+limit < end {
		end = offset + limit
	}
	out := make(ladon.Policies, 0, end-offset)
	for _, id := range ids[offset:end] {
		out = append(out, ix.byID[id].Policy)
	}
	return out, nil
}

// FindRequestCandidates returns the policies that can apply to r (see
// [Manager]).
func (m *Manager) FindRequestCandidates(_ context.Context, r *ladon.Request) (ladon.Policies, error) {
	return m.appendCandidates(nil, r, nil), nil
}

// FindPoliciesForSubject returns the written policies that can apply to
// subject.
func (m *Manager) FindPoliciesForSubject(_ context.Context, subject string) (ladon.Policies, error) {
	ix := m.index()
	var out ladon.Policies
	for _, p := range ix.bySubject[subject] {
		out = append(out, p)
	}
	for _, p := range ix.patterned {
		out = append(out, p)
	}
	return out, nil
}

// FindPoliciesForResource returns the written policies (a superset of
// those for resource).
func (m *Manager) FindPoliciesForResource(ctx context.Context, _ string) (ladon.Policies, error) {
	ps, err := m.GetAll(ctx, -1, 0)
	if err != nil {
		return nil, err
	}
	ix := m.index()
	for i, p := range ps {
		ps[i] = ix.byID[p.GetID()]
	}
	return ps, nil
}

// appendCandidates appends r's candidates to dst. With sc, the patient's
// policy views are built in sc; without, they are allocated.
func (m *Manager) appendCandidates(dst []ladon.Policy, r *ladon.Request, sc *scratch) []ladon.Policy {
	if ix := m.idx.Load(); ix != nil && len(ix.byID) > 0 {
		for _, p := range ix.bySubject[r.Subject] {
			dst = append(dst, p)
		}
		for _, p := range ix.patterned {
			dst = append(dst, p)
		}
	}
	cr, _ := r.Context[keyRules].(*compiledRules)
	if cr == nil {
		return dst
	}
	dst = cr.appendCandidates(dst, r)
	if c, _ := r.Context[keyPatient].(*Compiled); c != nil {
		dst = c.appendViews(dst, cr, r, sc)
	}
	return dst
}

// appendViews appends the policies of c's directives that can apply to r,
// and the patient's instance of the hidden-document rule for a document
// read. Directives naming another professional are left out: their
// subject could not match.
func (c *Compiled) appendViews(dst []ladon.Policy, cr *compiledRules, r *ladon.Request, sc *scratch) []ladon.Policy {
	view := func() *dirPolicy {
		if sc != nil && sc.nviews < len(sc.views) {
			sc.nviews++
			return &sc.views[sc.nviews-1]
		}
		return new(dirPolicy)
	}
	isDoc := strings.HasPrefix(r.Resource, documentPrefix)
	for i := range int(c.n) {
		d := c.dir(i)
		switch d.kind {
		case kBlockProfessional, kAllowProfessional, kTreatingPhysician, kExtendedRights:
			if c.str(d.subj) != r.Subject {
				continue
			}
		case kHideDocument, kHideDocumentType, kHideEverything:
			if !isDoc || r.Action != string(consent.ActionRead) {
				continue
			}
		}
		v := view()
		v.setDirective(c, i, cr)
		dst = append(dst, v)
	}
	if isDoc && r.Action == string(consent.ActionRead) {
		v := view()
		v.setHiddenRule(c, cr)
		dst = append(dst, v)
	}
	return dst
}
