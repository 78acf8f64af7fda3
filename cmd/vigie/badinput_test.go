package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/consent/ident"
)

// httpClient calls the HTTP API of an e2e server.
type httpClient struct {
	t    testing.TB
	base string
}

func (e *e2e) http() *httpClient {
	m := httpLine.FindStringSubmatch(e.proc.output())
	if m == nil {
		e.t.Fatalf("no HTTP address in the output:\n%s", e.proc.output())
	}
	return &httpClient{t: e.t, base: m[1]}
}

func (e *e2e) token(role auth.Role, sub string, orgs ...string) string {
	e.t.Helper()
	tok, err := e.issuer.Mint(auth.TokenRequest{Role: role, Subject: sub, Organizations: orgs, TTL: time.Hour})
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (c *httpClient) do(method, path, token, body string) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// recorded returns how many events the ledger holds, from /metrics.
func (c *httpClient) recorded() string {
	c.t.Helper()
	_, b := c.do("GET", "/metrics", "", "")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "vigie_ledger_recorded_events_total "); ok {
			return v
		}
	}
	c.t.Fatalf("no vigie_ledger_recorded_events_total in /metrics")
	return ""
}

const goodCheck = `{"request_id":"bad-1","patient_ins":"` + e2ePatient + `","actor":{"rpps":"` + e2eDoctor + `","profession":"10","organization":"` + e2eHospital + `","sector":"care","care_team":true},"action":"ACTION_READ","resource":{"record":{}},"purpose_of_use":"PURPOSE_OF_USE_TREAT"}`

// check returns goodCheck with one change: old replaced by new.
func check(old, new string) string {
	if !strings.Contains(goodCheck, old) {
		panic("check: " + old + " not in goodCheck")
	}
	return strings.Replace(goodCheck, old, new, 1)
}

// TestBadInput is the catalogue of malformed requests: each is refused
// with INVALID_ARGUMENT (HTTP 400) and a message naming what is wrong and
// never quoting an INS; none records an event or stores anything; the
// server keeps serving.
func TestBadInput(t *testing.T) {
	e := startE2E(t)
	c := e.http()
	service := e.token(auth.RoleService, "hospital-his", e2eHospital)
	patient := e.token(auth.RolePatient, e2ePatient)
	regulator := e.token(auth.RoleRegulator, "cnil")
	admin := e.token(auth.RoleAdmin, "ops")
	dpo := e.token(auth.RoleDPO, "dpo-a", e2eHospital)

	// A first, valid Check, so that the log has a checkpoint.
	if code, b := c.do("POST", "/v1/access:check", service, goodCheck); code != 200 {
		t.Fatalf("a valid Check = %d %s", code, b)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if code, _ := c.do("GET", "/checkpoint", "", ""); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint within a minute")
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, consentBefore := c.do("GET", "/v1/me/consent", patient, "")
	_, rulesBefore := c.do("GET", "/v1/rules", "", "")
	before := c.recorded()

	tooMany := `{"expected_version":"0","directives":[` + strings.TrimSuffix(strings.Repeat(`{"id":"x","opt_out":{}},`, 257), ",") + `]}`
	cases := []struct {
		name, method, path, token, body string
		want                            string // in the message
	}{
		{"Check: no request_id", "POST", "/v1/access:check", service, check(`"request_id":"bad-1",`, ``), "request_id"},
		{"Check: request_id too long", "POST", "/v1/access:check", service, check(`"bad-1"`, `"`+strings.Repeat("r", 129)+`"`), "request_id"},
		{"Check: request_id with a space", "POST", "/v1/access:check", service, check(`"bad-1"`, `"bad 1"`), "request_id"},
		{"Check: request_id of 65 characters", "POST", "/v1/access:check", service, check(`"bad-1"`, `"`+strings.Repeat("r", 65)+`"`), "request_id"},
		{"Check: request_id with a slash", "POST", "/v1/access:check", service, check(`"bad-1"`, `"bad/1"`), "request_id"},
		{"Check: no patient_ins", "POST", "/v1/access:check", service, check(`"patient_ins":"`+e2ePatient+`",`, ``), "patient_ins"},
		{"Check: INS with a wrong key", "POST", "/v1/access:check", service, check(e2ePatient, e2ePatient[:13]+"00"), "patient_ins"},
		{"Check: INS too short", "POST", "/v1/access:check", service, check(e2ePatient, e2ePatient[:14]), "patient_ins"},
		{"Check: INS with letters", "POST", "/v1/access:check", service, check(e2ePatient, "27903512151898X"), "patient_ins"},
		{"Check: INS as a number", "POST", "/v1/access:check", service, check(`"`+e2ePatient+`"`, e2ePatient), "patient_ins"},
		{"Check: no actor", "POST", "/v1/access:check", service, `{"request_id":"bad-1","patient_ins":"` + e2ePatient + `","action":"ACTION_READ","resource":{"record":{}},"purpose_of_use":"PURPOSE_OF_USE_TREAT"}`, "actor"},
		{"Check: RPPS of 10 digits", "POST", "/v1/access:check", service, check(e2eDoctor, e2eDoctor[:10]), "actor.rpps"},
		{"Check: no profession", "POST", "/v1/access:check", service, check(`"profession":"10",`, ``), "actor.profession"},
		{"Check: no sector", "POST", "/v1/access:check", service, check(`"sector":"care",`, ``), "actor.sector"},
		{"Check: no action", "POST", "/v1/access:check", service, check(`"action":"ACTION_READ",`, ``), "action"},
		{"Check: unknown action name", "POST", "/v1/access:check", service, check(`"ACTION_READ"`, `"ACTION_FLY"`), "action"},
		{"Check: unknown action number", "POST", "/v1/access:check", service, check(`"ACTION_READ"`, `99`), "action"},
		{"Check: no resource", "POST", "/v1/access:check", service, check(`"resource":{"record":{}},`, ``), "resource"},
		{"Check: document without id", "POST", "/v1/access:check", service, check(`{"record":{}}`, `{"document":{"type":"lab-report"}}`), "resource.document.id"},
		{"Check: document without type", "POST", "/v1/access:check", service, check(`{"record":{}}`, `{"document":{"id":"d1"}}`), "resource.document.type"},
		{"Check: bad author RPPS", "POST", "/v1/access:check", service, check(`{"record":{}}`, `{"document":{"id":"d1","type":"lab-report","author_rpps":"12"}}`), "resource.document.author_rpps"},
		{"Check: no purpose", "POST", "/v1/access:check", service, check(`,"purpose_of_use":"PURPOSE_OF_USE_TREAT"`, ``), "purpose_of_use"},
		{"Check: unknown purpose number", "POST", "/v1/access:check", service, check(`"PURPOSE_OF_USE_TREAT"`, `42`), "purpose_of_use"},
		{"Check: justification too long", "POST", "/v1/access:check", service, check(`"PURPOSE_OF_USE_TREAT"`, `"PURPOSE_OF_USE_BTG","break_glass_justification":"`+strings.Repeat("j", 1025)+`"`), "break_glass_justification"},
		{"Check: negative min_consent_version", "POST", "/v1/access:check", service, check(`"PURPOSE_OF_USE_TREAT"`, `"PURPOSE_OF_USE_TREAT","min_consent_version":"-1"`), "min_consent_version"},
		{"Check: malformed JSON", "POST", "/v1/access:check", service, `{"request_id":`, ""},
		{"Check: unknown field", "POST", "/v1/access:check", service, check(`"request_id"`, `"requester":"x","request_id"`), "requester"},
		{"Check: not an object", "POST", "/v1/access:check", service, `[]`, ""},
		{"Check: oversized body", "POST", "/v1/access:check", service, check(`"bad-1"`, `"bad-1","break_glass_justification":"`+strings.Repeat("x", 200<<10)+`"`), "too large"},
		{"ListAccesses: forged page token", "GET", "/v1/me/accesses?page_token=AAAA", patient, "", "page_token"},
		{"ListAccesses: negative page size", "GET", "/v1/me/accesses?page_size=-1", patient, "", "page_size"},
		{"ListAccesses: huge page size", "GET", "/v1/me/accesses?page_size=1000000", patient, "", "page_size"},
		{"ListAccesses: page size not a number", "GET", "/v1/me/accesses?page_size=ten", patient, "", "page_size"},
		{"ListConsentHistory: forged page token", "GET", "/v1/me/consent/history?page_token=bm9wZQ", patient, "", "page_token"},
		{"Inclusion: tree_size beyond the log", "GET", "/v1/log/inclusion?leaf_index=0&tree_size=1000000", "", "", "tree_size"},
		{"Inclusion: leaf_index not below tree_size", "GET", "/v1/log/inclusion?leaf_index=5&tree_size=5", "", "", "leaf_index"},
		{"Inclusion: commitment not hex", "GET", "/v1/log/inclusion?commitment=zz&tree_size=1", "", "", "commitment"},
		{"Inclusion: no tree_size", "GET", "/v1/log/inclusion?leaf_index=0", "", "", "tree_size"},
		{"Consistency: from the empty tree beyond the log", "GET", "/v1/log/consistency?first=0&second=1000000", "", "", "second"},
		{"Consistency: second below first", "GET", "/v1/log/consistency?first=2&second=1", "", "", "second"},
		{"Consistency: second beyond the log", "GET", "/v1/log/consistency?first=1&second=1000000", "", "", "second"},
		{"Checkpoints: max_count above 200", "GET", "/v1/log/checkpoints?max_count=201", "", "", "max_count"},
		{"Checkpoints: negative min_size", "GET", "/v1/log/checkpoints?min_size=-1", "", "", "min_size"},
		{"Leaves: end not above start", "GET", "/v1/log/leaves?start=3&end=3", "", "", "end"},
		{"Leaves: start beyond the checkpoint", "GET", "/v1/log/leaves?start=1000000&end=1000001", "", "", "start"},
		{"Leaves: negative start", "GET", "/v1/log/leaves?start=-1&end=1", "", "", "start"},
		{"UpdateConsent: negative expected_version", "PUT", "/v1/me/consent", patient, `{"expected_version":"-1","directives":[]}`, "expected_version"},
		{"UpdateConsent: bad RPPS", "PUT", "/v1/me/consent", patient, `{"expected_version":"0","directives":[{"id":"b","block_professional":{"rpps":"123"}}]}`, "directives[0].block_professional.rpps"},
		{"UpdateConsent: directive without kind", "PUT", "/v1/me/consent", patient, `{"expected_version":"0","directives":[{"id":"b"}]}`, "directives[0].kind"},
		{"UpdateConsent: bad timestamp", "PUT", "/v1/me/consent", patient, `{"expected_version":"0","directives":[{"id":"b","opt_out":{},"valid_until":"yesterday"}]}`, "valid_until"},
		{"UpdateConsent: too many directives", "PUT", "/v1/me/consent", patient, tooMany, "directives"},
		{"UpdateConsent: pattern outside the portable subset", "PUT", "/v1/me/consent", patient, `{"expected_version":"0","directives":[{"id":"h","hide_document":{"document_id":"psy-<[[:alpha:]]+>"}}]}`, "directives[0].document: pattern character 7"},
		{"UpdateConsent: pattern too complex", "PUT", "/v1/me/consent", patient, `{"expected_version":"0","directives":[{"id":"h","hide_document":{"document_id":"<(?:\\w{1,99}){1,9}>"}}]}`, "directives[0].document: pattern too complex"},
		{"RequestErasure: not confirmed", "POST", "/v1/me/erasure", patient, `{"confirm":false}`, "confirm"},
		{"SearchEvents: bad INS", "POST", "/v1/audit/events:search", regulator, `{"patient_ins":"123"}`, "patient_ins"},
		{"SearchEvents: RPPS with letters", "POST", "/v1/audit/events:search", regulator, `{"actor_rpps":"1000000000A"}`, "actor_rpps"},
		{"SearchEvents: end before start", "POST", "/v1/audit/events:search", regulator, `{"start_time":"2026-11-28T10:00:00Z","end_time":"2026-11-28T09:00:00Z"}`, "end_time"},
		{"SearchEvents: erased_only with a filter", "POST", "/v1/audit/events:search", regulator, `{"erased_only":true,"kind":"EVENT_KIND_ACCESS"}`, "erased_only"},
		{"SearchEvents: negative page size", "POST", "/v1/audit/events:search", regulator, `{"page_size":-5}`, "page_size"},
		{"SearchEvents: DPO without organisation", "POST", "/v1/audit/events:search", dpo, `{}`, "organization"},
		{"ReviewBreakGlass: bad commitment", "POST", "/v1/audit/break-glass-reviews", dpo, `{"request_id":"rv1","event_commitment":"xyz","verdict":"BREAK_GLASS_VERDICT_JUSTIFIED"}`, "event_commitment"},
		{"ReviewBreakGlass: no verdict", "POST", "/v1/audit/break-glass-reviews", dpo, `{"request_id":"rv1","event_commitment":"` + strings.Repeat("ab", 32) + `"}`, "verdict"},
		{"LoadNationalRules: not rules", "POST", "/v1/rules", admin, `{"rules":"bm90IHJ1bGVz"}`, "rules"},
		{"LoadNationalRules: no rules", "POST", "/v1/rules", admin, `{}`, "rules"},
		{"GetNationalRules: version 0", "GET", "/v1/rules/0", "", "", "version"},
		{"ErasePatient: bad INS", "POST", "/v1/erasures", admin, `{"patient_ins":"1234"}`, "patient_ins"},
		{"Check: garbage after the body", "POST", "/v1/access:check", service, goodCheck + `garbage`, "request body"},
		{"Check: a second object after the body", "POST", "/v1/access:check", service, goodCheck + goodCheck, "request body"},
		{"Check: a query parameter", "POST", "/v1/access:check?request_id=bad-2", service, goodCheck, "query parameter request_id"},
		{"ListAccesses: unknown query parameter", "GET", "/v1/me/accesses?pagesize=5", patient, "", "query parameter pagesize"},
		{"Leaves: unknown query parameter", "GET", "/v1/log/leaves?start=0&end=1&count=5", "", "", "query parameter count"},
		{"Check: control characters in the justification", "POST", "/v1/access:check", service, check(`"PURPOSE_OF_USE_TREAT"`, `"PURPOSE_OF_USE_BTG","break_glass_justification":"ok\u001b[2J\r\n\t\u0007"`), "break_glass_justification"},
		{"Check: a bidirectional override in the justification", "POST", "/v1/access:check", service, check(`"PURPOSE_OF_USE_TREAT"`, `"PURPOSE_OF_USE_BTG","break_glass_justification":"ok \u202edeifitsuj"`), "break_glass_justification"},
		{"Check: a C1 control in the justification", "POST", "/v1/access:check", service, check(`"PURPOSE_OF_USE_TREAT"`, `"PURPOSE_OF_USE_BTG","break_glass_justification":"ok \u009b2J"`), "break_glass_justification"},
		{"ReviewBreakGlass: control characters in the comment", "POST", "/v1/audit/break-glass-reviews", dpo, `{"request_id":"rv1","event_commitment":"` + strings.Repeat("ab", 32) + `","verdict":"BREAK_GLASS_VERDICT_JUSTIFIED","comment":"ok\u001b[1A\rforged\n"}`, "comment"},
		{"ReviewBreakGlass: a bidirectional isolate in the comment", "POST", "/v1/audit/break-glass-reviews", dpo, `{"request_id":"rv1","event_commitment":"` + strings.Repeat("ab", 32) + `","verdict":"BREAK_GLASS_VERDICT_JUSTIFIED","comment":"ok \u2067x"}`, "comment"},
		{"UpdateConsent: expected_version 2^63-1", "PUT", "/v1/me/consent", patient, `{"expected_version":"9223372036854775807","directives":[]}`, "invalid expected_version: out of range"},
	}
	if len(cases) < 30 {
		t.Fatalf("the catalogue has %d cases, want at least 30", len(cases))
	}
	for _, tc := range cases {
		code, body := c.do(tc.method, tc.path, tc.token, tc.body)
		var st struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(body, &st); err != nil {
			t.Errorf("%s: body %.200s is not a status: %v", tc.name, body, err)
			continue
		}
		if code != 400 || st.Code != 3 || !strings.Contains(st.Message, tc.want) {
			t.Errorf("%s: %d code %d %q, want 400 INVALID_ARGUMENT naming %q", tc.name, code, st.Code, st.Message, tc.want)
		}
		if strings.Contains(string(body), e2ePatient) || strings.Contains(string(body), e2ePatient[:13]) {
			t.Errorf("%s: the error quotes the INS: %s", tc.name, body)
		}
	}

	// A min_consent_version above the patient's consent version: not a
	// stale read that a retry would cure (ABORTED), but a precondition
	// the request will never meet (FAILED_PRECONDITION, HTTP 400).
	code, body := c.do("POST", "/v1/access:check", service, check(`"PURPOSE_OF_USE_TREAT"`, `"PURPOSE_OF_USE_TREAT","min_consent_version":"7"`))
	var st struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &st); err != nil || code != 400 || st.Code != 9 || !strings.Contains(st.Message, "min_consent_version") {
		t.Errorf("Check with min_consent_version above the consent's = %d %s, want 400 FAILED_PRECONDITION naming min_consent_version", code, body)
	}

	// Not bad input: the proof from the empty tree, which a witness that
	// saw no checkpoint asks for, is empty.
	code, proofBody := c.do("GET", "/v1/log/consistency?first=0&second=1", "", "")
	var proof struct {
		First, Second string
		Hashes        []string
	}
	if err := json.Unmarshal(proofBody, &proof); code != 200 || err != nil || proof.First != "0" || proof.Second != "1" || proof.Hashes == nil || len(proof.Hashes) != 0 {
		t.Errorf("consistency from the empty tree = %d %s, want 200 and an empty proof", code, proofBody)
	}

	// Nothing recorded, nothing stored, still serving.
	if after := c.recorded(); after != before {
		t.Errorf("the catalogue recorded events: %s before, %s after", before, after)
	}
	if _, consentAfter := c.do("GET", "/v1/me/consent", patient, ""); !bytes.Equal(consentAfter, consentBefore) {
		t.Errorf("the patient's consent changed:\n%s\n%s", consentBefore, consentAfter)
	}
	if _, rulesAfter := c.do("GET", "/v1/rules", "", ""); !bytes.Equal(rulesAfter, rulesBefore) {
		t.Errorf("the national rules changed:\n%s\n%s", rulesBefore, rulesAfter)
	}
	if code, b := c.do("GET", "/readyz", "", ""); code != 200 {
		t.Errorf("/readyz after the catalogue = %d %s", code, b)
	}
	if strings.Contains(e.proc.stderr.String(), e2ePatient) || strings.Contains(e.proc.stderr.String(), "panic") {
		t.Errorf("the server's log holds an INS or a panic:\n%s", e.proc.stderr)
	}
	if t.Failed() {
		fmt.Println(e.proc.stderr.String())
	}
}

// probe is a value a hostile or careless caller puts where a value goes:
// an INS in one of the spellings the API accepts, or health data. needles
// are the strings that must appear in no answer and no log line.
type probe struct {
	name, value string
	ins         bool // an INS: it may be a token's subject, a request_id's part
	needles     []string
}

// probes returns an INS in every spelling the API accepts (canonical,
// Corsica in upper and lower case, with separators) and health data.
func probes(t *testing.T) []probe {
	insProbe := func(name, body string) probe {
		digits := strings.NewReplacer("2A", "19", "2B", "18").Replace(body)
		n, err := strconv.ParseUint(digits, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		canon := fmt.Sprintf("%s%02d", body, 97-n%97)
		return probe{name: name, value: canon, ins: true, needles: []string{canon, canon[:13]}}
	}
	canon := insProbe("INS", "1841276451089")
	upper := insProbe("INS of Corsica", "17912"+"2A"+"123456")
	lower := insProbe("INS of Corsica in lower case", "28001"+"2B"+"654321")
	lower.value = strings.Replace(lower.value, "2B", "2b", 1)
	lower.needles = append(lower.needles, lower.value, strings.Replace(lower.needles[1], "2B", "2b", 1))
	spaced := insProbe("INS with spaces", "2650375123456")
	c := spaced.value
	spaced.value = c[:1] + " " + c[1:3] + " " + c[3:5] + " " + c[5:7] + " " + c[7:10] + " " + c[10:13] + " " + c[13:]
	spaced.needles = append(spaced.needles, spaced.value)
	spaced.ins = false // not a request_id or a subject
	health := probe{name: "health data", value: "PSYCHIATRY-NOTE-2026-0042", needles: []string{"PSYCHIATRY", "NOTE-2026"}}
	for _, p := range []probe{canon, upper, lower} {
		if _, err := ident.NormalizeINS(p.value); err != nil {
			t.Fatalf("probe %s: %v", p.name, err)
		}
	}
	return []probe{canon, upper, lower, spaced, health}
}

type badCase struct {
	name, method, path, token, body string
	want                            string // in the message, for a 400
}

// probeCases is the catalogue of bad input with v where the values go:
// every field of every route, in the body, the query or the path. Each
// is refused (the value is bad even where v alone would not be: a suffix
// makes it so).
func probeCases(v string, service, patient, regulator, admin, dpo string) []badCase {
	js := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	q := url.QueryEscape(v)
	longV := v + strings.Repeat("j", 4097)
	directive := func(d string) string { return `{"expected_version":"0","directives":[` + d + `]}` }
	return []badCase{
		{"Check: request_id", "POST", "/v1/access:check", service, check(`"bad-1"`, js(v+"!")), "request_id"},
		{"Check: patient_ins", "POST", "/v1/access:check", service, check(`"`+e2ePatient+`"`, js(v+"0")), "patient_ins"},
		{"Check: actor.rpps", "POST", "/v1/access:check", service, check(`"`+e2eDoctor+`"`, js(v)), "actor.rpps"},
		{"Check: actor.profession", "POST", "/v1/access:check", service, check(`"profession":"10"`, `"profession":`+js(v+"!")), "actor.profession"},
		{"Check: actor.organization", "POST", "/v1/access:check", service, check(`"`+e2eHospital+`"`, js(v)), "actor.organization"},
		{"Check: actor.sector", "POST", "/v1/access:check", service, check(`"care"`, js(v+"!")), "actor.sector"},
		{"Check: action", "POST", "/v1/access:check", service, check(`"ACTION_READ"`, js(v)), "action"},
		{"Check: purpose_of_use", "POST", "/v1/access:check", service, check(`"PURPOSE_OF_USE_TREAT"`, js(v)), "purpose_of_use"},
		{"Check: document id", "POST", "/v1/access:check", service, check(`{"record":{}}`, `{"document":{"id":`+js(v+"/")+`,"type":"lab-report"}}`), "resource.document"},
		{"Check: document type", "POST", "/v1/access:check", service, check(`{"record":{}}`, `{"document":{"id":"d1","type":`+js(v+"/")+`}}`), "resource.document"},
		{"Check: document author", "POST", "/v1/access:check", service, check(`{"record":{}}`, `{"document":{"id":"d1","type":"lab-report","author_rpps":`+js(v)+`}}`), "resource.document.author_rpps"},
		{"Check: justification", "POST", "/v1/access:check", service, check(`"PURPOSE_OF_USE_TREAT"`, `"PURPOSE_OF_USE_BTG","break_glass_justification":`+js(longV)), "break_glass_justification"},
		{"Check: min_consent_version", "POST", "/v1/access:check", service, check(`"PURPOSE_OF_USE_TREAT"`, `"PURPOSE_OF_USE_TREAT","min_consent_version":`+js(v+"x")), "min_consent_version"},
		{"Check: unknown field", "POST", "/v1/access:check", service, check(`"request_id"`, js(v)+`:1,"request_id"`), "unknown field"},
		{"Check: value as a number", "POST", "/v1/access:check", service, check(`"bad-1"`, `{"x":`+js(v)+`}`), "request_id"},
		{"ListAccesses: page_size", "GET", "/v1/me/accesses?page_size=" + q, patient, "", "page_size"},
		{"ListAccesses: page_token", "GET", "/v1/me/accesses?page_token=" + q, patient, "", "page_token"},
		{"ListConsentHistory: page_token", "GET", "/v1/me/consent/history?page_token=" + q, patient, "", "page_token"},
		{"Inclusion: leaf_index", "GET", "/v1/log/inclusion?tree_size=1&leaf_index=" + q, "", "", "leaf_index"},
		{"Inclusion: tree_size", "GET", "/v1/log/inclusion?leaf_index=0&tree_size=" + q, "", "", "tree_size"},
		{"Inclusion: commitment", "GET", "/v1/log/inclusion?tree_size=1&commitment=" + q, "", "", "commitment"},
		{"Consistency: first", "GET", "/v1/log/consistency?second=1&first=" + q, "", "", "first"},
		{"Checkpoints: max_count", "GET", "/v1/log/checkpoints?max_count=" + q, "", "", "max_count"},
		{"Checkpoints: min_size", "GET", "/v1/log/checkpoints?min_size=" + url.QueryEscape(v+"x"), "", "", "min_size"},
		{"Leaves: start", "GET", "/v1/log/leaves?end=1&start=" + q, "", "", "start"},
		{"Leaves: end", "GET", "/v1/log/leaves?start=0&end=" + url.QueryEscape(v+"x"), "", "", "end"},
		{"Leaves: given twice", "GET", "/v1/log/leaves?start=0&end=1&end=" + q, "", "", "end"},
		{"UpdateConsent: expected_version", "PUT", "/v1/me/consent", patient, `{"expected_version":` + js(v+"x") + `,"directives":[]}`, "expected_version"},
		{"UpdateConsent: directive id", "PUT", "/v1/me/consent", patient, directive(`{"id":` + js(v+"/") + `,"opt_out":{}}`), "directives[0].id"},
		{"UpdateConsent: blocked RPPS", "PUT", "/v1/me/consent", patient, directive(`{"id":"b","block_professional":{"rpps":` + js(v) + `}}`), "directives[0].block_professional.rpps"},
		{"UpdateConsent: blocked organisation", "PUT", "/v1/me/consent", patient, directive(`{"id":"b","block_organization":{"finess":` + js(v) + `}}`), "directives[0].block_organization.finess"},
		{"UpdateConsent: hidden document", "PUT", "/v1/me/consent", patient, directive(`{"id":"b","hide_document":{"document_id":` + js(v+"/") + `}}`), "directives[0]"},
		{"UpdateConsent: hidden document pattern", "PUT", "/v1/me/consent", patient, directive(`{"id":"b","hide_document":{"document_id":` + js("<"+v+"(>") + `}}`), "directives[0]"},
		{"UpdateConsent: valid_until", "PUT", "/v1/me/consent", patient, directive(`{"id":"b","opt_out":{},"valid_until":` + js(v) + `}`), "directives[0].valid_until"},
		{"SearchEvents: patient_ins", "POST", "/v1/audit/events:search", regulator, `{"patient_ins":` + js(v+"0") + `}`, "patient_ins"},
		{"SearchEvents: actor_rpps", "POST", "/v1/audit/events:search", regulator, `{"actor_rpps":` + js(v) + `}`, "actor_rpps"},
		{"SearchEvents: start_time", "POST", "/v1/audit/events:search", regulator, `{"start_time":` + js(v) + `}`, "start_time"},
		{"SearchEvents: kind", "POST", "/v1/audit/events:search", regulator, `{"kind":` + js(v) + `}`, "kind"},
		{"SearchEvents: page_token", "POST", "/v1/audit/events:search", regulator, `{"page_token":` + js(v) + `}`, "page_token"},
		{"ReviewBreakGlass: event_commitment", "POST", "/v1/audit/break-glass-reviews", dpo, `{"request_id":"rv1","event_commitment":` + js(v) + `,"verdict":"BREAK_GLASS_VERDICT_JUSTIFIED"}`, "event_commitment"},
		{"ReviewBreakGlass: request_id", "POST", "/v1/audit/break-glass-reviews", dpo, `{"request_id":` + js(v+"!") + `,"event_commitment":"` + strings.Repeat("ab", 32) + `","verdict":"BREAK_GLASS_VERDICT_JUSTIFIED"}`, "request_id"},
		{"ReviewBreakGlass: comment", "POST", "/v1/audit/break-glass-reviews", dpo, `{"request_id":"rv1","event_commitment":"` + strings.Repeat("ab", 32) + `","verdict":"BREAK_GLASS_VERDICT_JUSTIFIED","comment":` + js(longV) + `}`, "comment"},
		{"LoadNationalRules: rules", "POST", "/v1/rules", admin, `{"rules":` + js(base64.StdEncoding.EncodeToString([]byte(v))) + `}`, "rules"},
		{"GetNationalRules: version", "GET", "/v1/rules/" + url.PathEscape(v+"x"), "", "", "version"},
		{"ErasePatient: patient_ins", "POST", "/v1/erasures", admin, `{"patient_ins":` + js(v+"0") + `}`, "patient_ins"},
	}
}

// TestBadInputLeaksNothing runs the catalogue of bad input with INS in
// every spelling the API accepts and with health data, plus valid calls
// that carry them where they are allowed (a service named by an INS, a
// request_id holding one, a document's name), and searches every answer
// and the server's whole output for them (issue 10, section 3).
func TestBadInputLeaksNothing(t *testing.T) {
	// Limits high enough for the catalogue: each case must reach its check.
	e := startE2E(t, "--rate-limit", "service=1000:1000,patient=1000:1000,auditor=1000:1000,dpo=1000:1000,regulator=1000:1000,admin=1000:1000,anonymous=1000:1000")
	c := e.http()
	patient := e.token(auth.RolePatient, e2ePatient)
	regulator := e.token(auth.RoleRegulator, "cnil")
	admin := e.token(auth.RoleAdmin, "ops")
	dpo := e.token(auth.RoleDPO, "dpo-a", e2eHospital)
	service := e.token(auth.RoleService, "hospital-his", e2eHospital)

	var answers []string
	ps := probes(t)
	for _, p := range ps {
		for _, tc := range probeCases(p.value, service, patient, regulator, admin, dpo) {
			code, body := c.do(tc.method, tc.path, tc.token, tc.body)
			answers = append(answers, string(body))
			if code < 400 || code >= 500 || code == http.StatusTooManyRequests {
				t.Errorf("%s, %s: %d %s, want a refusal", p.name, tc.name, code, body)
				continue
			}
			var st struct {
				Message string `json:"message"`
			}
			if code == 400 && (json.Unmarshal(body, &st) != nil || !strings.Contains(st.Message, tc.want)) {
				t.Errorf("%s, %s: %d %s, want a message naming %q", p.name, tc.name, code, body, tc.want)
			}
			for _, n := range p.needles {
				if strings.Contains(string(body), n) {
					t.Errorf("%s, %s: the answer quotes %q: %s", p.name, tc.name, n, body)
				}
			}
		}
		if !p.ins {
			continue
		}
		// Where an INS may go: a service's name (its log lines say
		// caller.principal=service:<name>), a request_id.
		svc := e.token(auth.RoleService, p.value, e2eHospital)
		if code, body := c.do("POST", "/v1/access:check", svc, check(`"bad-1"`, `"req-`+p.value+`"`)); code != 200 {
			t.Errorf("%s: a Check by service %s with request_id req-%[2]s = %d %s", p.name, p.value, code, body)
		}
		// And an unknown parameter named by it.
		_, body := c.do("GET", "/v1/log/checkpoints?"+url.QueryEscape(p.value)+"=1", "", "")
		answers = append(answers, string(body))
	}
	// A document named with health data.
	doc := `{"document":{"id":"PSYCHIATRY-NOTE-2026-0042","type":"lab-report"}}`
	if code, body := c.do("POST", "/v1/access:check", service, strings.Replace(check(`{"record":{}}`, doc), `"bad-1"`, `"doc-1"`, 1)); code != 200 {
		t.Errorf("a Check of a document named with health data = %d %s", code, body)
	}
	// A pattern that a backtracking engine takes long to match, and a
	// document named with health data to match it against: whatever the
	// engine answers, its error (which quoted its input) reaches no log.
	if code, body := c.do("PUT", "/v1/me/consent", patient, `{"expected_version":"0","directives":[{"id":"h","hide_document":{"document_id":"<[A-Z-]*(a+)+b>"}}]}`); code != 200 {
		t.Errorf("a consent hiding <[A-Z-]*(a+)+b> = %d %s", code, body)
	}
	slow := `{"document":{"id":"PSYCHIATRY-NOTE-` + strings.Repeat("a", 40) + `c","type":"lab-report"}}`
	_, body := c.do("POST", "/v1/access:check", service, strings.Replace(check(`{"record":{}}`, slow), `"bad-1"`, `"slow-1"`, 1))
	answers = append(answers, string(body))
	_, metrics := c.do("GET", "/metrics", "", "")
	answers = append(answers, string(metrics))

	if code, b := c.do("GET", "/readyz", "", ""); code != 200 {
		t.Errorf("/readyz after the catalogue = %d %s", code, b)
	}
	all := strings.Join(answers, "\n")
	log := e.proc.output() + "\n" + e.proc.stderr.String()
	for _, p := range ps {
		for _, n := range p.needles {
			if strings.Contains(all, n) {
				t.Errorf("%s: an answer holds %q", p.name, n)
			}
			if strings.Contains(log, n) {
				t.Errorf("%s: the server's output holds %q", p.name, n)
			}
		}
	}
	if !strings.Contains(log, "caller.principal=service:INS(redacted)") {
		t.Errorf("no log line of the service named by an INS:\n%s", log)
	}
	if t.Failed() {
		fmt.Println(log)
	}
}
