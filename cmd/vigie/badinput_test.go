package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/api/auth"
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
		if v, ok := strings.CutPrefix(line, "vigie_ledger_recorded_events "); ok {
			return v
		}
	}
	c.t.Fatalf("no vigie_ledger_recorded_events in /metrics")
	return ""
}

const goodCheck = `{"request_id":"bad-1","patient_ins":"` + e2ePatient + `","actor":{"rpps":"` + e2eDoctor + `","profession":"10","organization":"` + e2eHospital + `","sector":"care","care_team":true},"action":"ACTION_READ","resource":{"record":{}},"purpose_of_use":"TREAT"}`

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
		{"Check: no actor", "POST", "/v1/access:check", service, `{"request_id":"bad-1","patient_ins":"` + e2ePatient + `","action":"ACTION_READ","resource":{"record":{}},"purpose_of_use":"TREAT"}`, "actor"},
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
		{"Check: no purpose", "POST", "/v1/access:check", service, check(`,"purpose_of_use":"TREAT"`, ``), "purpose_of_use"},
		{"Check: unknown purpose number", "POST", "/v1/access:check", service, check(`"TREAT"`, `42`), "purpose_of_use"},
		{"Check: justification too long", "POST", "/v1/access:check", service, check(`"TREAT"`, `"BTG","break_glass_justification":"`+strings.Repeat("j", 1025)+`"`), "break_glass_justification"},
		{"Check: negative min_consent_version", "POST", "/v1/access:check", service, check(`"TREAT"`, `"TREAT","min_consent_version":"-1"`), "min_consent_version"},
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
		{"Consistency: first 0", "GET", "/v1/log/consistency?first=0&second=1", "", "", "first"},
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
