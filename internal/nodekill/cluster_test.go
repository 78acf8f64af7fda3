package nodekill

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vigie-sante/vigie/ledger/sqldb/pgtest"
	"github.com/vigie-sante/vigie/ledger/trillian"
)

// moduleRoot is the module's directory, from this package's.
const moduleRoot = "../.."

// handedOut are the addresses freeAddr returned: the kernel may give a
// port closed a moment ago to the next listener, so that two processes
// of one cluster would be told the same port.
var handedOut = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

// freeAddr returns a loopback address with a port free right now, never
// one it returned before in this process.
func freeAddr(t *testing.T) string {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		if !handedOut.addrs[addr] {
			handedOut.addrs[addr] = true
			return addr
		}
	}
}

// proc is a process of the cluster, its output kept in a file.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  string // file of its standard output and error
	done chan struct{}
}

func startProc(t *testing.T, dir, name, bin string, args ...string) *proc {
	t.Helper()
	return startCmd(t, dir, name, exec.Command(bin, args...))
}

// startCmd starts cmd (its credentials set, say) as a process of the
// cluster.
func startCmd(t *testing.T, dir, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	out := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "--- start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(p.kill)
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// tail is the end of the process's output, for a failure's message.
func (p *proc) tail() string { return tailFile(p.out) }

func tailFile(name string) string {
	b, _ := os.ReadFile(name)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// cluster is PostgreSQL (the test's), Trillian's log server and signer,
// and the Vigie nodes, on loopback.
type cluster struct {
	t        *testing.T
	dir      string
	vigie    string // the vigie binary
	vigieDB  string
	trillDB  string
	trillian string // the (first) log server's gRPC address
	treeID   int64
	nodes    []*node
	servers  string // the nodes' HTTP URLs, comma-separated

	trillians []string // every log server's gRPC address
	sub       substrate
}

// node is one `vigie serve`: its addresses stay the same across restarts.
type node struct {
	i                 int
	dataDir           string
	grpc, http, admin string
	mu                sync.Mutex
	p                 *proc
	inflight          inflight
	starts            int
}

// trillianBin returns the directory of Trillian's binaries:
// $VIGIE_TRILLIAN_BIN, or what scripts/trillian-bin.sh builds (cached).
func trillianBin(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("VIGIE_TRILLIAN_BIN"); d != "" {
		return d
	}
	cmd := exec.Command(filepath.Join(moduleRoot, "scripts", "trillian-bin.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/trillian-bin.sh: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// buildVigie builds the vigie binary once for the test, unless
// $VIGIE_TEST_BIN names one (a release's, say).
func buildVigie(t *testing.T, dir string) string {
	t.Helper()
	if b := os.Getenv("VIGIE_TEST_BIN"); b != "" {
		return b
	}
	bin := filepath.Join(dir, "vigie")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/vigie")
	cmd.Dir = moduleRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/vigie: %v\n%s", err, out)
	}
	return bin
}

// substrate is what a cluster runs on. The zero value is the node-kill
// test's: a database each for Vigie and Trillian on the test's PostgreSQL,
// one log server and one signer forced master.
type substrate struct {
	vigieDB, trillDB string // "": a new database on the test's cluster
	// trillian starts Trillian's processes (common: their storage flags)
	// and sets c.trillian and c.trillians.
	trillian  func(c *cluster, common []string)
	serveArgs []string // more flags for every node
}

// newCluster starts Trillian on PostgreSQL and n Vigie nodes.
func newCluster(t *testing.T, n int) *cluster { return newClusterOn(t, n, substrate{}) }

// newClusterOn starts Trillian and n Vigie nodes on sub.
func newClusterOn(t *testing.T, n int, sub substrate) *cluster {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	c := &cluster{t: t, dir: dir, sub: sub}
	// After the processes are killed (cleanups run last first): their
	// outputs, if the test failed.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		for _, f := range logs {
			t.Logf("the end of %s:\n%s", filepath.Base(f), tailFile(f))
		}
	})
	c.vigieDB, c.trillDB = sub.vigieDB, sub.trillDB
	if c.vigieDB == "" {
		c.vigieDB = pgtest.NewDatabase(t)
	}
	if c.trillDB == "" {
		c.trillDB = pgtest.NewDatabase(t)
	}
	// Trillian's PostgreSQL storage is written for PostgreSQL's default
	// isolation and does not retry serialization failures: its database
	// runs at READ COMMITTED, whatever the cluster's default (as
	// trillian.OpenPostgreSQL sets for the in-process mode).
	conn, err := pgx.Connect(ctx, c.trillDB)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{conn.Config().Database}.Sanitize()+" SET default_transaction_isolation = 'read committed'"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	// Trillian's tables, created as the in-process mode creates them.
	s, err := trillian.OpenPostgreSQL(ctx, c.trillDB, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	c.vigie = buildVigie(t, dir)
	common := []string{"--storage_system=postgresql", "--postgresql_uri=" + c.trillDB, "--quota_system=noop", "--logtostderr"}
	if sub.trillian != nil {
		sub.trillian(c, common)
	} else {
		bin := trillianBin(t)
		c.trillian = freeAddr(t)
		c.trillians = []string{c.trillian}
		startProc(t, dir, "trillian_log_server", filepath.Join(bin, "trillian_log_server"),
			append([]string{"--rpc_endpoint=" + c.trillian, "--http_endpoint=" + freeAddr(t)}, common...)...)
		startProc(t, dir, "trillian_log_signer", filepath.Join(bin, "trillian_log_signer"),
			append([]string{"--rpc_endpoint=" + freeAddr(t), "--http_endpoint=" + freeAddr(t),
				"--force_master", "--sequencer_interval=50ms", "--batch_size=1000", "--num_sequencers=1"}, common...)...)
	}
	for _, a := range c.trillians {
		waitTCP(t, a)
	}

	var urls []string
	for i := range n {
		nd := &node{i: i, dataDir: filepath.Join(dir, fmt.Sprintf("node%d", i)), grpc: freeAddr(t), http: freeAddr(t), admin: freeAddr(t)}
		c.nodes = append(c.nodes, nd)
		urls = append(urls, "http://"+nd.http)
	}
	c.servers = strings.Join(urls, ",")

	c.initLog()
	return c
}

// initLog makes the tree and the keys once with vigie init, pinned in the
// database; every node gets a copy of the keys and the tree's ID.
func (c *cluster) initLog() {
	t := c.t
	t.Helper()
	initDir := filepath.Join(c.dir, "init")
	code, out, errOut := c.cli("init", "--db", c.vigieDB, "--trillian", strings.Join(c.trillians, ","), "--data-dir", initDir, "--json")
	if code != 0 {
		t.Fatalf("vigie init: exit %d\n%s", code, errOut)
	}
	// The embedded token issuer's key (vigie token makes it) goes with
	// the others, so that every node accepts the test's tokens; a real
	// cluster's come from an OpenID Connect provider.
	if code, _, errOut := c.cli("token", "--data-dir", initDir, "--role", "admin", "--sub", "setup"); code != 0 {
		t.Fatalf("vigie token: exit %d\n%s", code, errOut)
	}
	var pinned struct {
		TreeID        string `json:"tree_id"`
		KeysDirectory string `json:"keys_directory"`
	}
	if err := json.Unmarshal([]byte(out), &pinned); err != nil {
		t.Fatalf("vigie init --json: %v\n%s", err, out)
	}
	var err error
	if c.treeID, err = strconv.ParseInt(pinned.TreeID, 10, 64); err != nil {
		t.Fatalf("vigie init: tree_id: %v", err)
	}
	for _, nd := range c.nodes {
		if err := os.CopyFS(filepath.Join(nd.dataDir, "keys"), os.DirFS(pinned.KeysDirectory)); err != nil {
			t.Fatal(err)
		}
		chmodPrivate(t, nd.dataDir)
		c.start(nd)
	}
}

// chmodPrivate makes a copied data directory owner-only, as ledger/keys
// requires of secret files.
func chmodPrivate(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(p, 0o700)
		}
		return os.Chmod(p, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// start starts node nd and waits until it is ready.
func (c *cluster) start(nd *node) {
	c.t.Helper()
	args := []string{"serve", "--data-dir", nd.dataDir, "--db", c.vigieDB, "--trillian", strings.Join(c.trillians, ","),
		"--grpc-addr", nd.grpc, "--http-addr", nd.http, "--admin-addr", nd.admin,
		"--checkpoint-interval", "200ms", "--rate-limit", "off", "--log-level", "warn", "--drain-timeout", "5s"}
	if c.treeID != 0 {
		args = append(args, "--trillian-tree-id", strconv.FormatInt(c.treeID, 10))
	}
	args = append(args, c.sub.serveArgs...)
	p := startProc(c.t, c.dir, fmt.Sprintf("vigie%d", nd.i), c.vigie, args...)
	nd.mu.Lock()
	nd.p = p
	nd.starts++
	nd.mu.Unlock()
	deadline := time.Now().Add(time.Minute)
	for {
		if p.exited() {
			c.t.Fatalf("node %d exited at start:\n%s", nd.i, p.tail())
		}
		resp, err := http.Get("http://" + nd.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("node %d not ready after a minute:\n%s", nd.i, p.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// alive reports whether the node's process runs.
func (nd *node) alive() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.p != nil && !nd.p.exited()
}

// kill kills the node with SIGKILL.
func (nd *node) kill() {
	nd.mu.Lock()
	p := nd.p
	nd.mu.Unlock()
	p.kill()
}

func waitTCP(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening after a minute", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leaseHolders returns, per duty, the node whose metrics say it holds the
// duty's lease (vigie_ledger_lease_held{duty} 1), among the live nodes,
// and whether any node reports the metric at all.
func (c *cluster) leaseHolders() (held map[string]int, reported bool) {
	held = map[string]int{}
	for _, nd := range c.nodes {
		if !nd.alive() {
			continue
		}
		for duty, v := range leaseMetric(nd.admin) {
			reported = true
			if v == 1 {
				held[duty] = nd.i
			}
		}
	}
	return held, reported
}

var dutyLabel = regexp.MustCompile(`duty="([^"]*)"`)

// leaseMetric reads vigie_ledger_lease_held from a node's admin server:
// duty -> value; empty if the node does not answer or has no such metric.
func leaseMetric(admin string) map[string]float64 {
	out := map[string]float64{}
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + admin + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "vigie_ledger_lease_held{") {
			continue
		}
		m := dutyLabel.FindStringSubmatch(line)
		f := strings.Fields(line)
		if m == nil || len(f) < 2 {
			continue
		}
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			out[m[1]] = v
		}
	}
	return out
}

// cli runs a vigie command (not serve) and returns its exit code and
// outputs.
func (c *cluster) cli(args ...string) (int, string, string) {
	c.t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command(c.vigie, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errOut.String()
	} else if err != nil {
		c.t.Fatalf("vigie %s: %v", args[0], err)
	}
	return 0, out.String(), errOut.String()
}

// token mints a token with `vigie token` from the first node's keys (every
// node has the same).
func (c *cluster) token(role, sub string, orgs ...string) string {
	c.t.Helper()
	args := []string{"token", "--data-dir", c.nodes[0].dataDir, "--role", role, "--sub", sub, "--ttl", "2h"}
	if len(orgs) > 0 {
		args = append(args, "--org", strings.Join(orgs, ","))
	}
	code, out, errOut := c.cli(args...)
	if code != 0 {
		c.t.Fatalf("vigie token: exit %d\n%s", code, errOut)
	}
	return strings.TrimSpace(out)
}

// inflight counts a node's calls in flight.
type inflight struct {
	mu sync.Mutex
	n  int
}

func (f *inflight) add(d int) {
	f.mu.Lock()
	f.n += d
	f.mu.Unlock()
}

func (f *inflight) get() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}
