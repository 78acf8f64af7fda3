//go:build pkcs11

package hsm

import (
	"container/list"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"

	"github.com/miekg/pkcs11"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
)

// wrappedVersion starts every data key Wrapper wraps. A key wrapped by the
// in-memory KEK of a file (ledger.NewKEKWrapper) is nonce ‖ ciphertext,
// 60 bytes, and starts with a random byte: Wrapper tells the two apart by
// this byte and the length (62 + the label's length).
const wrappedVersion = 2

const (
	ivSize  = 12
	tagBits = 128
	// DefaultCacheSize is WrapperConfig.CacheSize's default.
	DefaultCacheSize = 10000
)

// WrapperConfig says which key-encryption keys a Wrapper uses.
type WrapperConfig struct {
	// KEK is the label of the AES key that wraps new data keys. Required.
	KEK string
	// Old are the labels of former KEKs, which still unwrap the keys
	// they wrapped until Ledger.Rewrap has moved them to KEK.
	Old []string
	// Legacy, if not nil, unwraps the data keys wrapped before the
	// module was used (ledger.NewKEKWrapper over the kek file), until
	// Ledger.Rewrap has moved them to KEK.
	Legacy ledger.KeyWrapper
	// CacheSize is how many unwrapped data keys are kept in memory, most
	// recently used first, so that a patient's next events cost no call
	// to the module. Default DefaultCacheSize; -1 keeps none.
	CacheSize int
}

// Wrapper is the ledger.KeyWrapper (a ledger.Rewrapper) of key-encryption
// keys held in a module: each data key is encrypted inside the module with
// AES-256-GCM (CKM_AES_GCM), a random IV and the patient's pseudonym as
// additional data, and stored as
//
//	0x02 ‖ len(label) ‖ label ‖ IV (12 bytes) ‖ ciphertext ‖ tag (16 bytes)
//
// where label names the KEK. It is safe for concurrent use.
type Wrapper struct {
	m       *Module
	current string
	keks    map[string]pkcs11.ObjectHandle
	legacy  ledger.KeyWrapper

	mu      sync.Mutex
	size    int
	lru     *list.List               // of *cached, most recent first
	entries map[string]*list.Element // by pseudonym ‖ wrapped
	hits    uint64
	misses  uint64

	hitsDesc, missesDesc, entriesDesc *prometheus.Desc
}

type cached struct {
	id  string
	key []byte
}

var (
	_ ledger.Rewrapper     = (*Wrapper)(nil)
	_ ledger.NamedKEK      = (*Wrapper)(nil)
	_ prometheus.Collector = (*Wrapper)(nil)
)

// Wrapper returns the wrapper of cfg's keys. Every KEK must be in the
// token: a missing one is an error naming its label.
func (m *Module) Wrapper(cfg WrapperConfig) (*Wrapper, error) {
	if cfg.KEK == "" {
		return nil, errors.New("hsm: the key-encryption key's label is required")
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	w := &Wrapper{
		m: m, current: cfg.KEK, keks: map[string]pkcs11.ObjectHandle{}, legacy: cfg.Legacy,
		size: max(cfg.CacheSize, 0), lru: list.New(), entries: map[string]*list.Element{},
		hitsDesc:    prometheus.NewDesc("vigie_hsm_data_key_cache_hits_total", "Data keys found unwrapped in memory.", nil, nil),
		missesDesc:  prometheus.NewDesc("vigie_hsm_data_key_cache_misses_total", "Data keys unwrapped by the module.", nil, nil),
		entriesDesc: prometheus.NewDesc("vigie_hsm_data_key_cache_entries", "Unwrapped data keys held in memory.", nil, nil),
	}
	for _, label := range append([]string{cfg.KEK}, cfg.Old...) {
		if len(label) > 255 {
			return nil, errors.New("hsm: a key-encryption key's label is at most 255 bytes")
		}
		h, err := m.find(pkcs11.CKO_SECRET_KEY, label)
		if err != nil {
			return nil, err
		}
		w.keks[label] = h
	}
	return w, nil
}

// KEKLabel implements ledger.NamedKEK: the label of the KEK that wraps,
// whose probe the ledger checks at every start.
func (w *Wrapper) KEKLabel() string { return w.current }

// Stale implements ledger.Rewrapper: wrapped is not under the current KEK.
func (w *Wrapper) Stale(wrapped []byte) bool {
	label, _, _, ok := parseWrapped(wrapped)
	return !ok || label != w.current
}

// Wrap implements ledger.KeyWrapper.
func (w *Wrapper) Wrap(pseudonym event.Hash, key []byte) ([]byte, error) {
	iv := make([]byte, ivSize)
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	var ct []byte
	err := w.m.with(func(s pkcs11.SessionHandle) error {
		p := pkcs11.NewGCMParams(iv, additionalData(pseudonym), tagBits)
		defer p.Free()
		if err := w.m.ctx.EncryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, p)}, w.keks[w.current]); err != nil {
			return err
		}
		var err error
		ct, err = w.m.ctx.Encrypt(s, key)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("hsm: wrap with %q: %w", w.current, err)
	}
	out := make([]byte, 0, 2+len(w.current)+ivSize+len(ct))
	out = append(out, wrappedVersion, byte(len(w.current)))
	out = append(append(append(out, w.current...), iv...), ct...)
	return out, nil
}

// Unwrap implements ledger.KeyWrapper, through the cache.
func (w *Wrapper) Unwrap(pseudonym event.Hash, wrapped []byte) ([]byte, error) {
	id := string(pseudonym[:]) + string(wrapped)
	w.mu.Lock()
	if e, ok := w.entries[id]; ok {
		w.lru.MoveToFront(e)
		w.hits++
		key := append([]byte(nil), e.Value.(*cached).key...)
		w.mu.Unlock()
		return key, nil
	}
	w.misses++
	w.mu.Unlock()
	key, err := w.unwrap(pseudonym, wrapped)
	if err != nil || w.size == 0 {
		return key, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.entries[id]; !ok {
		w.entries[id] = w.lru.PushFront(&cached{id: id, key: append([]byte(nil), key...)})
		for w.lru.Len() > w.size {
			old := w.lru.Remove(w.lru.Back()).(*cached)
			clear(old.key)
			delete(w.entries, old.id)
		}
	}
	return key, nil
}

func (w *Wrapper) unwrap(pseudonym event.Hash, wrapped []byte) ([]byte, error) {
	label, iv, ct, ok := parseWrapped(wrapped)
	if !ok {
		if w.legacy == nil {
			return nil, fmt.Errorf("%w: a data key not wrapped by the module, and no kek file to open it", ledger.ErrCorrupt)
		}
		return w.legacy.Unwrap(pseudonym, wrapped)
	}
	h, ok := w.keks[label]
	if !ok {
		return nil, fmt.Errorf("%w: a data key wrapped by the key-encryption key %q, which this node does not use", ledger.ErrCorrupt, label)
	}
	var key []byte
	err := w.m.with(func(s pkcs11.SessionHandle) error {
		p := pkcs11.NewGCMParams(iv, additionalData(pseudonym), tagBits)
		defer p.Free()
		if err := w.m.ctx.DecryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, p)}, h); err != nil {
			return err
		}
		var err error
		key, err = w.m.ctx.Decrypt(s, ct)
		return err
	})
	switch {
	case isCode(err, pkcs11.CKR_ENCRYPTED_DATA_INVALID), isCode(err, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE),
		// SoftHSM2 answers a tag that does not match so.
		isCode(err, pkcs11.CKR_GENERAL_ERROR):
		return nil, fmt.Errorf("%w: ciphertext does not open (%q: %v)", ledger.ErrCorrupt, label, err)
	case err != nil:
		return nil, fmt.Errorf("hsm: unwrap with %q: %w", label, err)
	case len(key) != ledger.KeySize:
		return nil, fmt.Errorf("%w: a data key of %d bytes", ledger.ErrCorrupt, len(key))
	}
	return key, nil
}

// additionalData binds a wrapped key to its patient.
func additionalData(pseudonym event.Hash) []byte {
	return append([]byte("vigie/data-key/v2\x00"), pseudonym[:]...)
}

// parseWrapped splits a data key wrapped by Wrap; ok is false for any
// other form (a key wrapped by the kek file).
func parseWrapped(b []byte) (label string, iv, ct []byte, ok bool) {
	if len(b) < 2 || b[0] != wrappedVersion {
		return "", nil, nil, false
	}
	n := int(b[1])
	if n == 0 || len(b) != 2+n+ivSize+ledger.KeySize+tagBits/8 {
		return "", nil, nil, false
	}
	return string(b[2 : 2+n]), b[2+n : 2+n+ivSize], b[2+n+ivSize:], true
}

// Describe implements prometheus.Collector.
func (w *Wrapper) Describe(ch chan<- *prometheus.Desc) {
	ch <- w.hitsDesc
	ch <- w.missesDesc
	ch <- w.entriesDesc
}

// Collect implements prometheus.Collector.
func (w *Wrapper) Collect(ch chan<- prometheus.Metric) {
	w.mu.Lock()
	hits, misses, n := w.hits, w.misses, w.lru.Len()
	w.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(w.hitsDesc, prometheus.CounterValue, float64(hits))
	ch <- prometheus.MustNewConstMetric(w.missesDesc, prometheus.CounterValue, float64(misses))
	ch <- prometheus.MustNewConstMetric(w.entriesDesc, prometheus.GaugeValue, float64(n))
}
