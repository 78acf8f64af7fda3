package ledger

import (
	"bytes"
	"crypto/cipher"
	"sync"

	"github.com/vigie-sante/vigie/ledger/event"
)

// headCache holds patients' chain heads, and their unwrapped data keys,
// where this process is the store's only writer (Config.SoleWriter): a
// recording transaction then reads the patient's row alone, not the two
// chain-head lookups and the key unwrapping. The store stays the truth:
// an entry is put only after its transaction committed, every entry of a
// transaction whose outcome is unknown or failed is dropped, and a
// process starts empty (a restart reads the heads from the store again).
//
// The data key is reused only while the patient's row holds the same
// wrapped key, so that a key wrapped again (another key-encryption key)
// or replaced (an erasure) is unwrapped from the row again.
type headCache struct {
	mu  sync.Mutex
	max int
	m   map[event.Hash]cachedHead
}

type cachedHead struct {
	seq     uint64
	head    event.Hash
	wrapped []byte
	dk      cipher.AEAD
}

func newHeadCache(max int) *headCache {
	return &headCache{max: max, m: make(map[event.Hash]cachedHead)}
}

// get returns the patient's chain head, and its data key if wrapped is the
// key it was unwrapped from (nil otherwise).
func (c *headCache) get(pseudonym event.Hash, wrapped []byte) (seq uint64, head event.Hash, dk cipher.AEAD, ok bool) {
	c.mu.Lock()
	h, ok := c.m[pseudonym]
	c.mu.Unlock()
	if !ok {
		return 0, event.Hash{}, nil, false
	}
	if wrapped != nil && bytes.Equal(h.wrapped, wrapped) {
		dk = h.dk
	}
	return h.seq, h.head, dk, true
}

// has reports whether the patient's chain head is held.
func (c *headCache) has(pseudonym event.Hash) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.m[pseudonym]
	return ok
}

// put records the heads of a committed transaction's patients, and drops
// those it erased.
func (c *headCache) put(patients map[event.Hash]*patientState, erased map[event.Hash]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, ps := range patients {
		if erased[p] || ps.dk == nil {
			delete(c.m, p)
			continue
		}
		if _, ok := c.m[p]; !ok && len(c.m) >= c.max {
			// Full: one entry goes, any (map order); a patient not held
			// is read from the store.
			for q := range c.m {
				delete(c.m, q)
				break
			}
		}
		c.m[p] = cachedHead{seq: ps.seq, head: ps.head, wrapped: ps.row.WrappedKey, dk: ps.dk}
	}
}

// drop forgets the heads of these patients (a transaction that failed, or
// whose outcome is unknown).
func (c *headCache) drop(patients map[event.Hash]*patientState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p := range patients {
		delete(c.m, p)
	}
}
