package ladonpolicy_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ory/ladon"
	"github.com/ory/ladon/manager/memory"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/nationalrules"
)

// The benchmarks of docs/performance.md:
//
//	go test -run='^$' -bench='Decide|StockLadon' -benchtime=10s ./consent/ladonpolicy/
//
// Decide: the engine on N patients with five directives each and the
// illustrative national rules, every patient compiled and cached first;
// each decision is for a random patient, with its consent snapshot, and a
// mix of requests. StockLadon: ladon's memory manager and default matcher
// on N per-patient policies.

// benchPatient returns patient i's INS (0 <= i < 1e6).
func benchPatient(i int) ident.INS {
	var b [15]byte
	copy(b[:], "1850575")
	n := i
	for k := 12; k >= 7; k-- {
		b[k] = byte('0' + n%10)
		n /= 10
	}
	var v uint64
	for _, c := range b[:13] {
		v = v*10 + uint64(c-'0')
	}
	key := 97 - v%97
	b[13], b[14] = byte('0'+key/10), byte('0'+key%10)
	x, err := ident.ParseINS(string(b[:]))
	if err != nil {
		panic(err)
	}
	return x
}

var benchDocIDs = func() []string {
	out := make([]string, 100)
	for i := range out {
		out[i] = "doc-" + strconv.Itoa(i)
	}
	return out
}()

func rppsOf(base uint64, i int) ident.RPPS {
	return ident.MustParseRPPS(fmt.Sprintf("%011d", base+uint64(i)))
}

// professionals used by the generated consents, precomputed so that
// generating a snapshot does not allocate.
var benchRPPS = func() []ident.RPPS {
	out := make([]ident.RPPS, 4096)
	for i := range out {
		out[i] = rppsOf(10000000000, i*7919%100000)
	}
	return out
}()

var benchFrom = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// genConsent writes patient i's consent (five directives, version 1) into
// c without allocating.
func genConsent(i int, c *consent.Consent) {
	if cap(c.Directives) < 5 {
		c.Directives = make([]consent.Directive, 5)
	}
	c.Version = 1
	c.Directives = c.Directives[:5]
	r := func(k int) ident.RPPS { return benchRPPS[(i*31+k*1009)%len(benchRPPS)] }
	c.Directives[0] = consent.Directive{ID: "t", Kind: consent.TreatingPhysician, Professional: r(0)}
	c.Directives[1] = consent.Directive{ID: "b", Kind: consent.BlockProfessional, Professional: r(1), From: benchFrom}
	c.Directives[2] = consent.Directive{ID: "a", Kind: consent.AllowProfessional, Professional: r(2)}
	c.Directives[3] = consent.Directive{ID: "h", Kind: consent.HideDocument, Document: benchDocIDs[i%len(benchDocIDs)]}
	if i%2 == 0 {
		c.Directives[4] = consent.Directive{ID: "o", Kind: consent.OpposeEmergency, Until: benchFrom.AddDate(5, 0, 0)}
	} else {
		c.Directives[4] = consent.Directive{ID: "o", Kind: consent.HideDocumentType, DocumentType: "psychiatric-summary"}
	}
}

// benchRequests is the request mix: care-team reads of several types,
// a record read, a write, a treating physician, a hidden document, a
// break-glass, a blocked professional and a dentist outside the matrix.
func benchRequests() []consent.Request {
	base := baseRequest()
	var out []consent.Request
	for _, t := range []string{"consultation-note", "lab-report", "discharge-summary", "prescription", "imaging-report"} {
		r := base
		r.Resource.DocumentType = t
		out = append(out, r)
	}
	rec := base
	rec.Resource = consent.Resource{Kind: consent.ResourceRecord}
	write := base
	write.Action = consent.ActionWrite
	hid := base
	hid.Resource.Hidden = true
	bg := base
	bg.Actor.CareTeam, bg.Purpose, bg.Justification = false, consent.PurposeBreakGlass, "unconscious"
	dent := base
	dent.Actor.Profession, dent.Resource.DocumentType = "40", "advance-directives"
	out = append(out, rec, write, hid, bg, dent)
	return out
}

func readProcStatus(field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return -1
}

// percentiles reports the 50th and 99th percentiles of samples.
func percentiles(b *testing.B, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(samples[len(samples)*99/100].Nanoseconds()), "p99-ns")
}

func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{1000, 1000000} {
		b.Run(fmt.Sprintf("patients=%d", n), func(b *testing.B) { benchDecide(b, n) })
	}
}

func benchDecide(b *testing.B, n int) {
	rules := nationalrules.Illustrative()
	e := ladonpolicy.NewEngine(ladonpolicy.Options{MaxPatients: 2 * n})
	patients := make([]ident.INS, n)
	var snap consent.Consent
	reqs := benchRequests()
	start := time.Now()
	for i := range n {
		patients[i] = benchPatient(i)
		genConsent(i, &snap)
		req := reqs[0]
		req.Patient = patients[i]
		if _, err := e.Decide(&req, &snap, rules); err != nil {
			b.Fatal(err)
		}
	}
	build := time.Since(start)
	if e.CachedPatients() != n {
		b.Fatalf("cached %d patients, want %d", e.CachedPatients(), n)
	}
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap, rss := float64(ms.HeapAlloc)/(1<<20), readProcStatus("VmRSS")
	// Warm up to the steady state of a running service: decide until the
	// garbage collector has run twice, so that the heap's pages up to its
	// goal are in use. Without this, the timed decisions would fault in
	// fresh pages (those FreeOSMemory just returned, and the heap's growth
	// to its first goal), which a running service does not.
	gcs := ms.NumGC
	for i := 0; i < 20_000_000; i++ {
		p := (i * 7919) % n
		genConsent(p, &snap)
		req := reqs[i%len(reqs)]
		req.Patient = patients[p]
		if _, err := e.Decide(&req, &snap, rules); err != nil {
			b.Fatal(err)
		}
		if i%50000 == 0 {
			runtime.ReadMemStats(&ms)
			if ms.NumGC >= gcs+2 {
				break
			}
		}
	}

	samples := make([]time.Duration, 0, 1<<21)
	rng := uint64(0x9e3779b97f4a7c15)
	var allowed int
	b.ReportAllocs()
	k := 0
	for b.Loop() {
		rng ^= rng << 13
		rng ^= rng >> 7
		rng ^= rng << 17
		i := int(rng % uint64(n))
		genConsent(i, &snap)
		req := &reqs[k%len(reqs)]
		k++
		req.Patient = patients[i]
		t0 := time.Now()
		d, err := e.Decide(req, &snap, rules)
		el := time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		if d.Effect == consent.Allow {
			allowed++
		}
		if len(samples) < cap(samples) {
			samples = append(samples, el)
		}
	}
	b.StopTimer()
	percentiles(b, samples)
	// Reported after the loop: b.Loop and ResetTimer drop earlier metrics.
	b.ReportMetric(heap, "heap-MiB")
	b.ReportMetric(rss, "rss-MiB")
	b.ReportMetric(readProcStatus("VmHWM"), "peak-rss-MiB")
	b.ReportMetric(float64(build.Nanoseconds())/float64(n), "build-ns/patient")
	if allowed == 0 || allowed == k {
		b.Fatalf("%d of %d allowed: the mix does not exercise both answers", allowed, k)
	}
	runtime.KeepAlive(e)
}

// BenchmarkStockLadon is ladon as documented: the memory manager, the
// default matcher, one policy per patient (its care team may read its
// documents) and one IsAllowed per decision.
func BenchmarkStockLadon(b *testing.B) {
	for _, tt := range []struct {
		n        int
		patterns bool
	}{{10000, false}, {100000, false}, {10000, true}} {
		name := fmt.Sprintf("policies=%d", tt.n)
		if tt.patterns {
			name += "/pattern-subjects"
		}
		b.Run(name, func(b *testing.B) { benchStock(b, tt.n, tt.patterns) })
	}
}

func benchStock(b *testing.B, n int, patternSubjects bool) {
	ctx := context.Background()
	m := memory.NewMemoryManager()
	warden := &ladon.Ladon{Manager: m} // as documented: default matcher, audit logger and metric
	subject := func(i int) string { return "rpps:" + strconv.Itoa(10000000000+i) }
	for i := range n {
		subj := subject(i)
		if patternSubjects {
			subj = "rpps:<(" + strconv.Itoa(10000000000+i) + "|" + strconv.Itoa(20000000000+i) + ")>"
		}
		p := &ladon.DefaultPolicy{
			ID:        strconv.Itoa(i),
			Subjects:  []string{subj},
			Actions:   []string{"read", "write"},
			Resources: []string{"patients:" + strconv.Itoa(i) + ":documents:<.*>"},
			Effect:    ladon.AllowAccess,
			Conditions: ladon.Conditions{
				"purpose": &ladon.StringEqualCondition{Equals: "TREAT"},
			},
		}
		if err := m.Create(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap := float64(ms.HeapAlloc) / (1 << 20)
	samples := make([]time.Duration, 0, 1<<16)
	rng := uint64(0x2545f4914f6cdd1d)
	var allowed, total int
	b.ReportAllocs()
	for b.Loop() {
		rng ^= rng << 13
		rng ^= rng >> 7
		rng ^= rng << 17
		i := int(rng % uint64(n))
		r := &ladon.Request{Subject: subject(i), Action: "read", Resource: "patients:" + strconv.Itoa(i) + ":documents:doc-1", Context: ladon.Context{"purpose": "TREAT"}}
		if rng%4 == 0 {
			r.Subject = subject((i + 1) % n) // someone else's patient: denied
		}
		t0 := time.Now()
		err := warden.IsAllowed(ctx, r)
		el := time.Since(t0)
		total++
		if err == nil {
			allowed++
		}
		if len(samples) < cap(samples) {
			samples = append(samples, el)
		}
	}
	b.StopTimer()
	percentiles(b, samples)
	b.ReportMetric(heap, "heap-MiB")
	if allowed == 0 || allowed == total {
		b.Fatalf("%d of %d allowed", allowed, total)
	}
}

// BenchmarkDenyLoop compares, on the same policies and a denied request,
// stock DoPoliciesAllow (which starts a goroutine per denial) and the
// engine's own loop.
func BenchmarkDenyLoop(b *testing.B) {
	rules := nationalrules.Illustrative()
	e := ladonpolicy.NewEngine(ladonpolicy.Options{})
	c := consent.Consent{Version: 1, Directives: dirs(block("b1", drCare))}
	req := baseRequest()
	lr, err := e.LadonRequest(&req, &c, rules)
	if err != nil {
		b.Fatal(err)
	}
	cands := ladonpolicy.Candidates(e, lr)
	ctx := context.Background()
	b.Run("stock", func(b *testing.B) {
		stock := ladonpolicy.NewLadon(e.Manager(), nil)
		b.ReportAllocs()
		for b.Loop() {
			if stock.DoPoliciesAllow(ctx, lr, cands) == nil {
				b.Fatal("allowed")
			}
		}
	})
	b.Run("engine", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if d, _ := e.Decide(&req, &c, rules); d.Effect != consent.Deny {
				b.Fatal("allowed")
			}
		}
	})
}

// longestPatterns returns consent.MaxPatterns patterns of
// consent.MaxPatternLen bytes each, whose expressions come as close as
// they can to consent.MaxPatternProgram instructions with alternations of
// expressions on which a backtracking engine takes exponential time, and
// whose remaining length is literal text: the costliest patterns a
// patient may hold.
func longestPatterns() []string {
	units := []string{`(a+)+b`, `(\w+\d*)+:`, `(.*a){3}`, `(a|aa)+c`, `([a-z]+)*[.]`, `(?i)[^\W\d]{2,3}q`, `(x+x+)+y`, `(?:\d|\w)+\.`, `.*1.*a`}
	out := make([]string, consent.MaxPatterns)
	for i := range out {
		body := ""
		for k := i; k < i+len(units); k++ {
			next := units[k%len(units)]
			if body != "" {
				next = body + "|" + next
			}
			if consent.CheckPattern("<"+next+">") == nil {
				body = next
			}
		}
		p := "<" + body + ">"
		out[i] = p + strings.Repeat("z", consent.MaxPatternLen-len(p))
	}
	return out
}

// BenchmarkLongestPatterns is the worst case of pattern matching: a
// patient with the most directives (64), of which the most patterns (4),
// each of the longest length (128 bytes) and the largest program (64
// instructions), made of expressions that are exponential for a
// backtracking engine.
//
//	go test -run='^$' -bench=LongestPatterns -count=6 ./consent/ladonpolicy/
//
// Decide/doc=128B: Engine.Decide for a document ID of the longest length
// requests may have (128 bytes, matched by none of the patterns, so that
// each is run to the end), by the care team, the treating physician and
// break-glass in turn. Match/doc=N: the four compiled patterns alone,
// against a resource with a document ID of N bytes (1 KiB and more: what
// Decide would cost if the limit on document IDs were raised).
func BenchmarkLongestPatterns(b *testing.B) {
	rules := nationalrules.Illustrative()
	pats := longestPatterns()
	treating := rppsOf(30000000000, 1)
	c := consent.Consent{Version: 1, Directives: []consent.Directive{{ID: "tp", Kind: consent.TreatingPhysician, Professional: treating}}}
	for i, p := range pats {
		if len(p) != consent.MaxPatternLen || strings.Count(p, "|") < 3 {
			b.Fatalf("pattern %d: %d bytes, %d alternatives; want %d bytes, 4 or more", i, len(p), strings.Count(p, "|")+1, consent.MaxPatternLen)
		}
		c.Directives = append(c.Directives, consent.Directive{ID: "p" + strconv.Itoa(i), Kind: consent.HideDocument, Document: p})
	}
	for i := len(c.Directives); i < consent.MaxDirectives; i++ {
		c.Directives = append(c.Directives, consent.Directive{ID: "h" + strconv.Itoa(i), Kind: consent.HideDocument, Document: "doc-" + strconv.Itoa(i)})
	}
	// The baseline: the same consent with document IDs for patterns.
	base := consent.Consent{Version: 1, Directives: slices.Clone(c.Directives)}
	for i := range pats {
		base.Directives[1+i].Document = "stay-" + strconv.Itoa(i)
	}
	id := func(n int) string { return strings.Repeat("aa1_", n/4+1)[:n] }

	for _, tt := range []struct {
		name string
		c    *consent.Consent
	}{{"Decide/doc=128B", &c}, {"Decide/baseline-without-patterns", &base}} {
		b.Run(tt.name, func(b *testing.B) {
			e := ladonpolicy.NewEngine(ladonpolicy.Options{})
			if err := e.CheckConsent(tt.c, rules); err != nil {
				b.Fatal(err)
			}
			reqs := make([]consent.Request, 3)
			for i := range reqs {
				reqs[i] = benchRequests()[0]
				reqs[i].Patient = benchPatient(1)
				reqs[i].Resource = consent.Resource{Kind: consent.ResourceDocument, DocumentID: id(128), DocumentType: "lab-report"}
			}
			reqs[1].Actor.RPPS, reqs[1].Actor.CareTeam = treating, false
			reqs[2].Actor.CareTeam, reqs[2].Purpose, reqs[2].Justification = false, consent.PurposeBreakGlass, "unconscious"
			for i := range reqs {
				d, err := e.Decide(&reqs[i], tt.c, rules)
				if err != nil || d.Effect != consent.Allow {
					b.Fatalf("reader %d: Decide() = %v, %v; want ALLOW", i, d.Effect, err)
				}
			}
			b.ReportAllocs()
			k := 0
			for b.Loop() {
				if _, err := e.Decide(&reqs[k%len(reqs)], tt.c, rules); err != nil {
					b.Fatal(err)
				}
				k++
			}
		})
	}
	compiled := make([]*ladonpolicy.Pattern, len(pats))
	for i, p := range pats {
		var err error
		if compiled[i], err = ladonpolicy.CompilePattern("document/<.*>/" + p); err != nil {
			b.Fatal(err)
		}
	}
	for _, n := range []int{128, 1 << 10, 8 << 10} {
		name := fmt.Sprintf("Match/doc=%dB", n)
		if n >= 1<<10 {
			name = fmt.Sprintf("Match/doc=%dKiB", n>>10)
		}
		b.Run(name, func(b *testing.B) {
			s := "document/lab-report/" + id(n)
			b.SetBytes(int64(len(s)))
			for b.Loop() {
				for _, p := range compiled {
					if ok, err := p.Match(s); ok || err != nil {
						b.Fatalf("Match() = %v, %v; want no match", ok, err)
					}
				}
			}
		})
	}
}
