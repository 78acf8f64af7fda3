package nodekill

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	trillianpb "github.com/google/trillian"
	"github.com/google/trillian/types"
	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/vigie-sante/vigie/api/client"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

const (
	hospital = "750712184"
	doctor   = "10000000001"
)

// patients returns n valid INS numbers, made up for the test.
func patients(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for i := range n {
		base := fmt.Sprintf("2790351215%03d", 100+i)
		var v uint64
		fmt.Sscan(base, &v)
		ins := fmt.Sprintf("%s%02d", base, 97-v%97)
		if _, err := ident.ParseINS(ins); err != nil {
			t.Fatalf("made-up INS %d: %v", i, err)
		}
		out = append(out, ins)
	}
	return out
}

// ack is an acknowledged decision, as the client saw it.
type ack struct {
	id         string
	patient    string
	decision   vigiev1.Decision
	index      uint64
	commitment string
	attempts   int
	start      time.Time
	took       time.Duration
}

// load sends Check calls from several clients to the nodes, each call
// retried with the same request_id on the next node until acknowledged.
type load struct {
	c       *cluster
	conns   []vigiev1.AccessServiceClient
	token   string
	pats    []string
	sent    atomic.Int64 // distinct request ids sent
	mu      sync.Mutex
	acks    []ack
	given   []string // request ids never acknowledged
	refused []error  // answers that are not the service being down
}

func (l *load) check(ctx context.Context, req *vigiev1.CheckRequest, first int) (*vigiev1.CheckResponse, int, error) {
	n := len(l.conns)
	deadline := time.Now().Add(90 * time.Second)
	for attempt := 0; ; attempt++ {
		i := (first + attempt) % n
		nd := l.c.nodes[i]
		nd.inflight.add(1)
		cctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+l.token), 5*time.Second)
		r, err := l.conns[i].Check(cctx, req)
		cancel()
		nd.inflight.add(-1)
		if err == nil {
			return r, attempt + 1, nil
		}
		switch status.Code(err) {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted, codes.Internal, codes.Unknown, codes.ResourceExhausted:
		default:
			return nil, attempt + 1, err
		}
		if time.Now().After(deadline) {
			return nil, attempt + 1, fmt.Errorf("not acknowledged after %d attempts: %w", attempt+1, err)
		}
		// The next node at once; after a round, a short wait.
		if (attempt+1)%n == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func (l *load) run(stop <-chan struct{}, client int, wg *sync.WaitGroup) {
	defer wg.Done()
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		id := fmt.Sprintf("nk-%d-%d", client, seq)
		pat := l.pats[rand.N(len(l.pats))]
		req := &vigiev1.CheckRequest{
			RequestId:    id,
			PatientIns:   pat,
			Actor:        &vigiev1.Actor{Rpps: doctor, Profession: "10", Organization: hospital, Sector: "care", CareTeam: true},
			Action:       vigiev1.Action_ACTION_READ,
			Resource:     &vigiev1.Resource{Kind: &vigiev1.Resource_Record{Record: &vigiev1.WholeRecord{}}},
			PurposeOfUse: vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT,
		}
		l.sent.Add(1)
		start := time.Now()
		r, attempts, err := l.check(context.Background(), req, client+seq)
		took := time.Since(start)
		l.mu.Lock()
		switch {
		case err != nil && status.Code(err) == codes.Unavailable || err != nil && errors.Is(err, context.DeadlineExceeded):
			l.given = append(l.given, id)
		case err != nil:
			l.refused = append(l.refused, err)
		case r.Event == nil:
			l.refused = append(l.refused, fmt.Errorf("request %s: answered without an event", id))
		default:
			l.acks = append(l.acks, ack{id: id, patient: pat, decision: r.Decision, index: r.Event.LeafIndex, commitment: r.Event.Commitment, attempts: attempts, start: start, took: took})
		}
		l.mu.Unlock()
		time.Sleep(10 * time.Millisecond) // a steady load, not a benchmark
	}
}

// kill is one SIGKILL (or two at once) and what followed.
type kill struct {
	what     string
	at       time.Time
	nodes    []int
	takeover time.Duration // -1: not measured (no lease metric)
	resumed  time.Duration // until Trillian's tree grew again; 0: not measured
}

// TestNodeKill kills Vigie nodes with SIGKILL under load and checks that
// nothing acknowledged is lost or duplicated (docs/operations.md, "Several
// nodes"). Its last line is the summary make test-nodes prints.
func TestNodeKill(t *testing.T) {
	if os.Getenv("VIGIE_TEST_NODES") != "1" {
		t.Skip("the node-kill test runs with VIGIE_TEST_NODES=1 (make test-nodes)")
	}
	began := time.Now()
	c := newCluster(t, 3)
	t.Logf("cluster up in %s: Trillian tree %d, nodes %s", time.Since(began).Round(time.Millisecond), c.treeID, c.servers)
	rn := c.startLoad(t, began)
	time.Sleep(2 * time.Second)

	// The kills: each lease's holder, a node mid-commit, two nodes at
	// once; twice over.
	var kills []kill
	nkilled := 0
	restart := func(ids ...int) {
		for _, i := range ids {
			c.start(c.nodes[i])
		}
	}
	for round := range 2 {
		duties := c.duties()
		for di, duty := range duties {
			h, ok := c.waitHolder(t, duty)
			k := kill{what: "holder of " + duty, takeover: -1}
			if !ok {
				// No node reports the lease metric: a node in turn.
				h = (round*len(duties) + di) % len(c.nodes)
				k.what = fmt.Sprintf("%s (no node reports vigie_ledger_lease_held: node %d)", k.what, h)
			}
			k.at, k.nodes = time.Now(), []int{h}
			c.nodes[h].kill()
			nkilled++
			if ok {
				k.takeover = c.waitTakeover(t, duty, h, k.at)
			}
			kills = append(kills, k)
			restart(h)
			time.Sleep(time.Second)
		}
		// Mid-commit: a node with calls in flight.
		k := kill{what: "node mid-commit", takeover: -1}
		h := -1
		for deadline := time.Now().Add(10 * time.Second); h < 0 && time.Now().Before(deadline); {
			for _, nd := range c.nodes {
				if nd.alive() && nd.inflight.get() > 0 {
					h = nd.i
					break
				}
			}
		}
		if h < 0 {
			t.Fatal("no node had a call in flight for 10 s: is the load running?")
		}
		k.at, k.nodes = time.Now(), []int{h}
		c.nodes[h].kill()
		nkilled++
		kills = append(kills, k)
		restart(h)
		time.Sleep(time.Second)
		// Two at once: every node but one.
		keep := rand.N(len(c.nodes))
		k = kill{what: "two nodes at once", takeover: -1, at: time.Now()}
		var wg sync.WaitGroup
		for _, nd := range c.nodes {
			if nd.i == keep {
				continue
			}
			k.nodes = append(k.nodes, nd.i)
			wg.Add(1)
			go func() { defer wg.Done(); nd.kill() }()
			nkilled++
		}
		wg.Wait()
		kills = append(kills, k)
		restart(k.nodes...)
		time.Sleep(time.Second)
	}
	time.Sleep(time.Second)
	c.finish(t, rn, "nodes", kills, nkilled, 10)
}

// running is a load under way, and the checkpoints every node serves
// meanwhile.
type running struct {
	l                   *load
	notes               *noteSet
	began, loadStart    time.Time
	stopLoad, stopWatch chan struct{}
	loadWG, watchWG     sync.WaitGroup
}

// startLoad starts Check calls from several clients across the nodes, and
// a watcher of every node's /checkpoint.
func (c *cluster) startLoad(t *testing.T, began time.Time) *running {
	t.Helper()
	rn := &running{began: began, stopLoad: make(chan struct{}), stopWatch: make(chan struct{})}
	l := &load{c: c, token: c.token("service", "hospital-his", hospital), pats: patients(t, 40)}
	for _, nd := range c.nodes {
		conn, err := grpc.NewClient(nd.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()),
			// A restarted node is called again soon.
			grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, MaxDelay: 500 * time.Millisecond}, MinConnectTimeout: time.Second}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		l.conns = append(l.conns, vigiev1.NewAccessServiceClient(conn))
	}

	rn.l = l
	// Every node's /checkpoint, collected all along.
	notes := &noteSet{seen: map[string]bool{}}
	rn.notes = notes
	rn.watchWG.Add(1)
	go func() {
		defer rn.watchWG.Done()
		for {
			select {
			case <-rn.stopWatch:
				return
			case <-time.After(100 * time.Millisecond):
			}
			for _, nd := range c.nodes {
				notes.fetch(nd)
			}
		}
	}()

	rn.loadStart = time.Now()
	const clients = 4
	for i := range clients {
		rn.loadWG.Add(1)
		go l.run(rn.stopLoad, i, &rn.loadWG)
	}
	return rn
}

// finish stops the load and checks the run: every acknowledged decision
// in the log exactly once, leaves equal events, every checkpoint
// consistent with every earlier one, vigie audit and a sample of vigie
// verify pass. It logs the figures of each kill and, last, the summary
// line "<name>: <kills> kills, <acknowledged> acknowledged, <lost> lost,
// <duplicated> duplicated, audit ok".
func (c *cluster) finish(t *testing.T, rn *running, name string, kills []kill, nkilled, minKills int) {
	t.Helper()
	l, notes, began, loadStart := rn.l, rn.notes, rn.began, rn.loadStart
	stopLoad, stopWatch, loadWG, watchWG := rn.stopLoad, rn.stopWatch, &rn.loadWG, &rn.watchWG
	close(stopLoad)
	loadWG.Wait()
	loadDone := time.Now()

	l.mu.Lock()
	acks := slices.Clone(l.acks)
	l.mu.Unlock()
	for _, err := range l.refused {
		t.Errorf("a call was refused, not for the service being down: %v", err)
	}
	if len(l.given) > 0 {
		t.Logf("%d request(s) never acknowledged (clients gave up after 90 s): %v", len(l.given), l.given)
	}
	if len(acks) == 0 {
		t.Fatal("nothing acknowledged")
	}

	// A retried request_id gives the same answer: every request that
	// needed more than one attempt, and a sample of the others, again, on
	// a node at random.
	again := 0
	duplicated := 0
	tok := "Bearer " + l.token
	for i, a := range acks {
		if a.attempts == 1 && i%10 != 0 {
			continue
		}
		again++
		req := &vigiev1.CheckRequest{RequestId: a.id, PatientIns: a.patient,
			Actor:    &vigiev1.Actor{Rpps: doctor, Profession: "10", Organization: hospital, Sector: "care", CareTeam: true},
			Action:   vigiev1.Action_ACTION_READ,
			Resource: &vigiev1.Resource{Kind: &vigiev1.Resource_Record{Record: &vigiev1.WholeRecord{}}}, PurposeOfUse: vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT}
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", tok), 10*time.Second)
		r, err := l.conns[rand.N(len(l.conns))].Check(ctx, req)
		cancel()
		if err != nil {
			t.Errorf("request %s again: %v", a.id, err)
			continue
		}
		if r.Event.LeafIndex != a.index || r.Event.Commitment != a.commitment || r.Decision != a.decision {
			t.Errorf("request %s again: leaf %d %s %v, first answer leaf %d %s %v", a.id, r.Event.LeafIndex, r.Event.Commitment, r.Decision, a.index, a.commitment, a.decision)
			duplicated++
		}
	}

	// Drain: Trillian's tree holds every event, and a checkpoint covers
	// them.
	ctx := context.Background()
	db, err := pgx.Connect(ctx, c.vigieDB)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	var events, accessEvents, nextIndex uint64
	if err := db.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE kind = 'access'), coalesce(max(leaf_index) + 1, 0) FROM events").Scan(&events, &accessEvents, &nextIndex); err != nil {
		t.Fatal(err)
	}
	if nextIndex != events {
		t.Errorf("events: %d, but the highest leaf index is %d: a gap", events, nextIndex-1)
	}
	treeSize := c.waitTrillianSize(t, events)
	drained := time.Now()
	cl, err := client.New(client.Config{BaseURLs: strings.Split(c.servers, ",")})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := cl.PublicKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(keys.CheckpointKey)
	if err != nil {
		t.Fatal(err)
	}
	latest := c.waitCheckpoint(t, cl, verifier, events)
	notes.add(latest)

	// Every leaf, through the API (several endpoints).
	var leaves [][]byte
	for uint64(len(leaves)) < events {
		page, err := cl.Leaves(ctx, uint64(len(leaves)), events)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			t.Fatalf("no leaves from %d, want %d", len(leaves), events)
		}
		leaves = append(leaves, page...)
	}
	// Exactly once: each acknowledged decision at its index, no leaf twice,
	// no two requests on one leaf, no more access events than requests.
	lost := 0
	byIndex := map[uint64]string{}
	for _, a := range acks {
		h, err := event.ParseHash(a.commitment)
		if err != nil {
			t.Errorf("request %s: commitment: %v", a.id, err)
			lost++
			continue
		}
		if a.index >= uint64(len(leaves)) || !bytes.Equal(leaves[a.index], verify.LeafValue(h)) {
			t.Errorf("request %s: acknowledged at leaf %d, not in the log there", a.id, a.index)
			lost++
		}
		if other, ok := byIndex[a.index]; ok {
			t.Errorf("requests %s and %s acknowledged at the same leaf %d", other, a.id, a.index)
			duplicated++
		}
		byIndex[a.index] = a.id
	}
	seenLeaf := map[string]uint64{}
	for i, v := range leaves {
		if j, ok := seenLeaf[string(v)]; ok {
			t.Errorf("leaves %d and %d are the same", j, i)
			duplicated++
		}
		seenLeaf[string(v)] = uint64(i)
	}
	if sent := uint64(l.sent.Load()); accessEvents > sent {
		t.Errorf("%d access events for %d distinct request ids", accessEvents, sent)
		duplicated += int(accessEvents - sent)
	}
	if treeSize != events || uint64(len(leaves)) != events {
		t.Errorf("Trillian's tree has %d leaves, the API gave %d, the ledger recorded %d events", treeSize, len(leaves), events)
	}

	// Checkpoints: the ones every node served during the run, and every
	// one stored; one per size, each consistent with the next.
	close(stopWatch)
	watchWG.Wait()
	rows, err := db.Query(ctx, "SELECT note FROM checkpoints ORDER BY size")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n []byte
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		notes.add(n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	nCheckpoints := c.checkCheckpoints(t, cl, verifier, notes.all())
	var security int
	if err := db.QueryRow(ctx, "SELECT count(*) FROM security_events").Scan(&security); err != nil {
		t.Fatal(err)
	}
	if security != 0 {
		t.Errorf("%d security events recorded (a different leaf at an index, an inconsistent log)", security)
	}

	// The verifiers, from outside, against every node.
	code, out, errOut := c.cli("audit", "--server", c.servers, "--token", c.token("regulator", "cnil"), "--state-dir", t.TempDir(),
		"--json", "--alert-odd-hours-min", "1000000", "--alert-burst-patients", "1000000")
	auditOK := code == 0 && jsonVerdict(out) == "verified"
	if !auditOK {
		t.Errorf("vigie audit: exit %d\n%s\n%s", code, tail(out), errOut)
	}
	for _, p := range l.pats[:3] {
		code, out, errOut := c.cli("verify", "--server", c.servers, "--token", c.token("patient", p), "--state-dir", t.TempDir(), "--json")
		if code != 0 || jsonVerdict(out) != "verified" {
			t.Errorf("vigie verify (a patient of the test): exit %d\n%s\n%s", code, tail(out), errOut)
		}
	}

	// The figures.
	var takeovers []time.Duration
	for _, k := range kills {
		tk := "takeover not measured"
		if k.takeover >= 0 {
			takeovers = append(takeovers, k.takeover)
			tk = "takeover " + k.takeover.Round(time.Millisecond).String()
		}
		if k.resumed > 0 {
			tk += ", Trillian's tree grew again after " + k.resumed.Round(time.Millisecond).String()
		}
		in, all := within(acks, k.at, time.Second)
		t.Logf("kill %s, node(s) %v: %s; calls succeed again after %s; calls started from 1 s before to 2 s after: %d/%d answered within 1 s", k.what, k.nodes, tk, succeedAgain(acks, k.at).Round(time.Millisecond), in, all)
	}
	if len(takeovers) > 0 {
		slices.Sort(takeovers)
		t.Logf("lease takeover: median %s, max %s (%d kills of a holder)", takeovers[len(takeovers)/2].Round(time.Millisecond), takeovers[len(takeovers)-1].Round(time.Millisecond), len(takeovers))
	} else {
		t.Logf("lease takeover: not measured, no node reports vigie_ledger_lease_held")
	}
	inAll, all := 0, 0
	for _, k := range kills {
		in, n := within(acks, k.at, time.Second)
		inAll, all = inAll+in, all+n
	}
	if all > 0 {
		t.Logf("around the kills: %d of %d calls (%.1f %%) answered within 1 s", inAll, all, 100*float64(inAll)/float64(all))
	}
	retried := 0
	for _, a := range acks {
		if a.attempts > 1 {
			retried++
		}
	}
	t.Logf("%d requests sent in %s (%.0f/s), %d acknowledged (%d after a retry on another node), %d asked again; %d events, %d checkpoints checked; drained %s after the load; wall time %s",
		l.sent.Load(), loadDone.Sub(loadStart).Round(time.Second), float64(l.sent.Load())/loadDone.Sub(loadStart).Seconds(),
		len(acks), retried, again, events, nCheckpoints, drained.Sub(loadDone).Round(time.Millisecond), time.Since(began).Round(time.Second))

	if nkilled < minKills {
		t.Errorf("%d kills, want at least %d", nkilled, minKills)
	}
	if lost != 0 || duplicated != 0 {
		t.Errorf("%d lost, %d duplicated", lost, duplicated)
	}
	verdict := "audit ok"
	if !auditOK {
		verdict = "audit FAILED"
	}
	line := fmt.Sprintf("%s: %d kills, %d acknowledged, %d lost, %d duplicated, %s", name, nkilled, len(acks), lost, duplicated, verdict)
	t.Log(line)
	fmt.Println(line)
}

// within counts the acknowledged calls that started around at (from 1 s
// before to 2 s after), and those answered within limit.
func within(acks []ack, at time.Time, limit time.Duration) (in, all int) {
	for _, a := range acks {
		if a.start.Before(at.Add(-time.Second)) || a.start.After(at.Add(2*time.Second)) {
			continue
		}
		all++
		if a.took <= limit {
			in++
		}
	}
	return in, all
}

// succeedAgain is the time from at until the first call started after at
// was acknowledged (retries on other nodes included); -1 if none was.
func succeedAgain(acks []ack, at time.Time) time.Duration {
	first := time.Duration(-1)
	for _, a := range acks {
		if a.start.Before(at) {
			continue
		}
		if d := a.start.Add(a.took).Sub(at); first < 0 || d < first {
			first = d
		}
	}
	return first
}

func jsonVerdict(out string) string {
	var r struct {
		Verdict string `json:"verdict"`
	}
	json.Unmarshal([]byte(out), &r)
	return r.Verdict
}

func tail(s string) string {
	if len(s) > 3000 {
		return "..." + s[len(s)-3000:]
	}
	return s
}

// duties returns the duties whose lease a live node reports (the labels of
// vigie_ledger_lease_held), sorted; without the metric, three placeholders
// that stand for the sender's, the checkpointer's and the erasures'.
func (c *cluster) duties() []string {
	set := map[string]bool{}
	for _, nd := range c.nodes {
		if nd.alive() {
			for duty := range leaseMetric(nd.admin) {
				set[duty] = true
			}
		}
	}
	if len(set) == 0 {
		return []string{"sender", "checkpointer", "erasures"}
	}
	var out []string
	for d := range set {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// waitHolder returns the node holding duty's lease, waiting for one if
// there is none right now (a holder was just killed); false if no node
// reports the lease metric at all.
func (c *cluster) waitHolder(t *testing.T, duty string) (int, bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		held, reported := c.leaseHolders()
		if !reported {
			return 0, false
		}
		if h, ok := held[duty]; ok {
			return h, true
		}
	}
	t.Fatalf("no node holds the %s lease for a minute", duty)
	return 0, false
}

// waitTakeover waits until a live node other than from reports holding
// duty's lease, and returns the time since the kill.
func (c *cluster) waitTakeover(t *testing.T, duty string, from int, killed time.Time) time.Duration {
	t.Helper()
	deadline := killed.Add(time.Minute)
	for ; time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		// The killed node is not read (leaseHolders reads live nodes only).
		if held, _ := c.leaseHolders(); hasHolder(held, duty) {
			return time.Since(killed)
		}
	}
	t.Fatalf("no node took the %s lease over within a minute of killing node %d", duty, from)
	return 0
}

func hasHolder(held map[string]int, duty string) bool {
	_, ok := held[duty]
	return ok
}

// waitTrillianSize waits until Trillian's tree has size leaves (the
// sender drained the outbox), and returns its size.
func (c *cluster) waitTrillianSize(t *testing.T, size uint64) uint64 {
	t.Helper()
	conn, err := grpc.NewClient(c.trillian, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	log := trillianpb.NewTrillianLogClient(conn)
	var got uint64
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		r, err := log.GetLatestSignedLogRoot(context.Background(), &trillianpb.GetLatestSignedLogRootRequest{LogId: c.treeID})
		if err != nil {
			continue
		}
		var root types.LogRootV1
		if err := root.UnmarshalBinary(r.GetSignedLogRoot().GetLogRoot()); err != nil {
			t.Fatal(err)
		}
		got = root.TreeSize
		if got >= size {
			return got
		}
	}
	t.Errorf("Trillian's tree has %d leaves after a minute, want %d", got, size)
	return got
}

// waitCheckpoint waits until the nodes serve a checkpoint of size at
// least size, and returns its note.
func (c *cluster) waitCheckpoint(t *testing.T, cl *client.Client, v note.Verifier, size uint64) []byte {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		b, err := cl.Checkpoint(context.Background())
		if err != nil {
			continue
		}
		cp, err := verify.OpenCheckpoint(b, v)
		if err != nil {
			t.Fatalf("a node's checkpoint: %v", err)
		}
		if cp.Size >= size {
			return b
		}
	}
	t.Fatalf("no checkpoint of size %d after a minute", size)
	return nil
}

// checkCheckpoints checks signed checkpoints: each signed by the log's
// key, one root per size, each consistent with the next larger (hence
// with every earlier one). It returns how many sizes it checked.
func (c *cluster) checkCheckpoints(t *testing.T, cl *client.Client, v note.Verifier, notes [][]byte) int {
	t.Helper()
	bySize := map[uint64]verify.Checkpoint{}
	noteOf := map[uint64][]byte{}
	for _, n := range notes {
		cp, err := verify.OpenCheckpoint(n, v)
		if err != nil {
			t.Errorf("checkpoint %q: %v", n, err)
			continue
		}
		if old, ok := bySize[cp.Size]; ok && old != cp {
			t.Errorf("two checkpoints of size %d differ:\n%s\n%s", cp.Size, noteOf[cp.Size], n)
			continue
		}
		bySize[cp.Size], noteOf[cp.Size] = cp, n
	}
	var sizes []uint64
	for s := range bySize {
		sizes = append(sizes, s)
	}
	sort.Slice(sizes, func(i, j int) bool { return sizes[i] < sizes[j] })
	for i := 1; i < len(sizes); i++ {
		old, new := bySize[sizes[i-1]], bySize[sizes[i]]
		if old.Size == 0 {
			continue
		}
		proof, err := cl.ConsistencyProof(context.Background(), old.Size, new.Size)
		if err != nil {
			t.Errorf("consistency proof %d -> %d: %v", old.Size, new.Size, err)
			continue
		}
		if err := verify.VerifyConsistency(old, new, proof); err != nil {
			t.Errorf("checkpoints %d and %d are not consistent: %v", old.Size, new.Size, err)
		}
	}
	return len(sizes)
}

// noteSet is the set of checkpoint notes seen.
type noteSet struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (s *noteSet) add(n []byte) {
	s.mu.Lock()
	s.seen[string(n)] = true
	s.mu.Unlock()
}

func (s *noteSet) fetch(nd *node) {
	if !nd.alive() {
		return
	}
	hc := http.Client{Timeout: time.Second}
	resp, err := hc.Get("http://" + nd.http + "/checkpoint")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(http.MaxBytesReader(nil, resp.Body, verify.MaxNoteSize)); err == nil {
		s.add(b.Bytes())
	}
}

func (s *noteSet) all() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for n := range s.seen {
		out = append(out, []byte(n))
	}
	return out
}
