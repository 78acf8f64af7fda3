package consent

import (
	"hash/maphash"
	"sync"

	"github.com/vigie-sante/vigie/consent/ident"
)

// consentCache keeps the latest consent the service saw for each patient,
// so that Check decides without reading the store. It is safe to decide
// with a consent that is no longer current: the Recorder records a
// decision only if its consent version is the patient's current one, in
// the transaction that records it (ErrConsentChanged otherwise), and
// Check then reads the store and decides again. A change made elsewhere
// (another node, an erasure) costs one extra decision, never a wrong one;
// with a ChangeFeed, the service reads the patient's new consent as soon
// as the feed reports it, and not even that.
//
// It holds at most size patients; a full shard forgets everything it held
// (cheap, rare, and only costs reads).
type consentCache struct {
	seed     maphash.Seed
	perShard int
	// keyOf gives the ChangeFeed's key of a patient, so that a change the
	// feed reports finds the patient (nil: no feed).
	keyOf  func(ident.INS) PatientKey
	shards [cacheShards]cacheShard
}

const cacheShards = 64

type cacheShard struct {
	mu sync.RWMutex
	m  map[ident.INS]cached
	// patients finds a patient of m by feed key (nil without a feed).
	patients map[PatientKey]ident.INS
}

type cached struct {
	c   *Consent
	key PatientKey
}

func newConsentCache(size int, keyOf func(ident.INS) PatientKey) *consentCache {
	c := &consentCache{seed: maphash.MakeSeed(), perShard: max(1, size/cacheShards), keyOf: keyOf}
	for i := range c.shards {
		c.shards[i].m = map[ident.INS]cached{}
		if keyOf != nil {
			c.shards[i].patients = map[PatientKey]ident.INS{}
		}
	}
	return c
}

func (c *consentCache) shard(p ident.INS) *cacheShard {
	return &c.shards[maphash.Comparable(c.seed, p)%cacheShards]
}

// get returns the patient's consent, if known. The caller must not change
// it.
func (c *consentCache) get(p ident.INS) (*Consent, bool) {
	if c == nil {
		return nil, false
	}
	s := c.shard(p)
	s.mu.RLock()
	v, ok := s.m[p]
	s.mu.RUnlock()
	return v.c, ok
}

// put remembers a consent read from the store or written to it, unless a
// later version is known.
func (c *consentCache) put(p ident.INS, v *Consent) {
	if c == nil {
		return
	}
	s := c.shard(p)
	s.mu.Lock()
	old, ok := s.m[p]
	s.mu.Unlock()
	if ok && old.c.Version > v.Version {
		return
	}
	e := cached{c: v, key: old.key}
	if !ok && c.keyOf != nil {
		e.key = c.keyOf(p) // a keyed hash: outside the lock
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[p]; ok && old.c.Version > v.Version {
		return
	}
	if _, ok := s.m[p]; !ok && len(s.m) >= c.perShard {
		clear(s.m)
		clear(s.patients)
	}
	s.m[p] = e
	if s.patients != nil {
		s.patients[e.key] = p
	}
}

// forget drops what is known of the patient: it is not current.
func (c *consentCache) forget(p ident.INS) {
	if c == nil {
		return
	}
	s := c.shard(p)
	s.mu.Lock()
	if e, ok := s.m[p]; ok {
		delete(s.m, p)
		delete(s.patients, e.key)
	}
	s.mu.Unlock()
}

// patient returns the cached patient whose feed key is k, if any.
func (c *consentCache) patient(k PatientKey) (ident.INS, bool) {
	if c == nil || c.keyOf == nil {
		return ident.INS{}, false
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		p, ok := s.patients[k]
		s.mu.RUnlock()
		if ok {
			return p, true
		}
	}
	return ident.INS{}, false
}

// clearAll forgets every patient.
func (c *consentCache) clearAll() {
	if c == nil {
		return
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.m)
		clear(s.patients)
		s.mu.Unlock()
	}
}

// version returns the version of the patient's cached consent.
func (c *consentCache) version(p ident.INS) (int64, bool) {
	v, ok := c.get(p)
	if !ok {
		return 0, false
	}
	return v.Version, true
}
