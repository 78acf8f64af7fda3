package event_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/vigie-sante/vigie/ledger/event"
)

func ExampleBody_Marshal() {
	id, err := event.NewID(strings.NewReader("sixteen bytes!!!")) // crypto/rand when nil
	if err != nil {
		log.Fatal(err)
	}
	b := event.Body{
		V:       event.Version,
		ID:      id,
		Time:    time.Date(2026, 11, 28, 22, 0, 0, 123456789, time.UTC),
		Kind:    event.KindRulesChange,
		Patient: event.SystemChain,
		Seq:     1,
		Service: "admin",
		Payload: json.RawMessage(`{"rules_version":"2026-11"}`),
	}
	data, err := b.Marshal()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", data)
	// Output:
	// {"v":1,"id":"7369787465656e206279746573212121","time":"2026-11-28T22:00:00.123456789Z","kind":"rules_change","patient":"0000000000000000000000000000000000000000000000000000000000000000","seq":1,"prev":"0000000000000000000000000000000000000000000000000000000000000000","service":"admin","payload":{"rules_version":"2026-11"}}
}

func ExampleParse() {
	data := []byte(`{"v":1,"id":"0123456789abcdef0123456789abcdef","time":"2026-11-28T22:00:00.123456789Z","kind":"access","patient":"5a00000000000000000000000000000000000000000000000000000000000001","seq":1,"prev":"0000000000000000000000000000000000000000000000000000000000000000","service":"hopital-nord.example/dpi","payload":{"decision":"allow"}}`)
	b, err := event.Parse(data)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(b.Kind, b.Seq, b.Time.Format(time.RFC3339Nano), b.Service)

	// Another byte form of the same event is refused.
	_, err = event.Parse([]byte(strings.Replace(string(data), `"seq":1`, `"seq": 1`, 1)))
	fmt.Println(err)

	// So is a version this package does not know.
	_, err = event.Parse([]byte(`{"v":2,"id":"0123456789abcdef0123456789abcdef"}`))
	fmt.Println(err, errors.Is(err, event.ErrUnsupportedVersion))
	// Output:
	// access 1 2026-11-28T22:00:00.123456789Z hopital-nord.example/dpi
	// event body: not in canonical form (whitespace or escapes)
	// unsupported event body version 2 true
}
