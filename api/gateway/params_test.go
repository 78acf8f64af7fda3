package gateway

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestParameterErrors: an unreadable query or path parameter is named,
// with what is wrong, and its value is never quoted (issue 10: page_size,
// /v1/rules/{version} and start echoed an INS).
func TestParameterErrors(t *testing.T) {
	e := newEnv(t, nil)
	const lowerCorsica = "185052a01234579" // an INS as the API accepts it
	tests := []struct {
		name, path, value, want string
	}{
		{"query: INS, Corsica in lower case", "/v1/log/inclusion?tree_size=5&leaf_index=" + lowerCorsica, lowerCorsica, "invalid leaf_index: not an integer"},
		{"query: INS out of range", "/v1/log/inclusion?leaf_index=1&tree_size=137047624348415137047624348415", "137047624348415", "invalid tree_size: out of range"},
		{"query: health data", "/v1/log/inclusion?tree_size=5&leaf_index=PSYCHIATRY-NOTE-7", "PSYCHIATRY", "invalid leaf_index: not an integer"},
		{"query: given twice", "/v1/log/inclusion?tree_size=5&tree_size=PSYCHIATRY-NOTE-7", "PSYCHIATRY", "invalid tree_size: given more than once"},
		{"query: page_size, history", "/v1/me/accesses?page_size=abc", "abc", "invalid page_size: not an integer"},
		{"query: page_size, consent versions", "/v1/me/consent/history?page_size=abc", "abc", "invalid page_size: not an integer"},
		{"query: bad escape", "/v1/log/inclusion?tree_size=5&leaf_index=%zz", "%zz", "invalid query: malformed percent-encoding"},
		{"path: INS, Corsica in lower case", "/v1/rules/" + lowerCorsica, lowerCorsica, "invalid version: not an integer"},
		{"path: health data", "/v1/rules/PSYCHIATRY-NOTE-7", "PSYCHIATRY", "invalid version: not an integer"},
		{"path: out of range", "/v1/rules/137047624348415137047624348415", "137047624348415", "invalid version: out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.do("GET", tt.path, "")
			var st struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal(body, &st); err != nil || resp.StatusCode != 400 || st.Code != 3 {
				t.Fatalf("= %d %s, want 400 INVALID_ARGUMENT", resp.StatusCode, body)
			}
			if st.Message != tt.want {
				t.Errorf("message %q, want %q", st.Message, tt.want)
			}
			if strings.Contains(string(body), tt.value) {
				t.Errorf("the answer quotes the value: %s", body)
			}
		})
	}
}

func TestParamMessage(t *testing.T) {
	tests := []struct{ in, want string }{
		{`parsing field "page_size": strconv.ParseInt: parsing "137047624348415": value out of range`, "invalid page_size: out of range"},
		{`parsing field "kind": "PSYCHIATRY" is not a valid value`, "invalid kind: unknown value"},
		{`parsing field "start_time": parsing time "PSYCHIATRY" as "2006-01-02T15:04:05Z07:00": cannot parse`, "invalid start_time: not a valid value"},
		{`parsing field "erased_only": strconv.ParseBool: parsing "x": invalid syntax`, "invalid erased_only: not true or false"},
		{`too many values for field "page_size": 1, 137047624348415`, "invalid page_size: given more than once"},
		{`type mismatch, parameter: version, error: strconv.ParseInt: parsing "185052a01234579": invalid syntax`, "invalid version: not an integer"},
		{`invalid path: "PSYCHIATRY-NOTE" is not a message`, `invalid path: "…" is not a message`},
		{"invalid patient_ins: INS must be 15 characters", "invalid patient_ins: INS must be 15 characters"},
		{"unknown patient 137047624348415", "unknown patient INS(redacted)"},
	}
	for _, tt := range tests {
		if got := paramMessage(tt.in); got != tt.want {
			t.Errorf("paramMessage(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
