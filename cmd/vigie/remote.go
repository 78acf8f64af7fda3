package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"google.golang.org/grpc/codes"

	"github.com/vigie-sante/vigie/api/client"
	"github.com/vigie-sante/vigie/api/server"
	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/event"
)

// remoteConfig is what vigie verify and vigie audit share: the server, the
// credentials, the log's keys and where the state is kept.
type remoteConfig struct {
	server, token, tokenFile string
	logKey, receiptKey       string
	// witnessPolicy is the text of --witness-policy's file, if given.
	witnessPolicyFile, witnessPolicy string
	acceptPolicyChange               bool
	tlsCA                            string
	stateDir                         string
	evidence                         string
	lang                             string
	json                             bool
	timeout                          time.Duration
	// anonymousPublic: the token goes only with the calls that need it
	// (vigie verify: the server need not learn which log entries a
	// patient checks).
	anonymousPublic bool
}

func (c *remoteConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.server, "server", "http://127.0.0.1:8080", "URL of Vigie's HTTP API; several nodes of one service as URL,URL,... (a call moves on when one is down; the state is kept under the first)")
	fs.StringVar(&c.token, "token", "", "bearer token (prefer the environment variable, or --token-file: a flag shows in the process list)")
	fs.StringVar(&c.tokenFile, "token-file", "", "file holding the bearer token")
	fs.StringVar(&c.logKey, "log-key", "", "the log's checkpoint key (note verifier, <origin>+<hash>+<key>), obtained by another channel; default: pinned on first use")
	fs.StringVar(&c.receiptKey, "receipt-key", "", "the log's receipt key (note verifier); default: pinned on first use")
	fs.StringVar(&c.witnessPolicyFile, "witness-policy", "", "file of the witness policy (Sigsum format) the log's latest checkpoint must meet, obtained by another channel; pinned with the keys")
	fs.BoolVar(&c.acceptPolicyChange, "accept-witness-policy-change", false, "replace the witness policy pinned by the one --witness-policy gives (see docs/verification.md before doing so)")
	fs.StringVar(&c.tlsCA, "tls-ca", "", "CA certificates (PEM) to trust for an https server, instead of the system's")
	fs.StringVar(&c.stateDir, "state-dir", defaultStateDir(), "directory of the pinned keys and of what the last run saw")
	fs.StringVar(&c.evidence, "evidence", "", "file to write the evidence to when verification fails (default: <state dir>/evidence/<command>-<time>.json)")
	fs.StringVar(&c.lang, "lang", "fr", "language of the report: fr or en")
	fs.BoolVar(&c.json, "json", false, "print the report as JSON")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "give up after this long")
}

func defaultStateDir() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ".vigie"
	}
	return filepath.Join(dir, "vigie")
}

// usageError is a bad flag or argument: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

func (c *remoteConfig) validate() error {
	switch {
	case c.lang != "fr" && c.lang != "en":
		return usagef("--lang: want fr or en, not %q", c.lang)
	case c.token != "" && c.tokenFile != "":
		return usagef("--token and --token-file: give one")
	case c.timeout <= 0:
		return usagef("--timeout must be positive")
	case c.stateDir == "":
		return usagef("--state-dir must not be empty")
	}
	if c.logKey != "" {
		if _, err := note.NewVerifier(c.logKey); err != nil {
			return usagef("--log-key: %v", err)
		}
	}
	if c.receiptKey != "" {
		if _, err := note.NewVerifier(c.receiptKey); err != nil {
			return usagef("--receipt-key: %v", err)
		}
	}
	if c.acceptPolicyChange && c.witnessPolicyFile == "" {
		return usagef("--accept-witness-policy-change needs --witness-policy")
	}
	if c.witnessPolicyFile != "" {
		b, err := os.ReadFile(c.witnessPolicyFile)
		if err != nil {
			return usagef("--witness-policy: %v", err)
		}
		c.witnessPolicy = string(b)
	}
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return usagef("--token-file: %v", err)
		}
		c.token = strings.TrimSpace(string(b))
	}
	return nil
}

// client returns the API client.
func (c *remoteConfig) client() (*client.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16 // vigie audit --tiles fetches 8 bundles at once: keep their connections
	hc := &http.Client{Timeout: 60 * time.Second, Transport: tr}
	if c.tlsCA != "" {
		pem, err := os.ReadFile(c.tlsCA)
		if err != nil {
			return nil, usagef("--tls-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usagef("--tls-ca: no PEM certificate in %s", c.tlsCA)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	var servers []string
	for s := range strings.SplitSeq(c.server, ",") {
		servers = append(servers, strings.TrimSpace(s))
	}
	cl, err := client.New(client.Config{BaseURLs: servers, Token: c.token, HTTPClient: hc, UserAgent: "vigie/" + versionString(), AnonymousPublic: c.anonymousPublic})
	if err != nil {
		return nil, usagef("--server or --token: %v", err)
	}
	return cl, nil
}

// stateFile is what vigie verify and vigie audit keep about one server,
// in <state dir>/servers/<host>-<hash>.json (mode 0600): the log's keys,
// pinned on first use, and the latest checkpoint each command verified.
// docs/verification.md documents it.
type stateFile struct {
	Version       int    `json:"version"`
	Server        string `json:"server"`
	Origin        string `json:"origin"`
	CheckpointKey string `json:"checkpoint_key"`
	ReceiptKey    string `json:"receipt_key,omitempty"`
	// WitnessPolicy is the witness policy pinned (canonical form), if
	// one was given.
	WitnessPolicy string       `json:"witness_policy,omitempty"`
	PinnedAt      time.Time    `json:"pinned_at"`
	Verify        *verifyState `json:"verify,omitempty"`
	Audit         *auditState  `json:"audit,omitempty"`

	path string
}

// verifyState is what vigie verify saw last: the newest checkpoint, and
// the head of each patient's chain (by pseudonym; never an INS). Hashes
// are in ledger/event's one text form: a state file with another is
// refused, not read in part.
type verifyState struct {
	Checkpoint string                         `json:"checkpoint"`
	SeenAt     time.Time                      `json:"seen_at"`
	Chains     map[event.Hash]audit.ChainHead `json:"chains,omitempty"`
}

// auditState is where vigie audit stopped: the checkpoint it verified and
// the compact range of the tree at its size.
type auditState struct {
	Checkpoint string       `json:"checkpoint"`
	SeenAt     time.Time    `json:"seen_at"`
	Range      []event.Hash `json:"range"`
}

const stateVersion = 1

// loadState reads the state of server, or returns an empty one.
func loadState(dir, server string) (*stateFile, error) {
	u, _ := url.Parse(server)
	h := sha256.Sum256([]byte(server))
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, strings.ToLower(u.Host))
	path := filepath.Join(dir, "servers", fmt.Sprintf("%s-%x.json", name, h[:4]))
	st := &stateFile{Version: stateVersion, Server: server, path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	if st.Version != stateVersion || st.Server != server {
		return nil, fmt.Errorf("state %s: version %d for server %q, want version %d for %q", path, st.Version, st.Server, stateVersion, server)
	}
	st.path = path
	return st, nil
}

// save writes the state atomically, readable by its owner only.
func (st *stateFile) save() error {
	if err := os.MkdirAll(filepath.Dir(st.path), 0o700); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(st.path, append(b, '\n'))
}

func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// connect returns the client of the server, the state kept about it and
// the log's keys; when the keys are to be pinned now (first use), it says
// so on stderr, unless the report is JSON.
func (c *remoteConfig) connect(ctx context.Context, command string, stderr io.Writer) (*client.Client, *stateFile, *logKeys, error) {
	cl, err := c.client()
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := loadState(c.stateDir, cl.BaseURL())
	if err != nil {
		return nil, nil, nil, err
	}
	keys, err := resolveKeys(ctx, c, cl, st)
	if err != nil {
		return nil, nil, nil, err
	}
	if keys.firstUse && !c.json {
		fmt.Fprintln(stderr, langOf(c.lang).t("cli.keyFirstUse", "command", command, "server", cl.BaseURL(), "key", keys.checkpoint))
	}
	if keys.rotated && !c.json {
		fmt.Fprintln(stderr, langOf(c.lang).t("cli.keyRotated", "command", command, "server", cl.BaseURL(), "key", keys.checkpoint))
	}
	return cl, st, keys, nil
}

// logKeys are the keys a run trusts, and whether they were pinned just now
// (on first use) rather than before or given by flag.
type logKeys struct {
	audit.Keys
	origin, checkpoint, receipt string
	witnessPolicy               string
	firstUse                    bool
	// rotated: the key changed by a transition from the pinned one.
	rotated bool
}

// resolveKeys returns the log's keys: given by flag, pinned in the state,
// or else fetched from the server and to be pinned (trust on first use).
// The rule is audit.PinKeys'.
func resolveKeys(ctx context.Context, c *remoteConfig, cl *client.Client, st *stateFile) (*logKeys, error) {
	pinned := audit.PublicKeys{CheckpointKey: st.CheckpointKey, ReceiptKey: st.ReceiptKey, WitnessPolicy: st.WitnessPolicy}
	given := audit.PublicKeys{CheckpointKey: c.logKey, ReceiptKey: c.receiptKey, WitnessPolicy: c.witnessPolicy}
	if c.acceptPolicyChange {
		// The reader says the new policy is the one: it is pinned once
		// the run succeeds.
		pinned.WitnessPolicy = ""
	}
	p, err := audit.PinKeys(pinned, given, func() (audit.PublicKeys, error) {
		pub, err := cl.PublicKeys(ctx)
		if err != nil {
			return audit.PublicKeys{}, err
		}
		return audit.PublicKeys{CheckpointKey: pub.CheckpointKey, ReceiptKey: pub.ReceiptKey}, nil
	})
	var me *audit.KeyMismatchError
	var ke *audit.KeyError
	switch {
	case errors.As(err, &me) && me.Which == "witness policy":
		return nil, usagef("--witness-policy differs from the witness policy pinned for %s in %s; if you trust the new policy (see docs/verification.md), give --accept-witness-policy-change", st.Server, st.path)
	case errors.As(err, &ke) && ke.Which == "witness policy" && ke.Given:
		return nil, usagef("--witness-policy: %v", ke.Err)
	case errors.As(err, &ke) && ke.Which == "witness policy":
		return nil, fmt.Errorf("the witness policy pinned in %s: %v", st.path, ke.Err)
	case errors.As(err, &me) && me.Which == "checkpoint":
		return nil, usagef("--log-key differs from the key pinned for %s on %s in %s; if the log's key really changed, delete that file", st.Server, st.PinnedAt.Format(time.DateOnly), st.path)
	case errors.As(err, &me):
		return nil, usagef("--receipt-key differs from the key pinned for %s in %s; if the log's key really changed, delete that file", st.Server, st.path)
	case errors.As(err, &ke) && ke.Given && ke.Which == "checkpoint":
		return nil, usagef("--log-key: %v", ke.Err)
	case errors.As(err, &ke) && ke.Given:
		return nil, usagef("--receipt-key: %v", ke.Err)
	case errors.As(err, &ke):
		return nil, fmt.Errorf("the server's %s key: %v", ke.Which, ke.Err)
	case err != nil:
		return nil, err
	}
	rotated := false
	if !p.FirstUse {
		// The log's key may have changed by a transition checkpoint
		// signed by the pinned one (a server without the route has none).
		notes, err := cl.Transitions(ctx)
		var ce *client.Error
		if err != nil && !(errors.As(err, &ce) && ce.HTTPStatus == http.StatusNotFound) {
			return nil, err
		}
		if rotated, err = p.FollowTransitions(notes); err != nil {
			return nil, fmt.Errorf("the witness policy pinned in %s: %v", st.path, err)
		}
	}
	return &logKeys{Keys: p.Keys, origin: p.Origin, checkpoint: p.CheckpointKey, receipt: p.ReceiptKey, witnessPolicy: p.WitnessPolicy, firstUse: p.FirstUse, rotated: rotated}, nil
}

// savedState returns what vigie verify saved, as ledger/audit keeps it
// (audit.SavedState: the rule of what is saved lives there).
func (st *stateFile) savedState() *audit.SavedState {
	s := &audit.SavedState{Chains: map[event.Hash]audit.ChainHead{}}
	if st.Verify == nil {
		return s
	}
	if st.Verify.Checkpoint != "" {
		s.Checkpoint = []byte(st.Verify.Checkpoint)
	}
	maps.Copy(s.Chains, st.Verify.Chains)
	return s
}

// setSavedState records what vigie verify saves, seen at now.
func (st *stateFile) setSavedState(s *audit.SavedState, now time.Time) {
	if st.Verify == nil {
		st.Verify = &verifyState{}
	}
	if len(s.Checkpoint) > 0 {
		st.Verify.Checkpoint, st.Verify.SeenAt = string(s.Checkpoint), now.UTC()
	}
	if len(s.Chains) > 0 {
		st.Verify.Chains = maps.Clone(s.Chains)
	}
}

// pin records the keys in the state.
func (k *logKeys) pin(st *stateFile, now time.Time) {
	if st.CheckpointKey == "" {
		st.PinnedAt = now
	}
	st.Origin, st.CheckpointKey, st.ReceiptKey = k.origin, k.checkpoint, k.receipt
	st.WitnessPolicy = k.witnessPolicy
}

// evidenceFile writes evidence as JSON, readable by its owner only, and
// returns its path.
func (c *remoteConfig) writeEvidence(command string, now time.Time, v any) (string, error) {
	path := c.evidence
	if path == "" {
		path = filepath.Join(c.stateDir, "evidence", fmt.Sprintf("%s-%s.json", command, now.UTC().Format("20060102T150405Z")))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("evidence: %w", err)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", err
	}
	if err := writeFileAtomic(path, append(b, '\n')); err != nil {
		return "", fmt.Errorf("evidence: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return path, nil
	}
	return abs, nil
}

// historyError returns err as audit.VerifyHistory knows it: the server's
// DATA_LOSS answer about an event of the history is an
// *audit.UnreadableError (a finding, not a failure to ask).
func historyError(err error) error {
	var ae *client.Error
	if !errors.As(err, &ae) || ae.Code != codes.DataLoss {
		return err
	}
	ue := &audit.UnreadableError{Detail: fmt.Sprintf("%s: %s", ae.Code, ae.Message)}
	if ae.Reason == server.ReasonEventUnreadable {
		if seq, err := strconv.ParseUint(ae.Metadata["seq"], 10, 64); err == nil {
			ue.Seq = seq
		}
		if index, err := strconv.ParseUint(ae.Metadata["leaf_index"], 10, 64); err == nil {
			ue.Index = &index
		}
	}
	return ue
}

// ConsistencyProof is the client's, with the server's BEYOND_CHECKPOINT
// answer as audit.ErrBeyondCheckpoint: asked to prove a checkpoint it
// signed, the server says it has not reached it (a rollback, found by
// package audit).
func (h historySource) ConsistencyProof(ctx context.Context, first, second uint64) ([][]byte, error) {
	p, err := h.Client.ConsistencyProof(ctx, first, second)
	var ae *client.Error
	if errors.As(err, &ae) && ae.Reason == server.ReasonBeyondCheckpoint {
		return nil, fmt.Errorf("%w: %v", audit.ErrBeyondCheckpoint, err)
	}
	return p, err
}
