//go:build pkcs11

package hsm

import (
	"crypto/ed25519"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"
	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger/keys"
)

// PKCS #11 v3.0's Edwards-curve constants, which github.com/miekg/pkcs11
// v1.1.2 (on v2.40's headers) lacks.
const (
	ckmECEdwardsKeyPairGen   = 0x1055
	ckmEdDSA                 = 0x1057
	defaultSessions          = 4
	ed25519OIDDER            = "\x06\x03\x2b\x65\x70" // id-Ed25519, RFC 8410
	ed25519PrintableCurveDER = "\x13\x0cedwards25519"
)

// Config says which module, token and PIN Open uses.
type Config struct {
	// Module is the path of the module's PKCS#11 library (SoftHSM2's:
	// /usr/lib/softhsm/libsofthsm2.so). Required.
	Module string
	// Token is the label of the token holding the keys. Required.
	Token string
	// PIN is the user's PIN (CKU_USER). Required.
	PIN string
	// Sessions is how many operations run at once. Default 4.
	Sessions int
}

// Module is an open PKCS#11 token, logged in. It is safe for concurrent
// use: each operation takes one of its sessions.
type Module struct {
	ctx      *pkcs11.Ctx
	lib      string
	token    string
	sessions chan pkcs11.SessionHandle
	all      []pkcs11.SessionHandle
}

// Open loads cfg.Module, finds the token labelled cfg.Token and logs in.
func Open(cfg Config) (*Module, error) {
	if cfg.Module == "" || cfg.Token == "" {
		return nil, errors.New("hsm: the module's library and the token's label are required")
	}
	if cfg.Sessions <= 0 {
		cfg.Sessions = defaultSessions
	}
	ctx, err := load(cfg.Module)
	if err != nil {
		return nil, err
	}
	m := &Module{ctx: ctx, lib: cfg.Module, token: cfg.Token}
	fail := func(err error) (*Module, error) {
		m.Close()
		return nil, err
	}
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return fail(fmt.Errorf("hsm: slots: %w", err))
	}
	slot, found := uint(0), false
	for _, s := range slots {
		ti, err := ctx.GetTokenInfo(s)
		if err == nil && strings.TrimRight(ti.Label, " \x00") == cfg.Token {
			slot, found = s, true
			break
		}
	}
	if !found {
		return fail(fmt.Errorf("hsm: no token labelled %q in %s", cfg.Token, cfg.Module))
	}
	m.sessions = make(chan pkcs11.SessionHandle, cfg.Sessions)
	for range cfg.Sessions {
		s, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			return fail(fmt.Errorf("hsm: open session: %w", err))
		}
		m.all = append(m.all, s)
		m.sessions <- s
	}
	// Login is the application's, for all its sessions.
	if err := ctx.Login(m.all[0], pkcs11.CKU_USER, cfg.PIN); err != nil && !isCode(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		return fail(fmt.Errorf("hsm: log in to token %q: %w", cfg.Token, err))
	}
	return m, nil
}

// Close closes the module's sessions, and unloads the library if no other
// Module uses it. (The login ends with the application's last session.)
func (m *Module) Close() error {
	for _, s := range m.all {
		m.ctx.CloseSession(s)
	}
	m.all = nil
	return unload(m.lib)
}

// libraries are the modules loaded, by path: a library is initialised
// once per process (C_Initialize), whatever the number of Modules on it.
var libraries struct {
	sync.Mutex
	ctx  map[string]*pkcs11.Ctx
	refs map[string]int
}

func load(path string) (*pkcs11.Ctx, error) {
	libraries.Lock()
	defer libraries.Unlock()
	if c := libraries.ctx[path]; c != nil {
		libraries.refs[path]++
		return c, nil
	}
	c := pkcs11.New(path)
	if c == nil {
		return nil, fmt.Errorf("hsm: %s is not a PKCS#11 library that loads", path)
	}
	if err := c.Initialize(); err != nil {
		c.Destroy()
		return nil, fmt.Errorf("hsm: initialize %s: %w", path, err)
	}
	if libraries.ctx == nil {
		libraries.ctx, libraries.refs = map[string]*pkcs11.Ctx{}, map[string]int{}
	}
	libraries.ctx[path], libraries.refs[path] = c, 1
	return c, nil
}

func unload(path string) error {
	libraries.Lock()
	defer libraries.Unlock()
	c := libraries.ctx[path]
	if c == nil {
		return nil
	}
	if libraries.refs[path]--; libraries.refs[path] > 0 {
		return nil
	}
	delete(libraries.ctx, path)
	delete(libraries.refs, path)
	err := c.Finalize()
	c.Destroy()
	return err
}

func isCode(err error, code uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == code
}

// with runs f with a session of its own.
func (m *Module) with(f func(s pkcs11.SessionHandle) error) error {
	s := <-m.sessions
	defer func() { m.sessions <- s }()
	return f(s)
}

// find returns the one object of class labelled label. A missing key is
// an error that names its label and the token.
func (m *Module) find(class uint, label string) (pkcs11.ObjectHandle, error) {
	var objs []pkcs11.ObjectHandle
	err := m.with(func(s pkcs11.SessionHandle) error {
		tmpl := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		}
		if err := m.ctx.FindObjectsInit(s, tmpl); err != nil {
			return err
		}
		defer m.ctx.FindObjectsFinal(s)
		var err error
		objs, _, err = m.ctx.FindObjects(s, 2)
		return err
	})
	what := map[uint]string{pkcs11.CKO_SECRET_KEY: "secret key", pkcs11.CKO_PRIVATE_KEY: "private key", pkcs11.CKO_PUBLIC_KEY: "public key"}[class]
	switch {
	case err != nil:
		return 0, fmt.Errorf("hsm: find %s %q: %w", what, label, err)
	case len(objs) == 0:
		return 0, fmt.Errorf("hsm: token %q holds no %s labelled %q", m.token, what, label)
	case len(objs) > 1:
		return 0, fmt.Errorf("hsm: token %q holds several %ss labelled %q: a label names one key", m.token, what, label)
	}
	return objs[0], nil
}

// publicKey reads the Ed25519 public key labelled label.
func (m *Module) publicKey(label string) (ed25519.PublicKey, error) {
	h, err := m.find(pkcs11.CKO_PUBLIC_KEY, label)
	if err != nil {
		return nil, err
	}
	var attrs []*pkcs11.Attribute
	err = m.with(func(s pkcs11.SessionHandle) error {
		var err error
		attrs, err = m.ctx.GetAttributeValue(s, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
		return err
	})
	if err != nil || len(attrs) != 1 {
		return nil, fmt.Errorf("hsm: public key %q: CKA_EC_POINT: %v", label, err)
	}
	point := attrs[0].Value
	// CKA_EC_POINT is the point's DER OCTET STRING (some modules give the
	// 32 bytes raw).
	if len(point) != ed25519.PublicKeySize {
		var raw []byte
		if rest, err := asn1.Unmarshal(point, &raw); err != nil || len(rest) != 0 {
			return nil, fmt.Errorf("hsm: public key %q is not an Ed25519 key", label)
		}
		point = raw
	}
	if len(point) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("hsm: public key %q is not an Ed25519 key", label)
	}
	return ed25519.PublicKey(point), nil
}

// Signer returns the note signer named name over the Ed25519 key pair
// labelled label, with its verifier key in note's text form. Signatures
// are made inside the module (CKM_EDDSA); the private key never leaves
// it.
func (m *Module) Signer(label, name string) (note.Signer, string, error) {
	priv, err := m.find(pkcs11.CKO_PRIVATE_KEY, label)
	if err != nil {
		return nil, "", err
	}
	pub, err := m.publicKey(label)
	if err != nil {
		return nil, "", err
	}
	vkey, err := note.NewEd25519VerifierKey(name, pub)
	if err != nil {
		return nil, "", fmt.Errorf("hsm: key %q: %w", label, err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, "", fmt.Errorf("hsm: key %q: %w", label, err)
	}
	s := &signer{m: m, label: label, priv: priv, name: name, hash: v.KeyHash(), verifier: v}
	// One signature checked against the public key: a private key that
	// is not the public one's (two pairs under one label) would sign
	// what nobody verifies.
	msg := []byte("vigie/hsm-key-check\n")
	sig, err := s.Sign(msg)
	if err != nil {
		return nil, "", err
	}
	if !ed25519.Verify(pub, msg, sig) {
		return nil, "", fmt.Errorf("hsm: the private and public keys labelled %q do not match", label)
	}
	return s, vkey, nil
}

// signer is a note.Signer whose key is in the module.
type signer struct {
	m        *Module
	label    string
	priv     pkcs11.ObjectHandle
	name     string
	hash     uint32
	verifier note.Verifier
}

var _ note.Signer = (*signer)(nil)

func (s *signer) Name() string    { return s.name }
func (s *signer) KeyHash() uint32 { return s.hash }

func (s *signer) Sign(msg []byte) ([]byte, error) {
	var sig []byte
	err := s.m.with(func(h pkcs11.SessionHandle) error {
		if err := s.m.ctx.SignInit(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmEdDSA, nil)}, s.priv); err != nil {
			return err
		}
		var err error
		sig, err = s.m.ctx.Sign(h, msg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("hsm: sign with %q: %w", s.label, err)
	}
	return sig, nil
}

// Signers is the keys.Signers of a module: Labels maps a role
// ("checkpoint", "receipt") to its key's label (default "vigie-<role>").
type Signers struct {
	Module *Module
	Labels map[string]string
}

var _ keys.Signers = Signers{}

// Label returns role's key's label.
func (s Signers) Label(role string) string {
	if l := s.Labels[role]; l != "" {
		return l
	}
	return "vigie-" + role
}

// Signer implements keys.Signers. It creates no key: a key missing from
// the module is an error naming its label.
func (s Signers) Signer(role, name string) (note.Signer, string, error) {
	return s.Module.Signer(s.Label(role), name)
}

// GenerateSigningKey creates an Ed25519 key pair labelled label in the
// token, its private key sensitive and not extractable. It refuses a
// label already taken.
func (m *Module) GenerateSigningKey(label string) error {
	if err := m.free(label); err != nil {
		return err
	}
	return m.with(func(s pkcs11.SessionHandle) error {
		pub := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, []byte(ed25519OIDDER)),
		}
		priv := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		}
		_, _, err := m.ctx.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmECEdwardsKeyPairGen, nil)}, pub, priv)
		if err != nil {
			// Modules of the v2.40 era name the curve by a printable
			// string.
			pub[3] = pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, []byte(ed25519PrintableCurveDER))
			if _, _, err2 := m.ctx.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmECEdwardsKeyPairGen, nil)}, pub, priv); err2 == nil {
				return nil
			}
			return fmt.Errorf("hsm: generate Ed25519 key %q: %w", label, err)
		}
		return nil
	})
}

// GenerateKEK creates an AES-256 key-encryption key labelled label in the
// token, sensitive and not extractable, for encryption and decryption
// only. It refuses a label already taken.
func (m *Module) GenerateKEK(label string) error {
	if err := m.free(label); err != nil {
		return err
	}
	return m.with(func(s pkcs11.SessionHandle) error {
		_, err := m.ctx.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		})
		if err != nil {
			return fmt.Errorf("hsm: generate AES key %q: %w", label, err)
		}
		return nil
	})
}

// free fails if an object labelled label exists.
func (m *Module) free(label string) error {
	var objs []pkcs11.ObjectHandle
	err := m.with(func(s pkcs11.SessionHandle) error {
		if err := m.ctx.FindObjectsInit(s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}); err != nil {
			return err
		}
		defer m.ctx.FindObjectsFinal(s)
		var err error
		objs, _, err = m.ctx.FindObjects(s, 1)
		return err
	})
	if err != nil {
		return fmt.Errorf("hsm: find %q: %w", label, err)
	}
	if len(objs) > 0 {
		return fmt.Errorf("hsm: token %q already holds a key labelled %q", m.token, label)
	}
	return nil
}
