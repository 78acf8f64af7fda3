package ladonpolicy

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ory/ladon"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
)

// Options configure an [Engine].
type Options struct {
	// MaxPatients bounds how many patients' compiled consents the engine
	// caches. A compiled consent of five directives takes about 400
	// bytes. When the cache is full, an arbitrary patient of the same
	// shard is evicted; it is compiled again on its next decision.
	// Default 4,194,304.
	MaxPatients int
	// Manager holds additional ladon policies, written by an
	// administrator, evaluated with the national rules and the patient's
	// directives. Default: an empty Manager.
	Manager *Manager
}

const numShards = 64

// Engine decides requests with ladon policies compiled from the national
// rules and the patient's consent. It implements consent.Engine.
//
// It caches each patient's compiled consent by version: a decision with a
// consent version the engine has compiled reuses it; a newer version
// replaces it; an older version is refused (consent.ErrStaleConsent), so
// that decisions for a patient never go back in time. Patterns are
// compiled once per version, never per request.
//
// Engine is safe for concurrent use.
type Engine struct {
	manager  *Manager
	perShard int
	seed     maphash.Seed
	shards   [numShards]shard

	rulesMu    sync.Mutex
	rulesCache map[[32]byte]*compiledRules
	lastRules  atomic.Pointer[rulesEntry]

	pool     sync.Pool
	compiles atomic.Int64 // consents compiled, for tests
}

type shard struct {
	mu sync.RWMutex
	m  map[ident.INS]Compiled // values: one allocation per patient, its data
}

type rulesEntry struct {
	rules *consent.Rules
	cr    *compiledRules
}

var _ consent.Engine = (*Engine)(nil)

// NewEngine returns an engine.
func NewEngine(opts Options) *Engine {
	if opts.MaxPatients <= 0 {
		opts.MaxPatients = 1 << 22
	}
	if opts.Manager == nil {
		opts.Manager = NewManager()
	}
	e := &Engine{
		manager:    opts.Manager,
		perShard:   max(1, opts.MaxPatients/numShards),
		seed:       maphash.MakeSeed(),
		rulesCache: make(map[[32]byte]*compiledRules),
	}
	for i := range e.shards {
		e.shards[i].m = make(map[ident.INS]Compiled)
	}
	e.pool.New = func() any { return newScratch() }
	return e
}

// Manager returns the engine's Manager. With [NewLadon] it gives a stock
// ladon warden over the same policies, for requests built by
// [Engine.LadonRequest].
func (e *Engine) Manager() *Manager { return e.manager }

// CheckConsent validates c ([consent.ValidateConsent]) and compiles it,
// so that a pattern that does not compile is refused when written.
func (e *Engine) CheckConsent(c *consent.Consent, rules *consent.Rules) error {
	if err := consent.ValidateConsent(c, rules); err != nil {
		return err
	}
	_, err := Compile(c)
	return err
}

// Decide decides req with snap and rules (see consent.Engine). The
// decision depends on nothing else: not the clock (req.Time is the
// decision time), not the cache.
func (e *Engine) Decide(req *consent.Request, snap *consent.Consent, rules *consent.Rules) (consent.Decision, error) {
	if err := consent.ValidateRequest(req); err != nil {
		return consent.Decision{}, err
	}
	if snap == nil || rules == nil {
		return consent.Decision{}, errors.New("ladonpolicy: decide: consent snapshot and national rules are required")
	}
	if snap.Version < req.MinConsentVersion {
		return consent.Decision{}, fmt.Errorf("ladonpolicy: decide: consent version %d, request saw %d: %w", snap.Version, req.MinConsentVersion, consent.ErrStaleConsent)
	}
	cr := e.compiledRules(rules)
	sc := e.pool.Get().(*scratch)
	defer e.release(sc)
	var err error
	if sc.patient, err = e.patient(req.Patient, snap); err != nil {
		return consent.Decision{}, err
	}
	lr := sc.build(req, cr, &sc.patient)
	if !safeNeedle(lr.Subject) || !safeNeedle(lr.Resource) || !safeNeedle(lr.Action) {
		return consent.Decision{}, fmt.Errorf("ladonpolicy: decide: %w", errNeedle) // validated requests never are
	}
	sc.cands = e.manager.appendCandidates(sc.cands[:0], lr, sc)
	if err := evaluate(context.Background(), Matcher{checked: true}, lr, sc.cands, &sc.out); err != nil {
		return consent.Decision{}, fmt.Errorf("ladonpolicy: decide: %w", err)
	}
	return decision(&sc.out, req, snap.Version, cr), nil
}

// LadonRequest returns the ladon request Decide evaluates for req, with a
// context carrying the compiled rules and consent: with [NewLadon] (or a
// [Warden]) on [Engine.Manager], stock ladon decides it.
func (e *Engine) LadonRequest(req *consent.Request, snap *consent.Consent, rules *consent.Rules) (*ladon.Request, error) {
	if err := consent.ValidateRequest(req); err != nil {
		return nil, err
	}
	c, err := compile(snap, false) // as Decide compiles it
	if err != nil {
		return nil, err
	}
	sc := newScratch()
	return sc.build(req, e.compiledRules(rules), &c), nil
}

// CachedPatients returns how many patients' compiled consents the engine
// holds.
func (e *Engine) CachedPatients() int {
	n := 0
	for i := range e.shards {
		sh := &e.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

func (e *Engine) compiledRules(r *consent.Rules) *compiledRules {
	if last := e.lastRules.Load(); last != nil && last.rules == r {
		return last.cr
	}
	e.rulesMu.Lock()
	defer e.rulesMu.Unlock()
	cr, ok := e.rulesCache[r.Hash()]
	if !ok {
		if len(e.rulesCache) >= 16 { // versions change rarely; keep a few
			clear(e.rulesCache)
		}
		cr = compileRules(r)
		e.rulesCache[r.Hash()] = cr
	}
	e.lastRules.Store(&rulesEntry{rules: r, cr: cr})
	return cr
}

// patient returns the patient's compiled consent at snap's version.
func (e *Engine) patient(p ident.INS, snap *consent.Consent) (Compiled, error) {
	sh := &e.shards[maphash.Comparable(e.seed, p)%numShards]
	sh.mu.RLock()
	c, ok := sh.m[p]
	sh.mu.RUnlock()
	if ok {
		switch {
		case c.version == snap.Version:
			return c, nil
		case c.version > snap.Version:
			return Compiled{}, fmt.Errorf("ladonpolicy: decide: consent version %d, already decided with %d: %w", snap.Version, c.version, consent.ErrStaleConsent)
		}
	}
	nc, err := compile(snap, false)
	if err != nil {
		return Compiled{}, fmt.Errorf("ladonpolicy: compile consent version %d: %w", snap.Version, err)
	}
	e.compiles.Add(1)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cur, ok := sh.m[p]
	switch {
	case !ok:
		if len(sh.m) >= e.perShard {
			for k := range sh.m { // evict an arbitrary patient
				delete(sh.m, k)
				break
			}
		}
		sh.m[p] = nc
	case cur.version < nc.version:
		sh.m[p] = nc
	case cur.version == nc.version:
		nc = cur // a concurrent decision compiled it first
	default:
		return Compiled{}, fmt.Errorf("ladonpolicy: decide: consent version %d, already decided with %d: %w", snap.Version, cur.version, consent.ErrStaleConsent)
	}
	return nc, nil
}

// scratch is the per-decision working memory, pooled.
type scratch struct {
	patient Compiled // the patient's compiled consent, copied from the cache
	lr      ladon.Request
	ctx     ladon.Context
	buf     []byte
	cands   []ladon.Policy
	views   []dirPolicy
	// nviews counts the views in use.
	nviews int
	out    outcome
}

func newScratch() *scratch {
	return &scratch{
		ctx:   make(ladon.Context, 16),
		buf:   make([]byte, 0, 256),
		cands: make([]ladon.Policy, 0, 128),
		views: make([]dirPolicy, consent.MaxDirectives+1),
		out:   outcome{denies: make([]ladon.Policy, 0, 16), allows: make([]ladon.Policy, 0, 16)},
	}
}

func (e *Engine) release(sc *scratch) {
	clear(sc.views[:sc.nviews]) // drop references to compiled consents
	sc.nviews = 0
	clear(sc.cands)
	sc.cands = sc.cands[:0]
	sc.out.reset()
	clear(sc.ctx)
	sc.lr = ladon.Request{}
	sc.patient = Compiled{}
	e.pool.Put(sc)
}

func actionString(a consent.Action) string {
	switch a {
	case consent.ActionRead:
		return "read"
	case consent.ActionWrite:
		return "write"
	case consent.ActionHide:
		return "hide"
	}
	return string(a)
}

// build fills the scratch's ladon request for req.
func (sc *scratch) build(req *consent.Request, cr *compiledRules, c *Compiled) *ladon.Request {
	ctx := sc.ctx
	sc.buf = appendSubject(sc.buf[:0], req.Actor.RPPS)
	lr := &sc.lr
	lr.Subject = string(sc.buf)
	lr.Action = actionString(req.Action)
	lr.Resource = resourceRecord
	ctx[KeyTime] = req.Time.UnixNano()
	ctx[KeyPurpose] = cr.intern(string(req.Purpose))
	ctx[KeySector] = cr.intern(req.Actor.Sector)
	ctx[KeyProfession] = cr.intern(req.Actor.Profession)
	ctx[KeyOrganization] = req.Actor.Organization.String()
	ctx[KeyCareTeam] = req.Actor.CareTeam
	ctx[KeyJustified] = strings.TrimSpace(req.Justification) != ""
	if req.Resource.Kind == consent.ResourceDocument {
		sc.buf = append(sc.buf[:0], documentPrefix...)
		sc.buf = append(sc.buf, req.Resource.DocumentType...)
		sc.buf = append(sc.buf, '/')
		sc.buf = append(sc.buf, req.Resource.DocumentID...)
		lr.Resource = string(sc.buf)
		ctx[KeyDocumentType] = cr.intern(req.Resource.DocumentType)
		ctx[KeyHidden] = req.Resource.Hidden
		if !req.Resource.Author.IsZero() {
			sc.buf = appendSubject(sc.buf[:0], req.Resource.Author)
			ctx[KeyAuthor] = string(sc.buf)
		}
	}
	ctx[keyRules] = cr
	ctx[keyPatient] = c
	lr.Context = ctx
	return lr
}

// intern returns s boxed, without allocating for the rules' own codes.
func (cr *compiledRules) intern(s string) any {
	if v, ok := cr.boxed[s]; ok {
		return v
	}
	return s
}

var defaultDeny = func() consent.Ground {
	fr, en := consent.GroundText(consent.SourceRule, consent.RuleDefaultDeny)
	return consent.Ground{Source: consent.SourceRule, ID: consent.RuleDefaultDeny, Kind: consent.RuleDefaultDeny, Effect: consent.Deny, FR: fr, EN: en}
}()

// obligationOrder is the order of obligations in a decision.
var obligationOrder = []consent.Obligation{consent.NotifyPatient, consent.NotifyTreatingPhysician, consent.FlagForReview}

func decision(out *outcome, req *consent.Request, consentVersion int64, cr *compiledRules) consent.Decision {
	d := consent.Decision{
		ConsentVersion: consentVersion,
		RulesVersion:   cr.version,
		RulesHash:      cr.hash,
		Time:           req.Time,
	}
	deciders := out.denies
	if out.allowed() {
		d.Effect = consent.Allow
		deciders = out.allows
	}
	if len(deciders) == 0 {
		d.Grounds = []consent.Ground{defaultDeny}
	} else {
		d.Grounds = make([]consent.Ground, len(deciders))
	}
	var obl uint8
	for i, p := range deciders {
		g, ok := p.(grounded)
		if !ok {
			d.Grounds[i] = consent.Ground{Source: consent.SourceRule, ID: p.GetID(), Kind: "ladon-policy", Effect: effectOf(p.AllowAccess()), FR: p.GetDescription(), EN: p.GetDescription()}
			continue
		}
		d.Grounds[i] = g.ground()
		for _, o := range g.obligations() {
			for bit, want := range obligationOrder {
				if o == want {
					obl |= 1 << bit
				}
			}
		}
	}
	if obl != 0 {
		for bit, o := range obligationOrder {
			if obl&(1<<bit) != 0 {
				d.Obligations = append(d.Obligations, o)
			}
		}
	}
	d.Reason = consent.CoarseReason(d.Effect, d.Grounds)
	return d
}
