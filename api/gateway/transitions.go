package gateway

import (
	"encoding/json"
	"net/http"
)

// TransitionsRoute is the route of the log's transition checkpoints.
const TransitionsRoute = "GET /checkpoint/transitions"

// Transitions is the JSON body of GET /checkpoint/transitions: the log's
// transition checkpoints (verify.OpenTransition), oldest first, each a
// signed note; none if the log's key never changed.
type Transitions struct {
	Transitions []string `json:"transitions"`
}

// TransitionsHandler serves notes, read once at the node's start (a
// rotation is made with every node stopped), to anyone: they are public
// and a verifier checks them against the key it pinned.
func TransitionsHandler(notes [][]byte) http.Handler {
	body := Transitions{Transitions: make([]string, 0, len(notes))}
	for _, n := range notes {
		body.Transitions = append(body.Transitions, string(n))
	}
	b, _ := json.Marshal(body)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Write(b)
	})
}
