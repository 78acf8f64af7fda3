package gateway

import (
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

// TestBodyErrors decodes bad bodies as the gateway does: the message names
// the field by its path, and never quotes the value.
func TestBodyErrors(t *testing.T) {
	m := fieldErrors{&runtime.JSONPb{UnmarshalOptions: protojson.UnmarshalOptions{}}}
	for _, tc := range []struct {
		body string
		msg  string
	}{
		{`{"patient_ins": 279035121518989}`, "invalid patient_ins: wrong JSON type or value"},
		{`{"patientIns": true}`, "invalid patientIns: wrong JSON type or value"},
		{`{"279035121518989": 1}`, "unknown field"},
		{`{"PSYCHIATRY-NOTE-7": 1}`, "invalid request body: unknown field"},
		{`{"actor": {"Note psychiatrique": 1}}`, "invalid request body: unknown field"},
		{`{"requester": 1}`, "invalid requester: unknown field"},
		{`{"action": "ACTION_FLY"}`, "invalid action: unknown value"},
		{"{\n  \"actor\": {\"rpps\": 1}\n}", "invalid actor.rpps: wrong JSON type or value"},
		{`{"request_id":`, "invalid request body: malformed JSON"},
		{`[1]`, "invalid request body: the body must be a JSON object"},
		{`{"request_id":"r1"} garbage`, "invalid request body: data after the JSON object"},
		{`{"request_id":"r1"}{"request_id":"r2"}`, "invalid request body: data after the JSON object"},
		{"{\"request_id\":\"r1\"}\n{}", "invalid request body: data after the JSON object"},
	} {
		err := m.NewDecoder(strings.NewReader(tc.body)).Decode(&vigiev1.CheckRequest{})
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %q", tc.body, err, tc.msg)
		}
		if err != nil && (strings.Contains(err.Error(), "279035121518989") || strings.Contains(err.Error(), "PSYCHIATR") || strings.Contains(err.Error(), "psychiatrique")) {
			t.Errorf("%s: the message quotes the INS: %v", tc.body, err)
		}
	}
	err := m.NewDecoder(strings.NewReader(`{"directives":[{"id":"a","opt_out":{}},{"id":"b","valid_until":"yesterday"}]}`)).Decode(&vigiev1.UpdateConsentRequest{})
	if err == nil || err.Error() != "invalid directives[1].valid_until: not an RFC 3339 timestamp (e.g. 2026-11-28T10:00:00Z)" {
		t.Errorf("nested timestamp: %v", err)
	}
}

// TestOneVocabulary: the API takes enum values and directive fields only
// as docs/api.md's naming rule spells them (issue 19): the spellings of
// earlier builds are refused, naming the field.
func TestOneVocabulary(t *testing.T) {
	m := fieldErrors{&runtime.JSONPb{UnmarshalOptions: protojson.UnmarshalOptions{}}}
	for _, tc := range []struct {
		body string
		into proto.Message
		msg  string // "" when the body is taken
	}{
		{`{"purpose_of_use": "PURPOSE_OF_USE_BTG"}`, &vigiev1.CheckRequest{}, ""},
		{`{"purpose_of_use": "BTG"}`, &vigiev1.CheckRequest{}, "invalid purpose_of_use: unknown value"},
		{`{"purpose_of_use": "TREAT"}`, &vigiev1.CheckRequest{}, "invalid purpose_of_use: unknown value"},
		{`{"decision": "DECISION_DENY", "reason": {"code": "REASON_CODE_CONSENT"}}`, &vigiev1.CheckResponse{}, ""},
		{`{"decision": "DENY"}`, &vigiev1.CheckResponse{}, "invalid decision: unknown value"},
		{`{"reason": {"code": "REASON_CONSENT"}}`, &vigiev1.CheckResponse{}, "invalid reason.code: unknown value"},
		{`{"directives":[{"id":"oppose-emergency","oppose_emergency":{}}]}`, &vigiev1.UpdateConsentRequest{}, ""},
		{`{"directives":[{"id":"oppose-emergency","oppose_emergency_access":{}}]}`, &vigiev1.UpdateConsentRequest{}, "unknown field"},
	} {
		err := m.NewDecoder(strings.NewReader(tc.body)).Decode(tc.into)
		if tc.msg == "" && err != nil || tc.msg != "" && (err == nil || !strings.Contains(err.Error(), tc.msg)) {
			t.Errorf("%s: %v, want %q", tc.body, err, tc.msg)
		}
	}
}
