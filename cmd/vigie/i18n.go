package main

import (
	"fmt"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/misuse"
	"github.com/vigie-sante/vigie/consent/replay"
	"github.com/vigie-sante/vigie/internal/texts"
	"github.com/vigie-sante/vigie/ledger/audit"
)

// lang is the language of a report: French (the default) or English, as
// internal/texts numbers them.
type lang texts.Lang

const (
	fr = lang(texts.FR)
	en = lang(texts.EN)
)

func langOf(code string) lang {
	if code == "en" {
		return en
	}
	return fr
}

// t returns the catalogue's text id (internal/texts) in l, its
// placeholders replaced by args, given as name, value pairs.
func (l lang) t(id string, args ...any) string {
	return texts.Format(texts.Lang(l), id, args...)
}

// group is the catalogue's ids of a kind of value: its prefix, to which
// the value is appended ("finding." + "rollback").
type group[K comparable] string

// What each finding of ledger/audit, each finding of the replay and each
// misuse alert means, for its reader; the purposes and actions of access
// requests.
var (
	findingTitles = group[audit.Kind]("finding.")
	replayTitles  = group[replay.Kind]("replay.")
	alertTitles   = group[misuse.Kind]("alert.")
	purposes      = group[consent.Purpose]("purpose.")
	actions       = group[consent.Action]("action.")
)

// title returns the text of k in its group; a value the catalogue does
// not know (read from the server) is shown escaped, as it is.
func title[K comparable](l lang, g group[K], k K) string {
	id := string(g) + fmt.Sprint(k)
	if _, ok := texts.Lookup(id); ok {
		return l.t(id)
	}
	return consent.EscapeText(fmt.Sprint(k))
}
