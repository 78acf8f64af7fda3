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
// Check then reads the store and decides again. A change made elsewhere (another
// node, an erasure) costs one extra decision, never a wrong one.
//
// It holds at most size patients; a full shard forgets everything it held
// (cheap, rare, and only costs reads).
type consentCache struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]cacheShard
}

const cacheShards = 64

type cacheShard struct {
	mu sync.RWMutex
	m  map[ident.INS]*Consent
}

func newConsentCache(size int) *consentCache {
	c := &consentCache{seed: maphash.MakeSeed(), perShard: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = map[ident.INS]*Consent{}
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
	return v, ok
}

// put remembers a consent read from the store or written to it, unless a
// later version is known.
func (c *consentCache) put(p ident.INS, v *Consent) {
	if c == nil {
		return
	}
	s := c.shard(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[p]; ok && old.Version > v.Version {
		return
	}
	if len(s.m) >= c.perShard {
		clear(s.m)
	}
	s.m[p] = v
}

// forget drops what is known of the patient: it is not current.
func (c *consentCache) forget(p ident.INS) {
	if c == nil {
		return
	}
	s := c.shard(p)
	s.mu.Lock()
	delete(s.m, p)
	s.mu.Unlock()
}
