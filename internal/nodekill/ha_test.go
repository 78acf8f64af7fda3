package nodekill

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	trillianpb "github.com/google/trillian"
	"github.com/google/trillian/types"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// haMergeDelay is the receipts' maximum merge delay in the HA test, above
// the worst signer failover measured (Trillian's etcd election session
// lives 60 s after its master dies): docs/operations.md, "High
// availability".
const haMergeDelay = "2m"

// TestHA kills, one after the other under Check load across three nodes,
// a Vigie node holding a lease, a Trillian log server, the Trillian signer
// that is master, and the PostgreSQL primary (Patroni and its postgres
// together), then runs the node-kill test's checks (docs/operations.md,
// "High availability"). Its last line is the summary make test-ha prints.
func TestHA(t *testing.T) {
	if os.Getenv("VIGIE_TEST_HA") != "1" {
		t.Skip("the failover test runs with VIGIE_TEST_HA=1 (make test-ha)")
	}
	for _, cmd := range []string{"etcd", "patroni"} {
		if _, err := exec.LookPath(cmd); err != nil {
			t.Skipf("%s is not installed (scripts/test-nodes.sh ha installs it)", cmd)
		}
	}
	began := time.Now()
	h := startHA(t)
	t.Logf("etcd and PostgreSQL under Patroni up in %s: primary %s", time.Since(began).Round(time.Millisecond), h.leader(t).name)
	c := newClusterOn(t, 3, substrate{
		vigieDB: h.newDatabase(t, "vigie", "serializable"), trillDB: h.newDatabase(t, "trillian", "read committed"),
		trillian: h.startTrillian, serveArgs: []string{"--merge-delay", haMergeDelay},
	})
	t.Logf("cluster up in %s: Trillian tree %d, nodes %s", time.Since(began).Round(time.Millisecond), c.treeID, c.servers)
	rn := c.startLoad(t, began)
	time.Sleep(3 * time.Second)

	var kills []kill
	// A Vigie node holding a lease (the sender's, if it reports it).
	duty := "sender"
	if d := c.duties(); !slices.Contains(d, duty) {
		duty = d[0]
	}
	k := kill{what: "Vigie node holding the " + duty + " lease", takeover: -1}
	i, ok := c.waitHolder(t, duty)
	size := h.treeSize(t, c)
	k.at, k.nodes = time.Now(), []int{i}
	c.nodes[i].kill()
	if ok {
		k.takeover = c.waitTakeover(t, duty, i, k.at)
	}
	k.resumed = h.waitGrowth(t, c, size, k.at)
	kills = append(kills, k)
	c.start(c.nodes[i])
	time.Sleep(time.Second)

	// A Trillian log server: the first, which the nodes call first.
	k = kill{what: "Trillian log server", takeover: -1}
	size = h.treeSize(t, c)
	k.at = time.Now()
	h.servers[0].p.kill()
	k.resumed = h.waitGrowth(t, c, size, k.at)
	kills = append(kills, k)
	h.servers[0].start(t, c)
	time.Sleep(time.Second)

	// The signer that is master.
	m := h.master(t, c)
	k = kill{what: "Trillian signer (master)", takeover: -1}
	k.at = time.Now()
	h.signers[m].p.kill()
	// The size is read once the master is dead and its last commit has
	// landed: growth read against a size from before the kill can be the
	// dead master's own last batch (12 ms once), not the new master's.
	time.Sleep(200 * time.Millisecond)
	size = h.treeSize(t, c)
	k.resumed = h.waitGrowth(t, c, size, k.at)
	if other := h.master(t, c); other == m {
		t.Errorf("signer %d still master after its kill", m)
	}
	kills = append(kills, k)
	h.signers[m].start(t, c)
	time.Sleep(time.Second)

	// The PostgreSQL primary: Patroni and its postgres together.
	h.waitSync(t)
	p := h.leader(t)
	k = kill{what: "PostgreSQL primary " + p.name, takeover: -1}
	size = h.treeSize(t, c)
	p.kill()
	// From its death: the kill takes a few milliseconds (Patroni, then
	// postgres), during which a commit may still succeed.
	k.at = time.Now()
	k.resumed = h.waitGrowth(t, c, size, k.at)
	kills = append(kills, k)
	if np := h.leader(t); np == p {
		t.Errorf("%s still the primary after its kill", p.name)
	} else {
		t.Logf("new primary %s", np.name)
	}
	// The old primary comes back as a replica (pg_rewind).
	p.start(t)
	time.Sleep(2 * time.Second)
	c.finish(t, rn, "ha", kills, len(kills), 4)
}

// ha is the substrate of the failover test: one etcd, three PostgreSQL
// under Patroni (synchronous_mode: a commit waits for one standby, and only
// that standby may be promoted), two Trillian log servers and two signers
// elected through etcd, on loopback.
type ha struct {
	dir     string // etcd's data and the processes' outputs
	pgDir   string // PostgreSQL's data directories, owned by its user
	etcd    string // etcd's client URL
	members []*member
	servers []*trillianProc
	signers []*trillianProc
}

// member is one PostgreSQL under Patroni.
type member struct {
	h       *ha
	name    string
	api, pg string // Patroni's REST address, PostgreSQL's
	dataDir string
	config  string
	p       *proc
	cred    *syscall.Credential // PostgreSQL's user, when the test is root
	bindir  string
}

// trillianProc is a Trillian log server or signer; its addresses stay the
// same across restarts.
type trillianProc struct {
	name, bin  string
	rpc, http  string
	args       []string
	p          *proc
	commonArgs []string
}

func startHA(t *testing.T) *ha {
	t.Helper()
	h := &ha{dir: t.TempDir()}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(h.dir, "*.log"))
		for _, f := range logs {
			t.Logf("the end of %s:\n%s", filepath.Base(f), tailFile(f))
		}
	})
	bindirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(bindirs, func(a, b string) int { return pgMajor(a) - pgMajor(b) })
	if len(bindirs) == 0 {
		t.Skip("PostgreSQL is not installed (scripts/test-nodes.sh ha installs it)")
	}
	bindir := bindirs[len(bindirs)-1]

	// etcd: Patroni's store and the signers' election.
	h.etcd = "http://" + freeAddr(t)
	peer := "http://" + freeAddr(t)
	startProc(t, h.dir, "etcd", "etcd", "--name", "e0", "--data-dir", filepath.Join(h.dir, "etcd"),
		"--listen-client-urls", h.etcd, "--advertise-client-urls", h.etcd,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "e0="+peer)
	waitTCP(t, strings.TrimPrefix(h.etcd, "http://"))

	// PostgreSQL refuses to run as root: as root, its data belongs to
	// the postgres user, as scripts/pg.sh does.
	var cred *syscall.Credential
	var err error
	if h.pgDir, err = os.MkdirTemp("", "vigie-ha-pg."); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(h.pgDir) })
	if os.Getuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root and no postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(h.pgDir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		m := &member{h: h, name: fmt.Sprintf("pg%d", i), api: freeAddr(t), pg: freeAddr(t), cred: cred, bindir: bindir}
		m.dataDir = filepath.Join(h.pgDir, m.name)
		m.config = filepath.Join(h.pgDir, m.name+".yml")
		if err := os.WriteFile(m.config, []byte(m.patroniConfig()), 0o644); err != nil {
			t.Fatal(err)
		}
		h.members = append(h.members, m)
		t.Cleanup(m.kill)
		m.start(t)
	}
	h.waitSync(t)
	return h
}

func pgMajor(bindir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(bindir)))
	return n
}

// patroniConfig is the member's Patroni configuration. The bootstrap part
// is the cluster's, stored in etcd by the first member: synchronous_mode,
// and the shortest leader TTL Patroni accepts (20 s), which bounds the
// time to detect a dead primary.
func (m *member) patroniConfig() string {
	return fmt.Sprintf(`scope: vigie-ha
name: %s
restapi:
  listen: %s
  connect_address: %s
etcd3:
  hosts: %s
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 1
    retry_timeout: 5
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      parameters:
        max_connections: 200
  initdb:
    - encoding: UTF8
    - locale: C
  pg_hba:
    - host replication replicator 127.0.0.1/32 trust
    - host all all 127.0.0.1/32 trust
    - local all all trust
postgresql:
  listen: %s
  connect_address: %s
  data_dir: %s
  bin_dir: %s
  pgpass: %s
  authentication:
    replication: {username: replicator, password: replicator}
    superuser: {username: postgres, password: postgres}
    rewind: {username: postgres, password: postgres}
  parameters:
    unix_socket_directories: %s
`, m.name, m.api, m.api, strings.TrimPrefix(m.h.etcd, "http://"), m.pg, m.pg, m.dataDir, m.bindir,
		filepath.Join(m.h.pgDir, m.name+".pgpass"), m.h.pgDir)
}

func (m *member) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command("patroni", m.config)
	cmd.Dir = m.h.pgDir
	cmd.Env = append(os.Environ(), "HOME="+m.h.pgDir)
	if m.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: m.cred}
	}
	m.p = startCmd(t, m.h.dir, "patroni-"+m.name, cmd)
}

// kill kills Patroni, then its postgres and every process of it (each
// postgres process is in a session of its own, so not by process group).
func (m *member) kill() {
	if m.p != nil {
		m.p.kill()
	}
	b, err := os.ReadFile(filepath.Join(m.dataDir, "postmaster.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || pid <= 1 {
		return
	}
	// Only a postgres of this data directory, not a reused pid.
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if !strings.Contains(string(cmdline), m.dataDir) {
		return
	}
	pids := []int{pid}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			if child, err := strconv.Atoi(filepath.Base(filepath.Dir(s))); err == nil {
				pids = append(pids, child)
			}
		}
	}
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGKILL)
	}
}

// clusterState is Patroni's GET /cluster.
type clusterState struct {
	Members []struct {
		Name  string `json:"name"`
		Role  string `json:"role"`
		State string `json:"state"`
	} `json:"members"`
}

// state asks the live members for the cluster's state.
func (h *ha) state() (clusterState, bool) {
	cl := http.Client{Timeout: time.Second}
	for _, m := range h.members {
		if m.p == nil || m.p.exited() {
			continue
		}
		resp, err := cl.Get("http://" + m.api + "/cluster")
		if err != nil {
			continue
		}
		var s clusterState
		err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&s)
		resp.Body.Close()
		if err == nil {
			return s, true
		}
	}
	return clusterState{}, false
}

// leader waits for a running primary (up to a minute) and returns it.
func (h *ha) leader(t *testing.T) *member {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		s, _ := h.state()
		for _, sm := range s.Members {
			if sm.Role == "leader" && sm.State == "running" {
				for _, m := range h.members {
					if m.name == sm.Name && !m.p.exited() {
						return m
					}
				}
			}
		}
	}
	t.Fatal("no PostgreSQL primary for a minute")
	return nil
}

// waitSync waits (up to two minutes) until a primary runs with a
// synchronous standby streaming: an acknowledged commit is on two nodes.
func (h *ha) waitSync(t *testing.T) {
	t.Helper()
	var s clusterState
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		s, _ = h.state()
		roles := map[string]bool{}
		for _, sm := range s.Members {
			if sm.State == "running" || sm.State == "streaming" {
				roles[sm.Role] = true
			}
		}
		if roles["leader"] && (roles["sync_standby"] || roles["sync-standby"]) {
			return
		}
	}
	t.Fatalf("no primary with a synchronous standby after two minutes: %+v", s)
}

// url is a multi-host URL of database db: the client takes the member
// that accepts writes, whichever it is.
func (h *ha) url(db string) string {
	var hosts []string
	for _, m := range h.members {
		hosts = append(hosts, m.pg)
	}
	return "postgres://postgres@" + strings.Join(hosts, ",") + "/" + db + "?sslmode=disable&target_session_attrs=read-write"
}

// newDatabase creates database name at the given default isolation and
// returns its multi-host URL.
func (h *ha) newDatabase(t *testing.T, name, isolation string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, h.url("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	id := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+id); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+id+" SET default_transaction_isolation = '"+isolation+"'"); err != nil {
		t.Fatal(err)
	}
	// Every member has it (the replicas replay it a little later): a
	// client of the multi-host URL goes no further than a member that
	// refuses it.
	for _, m := range h.members {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			mc, err := pgx.Connect(ctx, "postgres://postgres@"+m.pg+"/"+name+"?sslmode=disable")
			if err == nil {
				mc.Close(ctx)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("database %s not on %s after 30 s: %v", name, m.name, err)
			}
		}
	}
	return h.url(name)
}

// startTrillian starts two log servers and two signers whose mastership
// is elected through etcd (substrate.trillian).
func (h *ha) startTrillian(c *cluster, common []string) {
	t := c.t
	t.Helper()
	bin := trillianBin(t)
	for i := range 2 {
		s := &trillianProc{name: fmt.Sprintf("trillian_log_server%d", i), bin: filepath.Join(bin, "trillian_log_server"),
			rpc: freeAddr(t), http: freeAddr(t), commonArgs: common}
		h.servers = append(h.servers, s)
		c.trillians = append(c.trillians, s.rpc)
		s.start(t, c)
	}
	c.trillian = c.trillians[0]
	for i := range 2 {
		s := &trillianProc{name: fmt.Sprintf("trillian_log_signer%d", i), bin: filepath.Join(bin, "trillian_log_signer"),
			rpc: freeAddr(t), http: freeAddr(t), commonArgs: common,
			args: []string{"--election_system=etcd", "--etcd_servers=" + h.etcd, "--lock_file_path=/vigie/trillian-signer",
				// No voluntary handover during the test: only a kill moves mastership.
				"--master_hold_interval=1h", "--master_hold_jitter=0",
				"--sequencer_interval=50ms", "--batch_size=1000", "--num_sequencers=1"}}
		h.signers = append(h.signers, s)
		s.start(t, c)
	}
}

func (s *trillianProc) start(t *testing.T, c *cluster) {
	t.Helper()
	args := append([]string{"--rpc_endpoint=" + s.rpc, "--http_endpoint=" + s.http}, s.args...)
	s.p = startProc(t, c.dir, s.name, s.bin, append(args, s.commonArgs...)...)
	waitTCP(t, s.rpc)
}

// master returns the index of the signer whose metrics say it is master
// of the tree (is_master 1), waiting up to two minutes.
func (h *ha) master(t *testing.T, c *cluster) int {
	t.Helper()
	want := fmt.Sprintf(`is_master{logid="%d"} 1`, c.treeID)
	cl := http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for i, s := range h.signers {
			if s.p.exited() {
				continue
			}
			resp, err := cl.Get("http://" + s.http + "/metrics")
			if err != nil {
				continue
			}
			sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			found := false
			for sc.Scan() {
				if sc.Text() == want {
					found = true
				}
			}
			resp.Body.Close()
			if found {
				return i
			}
		}
	}
	t.Fatal("no Trillian signer master for two minutes")
	return -1
}

// treeSize is the tree's size from a live log server (0 if none answers).
func (h *ha) treeSize(t *testing.T, c *cluster) uint64 {
	t.Helper()
	for _, s := range h.servers {
		if s.p.exited() {
			continue
		}
		conn, err := grpc.NewClient(s.rpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r, err := trillianpb.NewTrillianLogClient(conn).GetLatestSignedLogRoot(ctx, &trillianpb.GetLatestSignedLogRootRequest{LogId: c.treeID})
		cancel()
		conn.Close()
		if err != nil {
			continue
		}
		var root types.LogRootV1
		if err := root.UnmarshalBinary(r.GetSignedLogRoot().GetLogRoot()); err != nil {
			t.Fatal(err)
		}
		return root.TreeSize
	}
	return 0
}

// waitGrowth waits (up to three minutes) until the tree is larger than
// size, and returns the time since at: the time until events are signed
// again after a kill.
func (h *ha) waitGrowth(t *testing.T, c *cluster, size uint64, at time.Time) time.Duration {
	t.Helper()
	for deadline := at.Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if h.treeSize(t, c) > size {
			return time.Since(at)
		}
	}
	t.Fatalf("Trillian's tree did not grow past %d within three minutes", size)
	return 0
}
