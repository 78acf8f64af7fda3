package gateway

import (
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

// TestOpenAPIDescribesEveryRoute checks /openapi.json: it is the
// generated description, it lists every route of the API (the
// google.api.http annotations the gateway registers) and nothing else,
// and the gateway routes each route it lists.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	e := newEnv(t, nil)
	resp, body := e.do("GET", "/openapi.json", "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || string(body) != string(vigiev1.OpenAPI) {
		t.Fatalf("GET /openapi.json = %d %q, want vigie.swagger.json as application/json", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var doc struct {
		Swagger string                    `json:"swagger"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.Swagger != "2.0" {
		t.Fatalf("/openapi.json is not a Swagger 2.0 document: %v", err)
	}
	described := map[string]bool{}
	for path, ops := range doc.Paths {
		for verb := range ops {
			described[strings.ToUpper(verb)+" "+path] = true
		}
	}
	served := map[string]bool{}
	for _, r := range apiRoutes() {
		served[r.verb+" "+strings.Join(r.segments, "/")] = true
	}
	if len(served) < 10 {
		t.Fatalf("the gateway has %d routes: the annotations were not found", len(served))
	}
	for r := range served {
		if !described[r] {
			t.Errorf("%s is served but not in /openapi.json (run make proto)", r)
		}
	}
	for r := range described {
		if !served[r] {
			t.Errorf("%s is in /openapi.json but not served", r)
		}
	}

	// Each described route reaches a handler: the router does not answer
	// it (a call without credentials stops at authentication, a public
	// one reaches the handler).
	param := regexp.MustCompile(`\{[^}]*\}`)
	routed := func(verb, path string) bool {
		body := ""
		if verb == "POST" || verb == "PUT" || verb == "PATCH" {
			body = "{}"
		}
		resp, b := e.do(verb, param.ReplaceAllString(path, "1"), body)
		var st struct{ Message string }
		json.Unmarshal(b, &st)
		return !((resp.StatusCode == 404 && st.Message == "Not Found") || (resp.StatusCode == 405 || resp.StatusCode == 501) && st.Message == "Method Not Allowed")
	}
	if routed("GET", "/v1/no-such-route") {
		t.Fatal("an unknown route is not told apart from a routed one")
	}
	for _, r := range slices.Sorted(maps.Keys(described)) {
		verb, path, _ := strings.Cut(r, " ")
		if !routed(verb, path) {
			t.Errorf("%s is in /openapi.json but the gateway does not route it", r)
		}
	}
}
