package main

import (
	"fmt"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/misuse"
	"github.com/vigie-sante/vigie/consent/replay"
	"github.com/vigie-sante/vigie/ledger/audit"
)

// lang is the language of a report: French (the default) or English.
type lang int

const (
	fr lang = iota
	en
)

func langOf(code string) lang {
	if code == "en" {
		return en
	}
	return fr
}

// msg is a message in French and in English, a fmt format.
type msg [2]string

func (l lang) f(m msg, args ...any) string { return fmt.Sprintf(m[l], args...) }

// What each finding of ledger/audit means, for its reader.
var findingTitles = map[audit.Kind]msg{
	audit.KindSignature:          {"point de contrôle non signé par la clé du journal épinglée", "checkpoint not signed by the pinned log key"},
	audit.KindRollback:           {"retour en arrière du journal (plus petit que lors d'une vérification précédente)", "log rolled back (smaller than at an earlier verification)"},
	audit.KindFork:               {"journal divergent (incohérent avec le point de contrôle enregistré)", "log fork (inconsistent with the saved checkpoint)"},
	audit.KindRootMismatch:       {"racine recalculée différente de la racine signée", "recomputed root differs from the signed root"},
	audit.KindProof:              {"preuve invalide", "proof does not verify"},
	audit.KindModifiedBody:       {"contenu d'événement modifié", "modified event body"},
	audit.KindMalformed:          {"donnée mal formée", "malformed data"},
	audit.KindMissingEvent:       {"événement manquant dans la chaîne", "event missing from the chain"},
	audit.KindUnexplainedErasure: {"événement effacé sans effacement enregistré", "event erased with no erasure recorded"},
	audit.KindWrongLink:          {"maillon de chaîne incorrect", "wrong chain link"},
	audit.KindDuplicate:          {"événement en double dans la chaîne", "duplicate event in the chain"},
	audit.KindRewritten:          {"historique réécrit depuis la vérification précédente", "history rewritten since the previous verification"},
	audit.KindReceipt:            {"reçu invalide", "invalid receipt"},
	audit.KindReceiptOverdue:     {"reçu non tenu : événement absent du journal après le délai promis", "receipt not honoured: event not in the log after the promised delay"},
	audit.KindNotInLog:           {"engagement absent du journal à l'index annoncé", "commitment not in the log at its index"},
	audit.KindWithheld:           {"événements du journal que la recherche n'a pas servis", "log events the search did not serve"},
	audit.KindUnreadable:         {"événement que le serveur ne peut plus lire : stockage altéré", "event the server can no longer read: storage altered"},
}

var replayTitles = map[replay.Kind]msg{
	replay.KindAllowDenied:    {"AUTORISATION que le rejeu REFUSE", "ALLOW that the replay DENIES"},
	replay.KindDenyAllowed:    {"refus que le rejeu autorise", "DENY that the replay allows"},
	replay.KindExplanation:    {"même réponse, autres motifs", "same answer, other grounds"},
	replay.KindConsentVersion: {"version de consentement autre que celle en vigueur", "consent version other than the one in force"},
	replay.KindConsentChange:  {"changement de consentement incohérent", "inconsistent consent change"},
	replay.KindRules:          {"règles nationales non confirmées", "national rules not confirmed"},
	replay.KindUnreadable:     {"enregistrement d'accès illisible", "unreadable access record"},
}

var alertTitles = map[misuse.Kind]msg{
	misuse.KindBreakGlassRate:       {"accès en urgence fréquents", "frequent emergency accesses"},
	misuse.KindBreakGlassUnreviewed: {"accès en urgence non revu", "emergency access not reviewed"},
	misuse.KindNoCareRelationship:   {"accès hors relation de soins", "access without care relationship"},
	misuse.KindBurst:                {"rafale : nombreux patients en peu de temps", "burst: many patients in a short time"},
	misuse.KindOddHours:             {"accès à des heures inhabituelles", "accesses at odd hours"},
	misuse.KindRepeatedDenials:      {"refus répétés (sondage)", "repeated denials (probing)"},
	misuse.KindOutsideMatrix:        {"tentatives hors matrice d'habilitations", "attempts outside the access matrix"},
}

func title[K comparable](l lang, titles map[K]msg, k K) string {
	if m, ok := titles[k]; ok {
		return m[l]
	}
	return consent.EscapeText(fmt.Sprint(k)) // a value read from the server
}

var purposes = map[consent.Purpose]msg{
	consent.PurposeTreatment:          {"soins", "care"},
	consent.PurposeEmergencyTreatment: {"soins en urgence", "emergency care"},
	consent.PurposeBreakGlass:         {"bris de glace", "break-glass"},
	consent.PurposePayment:            {"paiement", "payment"},
	consent.PurposeOperations:         {"gestion", "operations"},
	consent.PurposeResearch:           {"recherche", "research"},
}

var actions = map[consent.Action]msg{
	consent.ActionRead:  {"lecture", "read"},
	consent.ActionWrite: {"ajout", "write"},
	consent.ActionHide:  {"masquage", "hide"},
}

var (
	mRecord       = msg{"dossier entier", "whole record"}
	mDocument     = msg{"document %s", "document %s"}
	mAllowed      = msg{"autorisé", "allowed"}
	mDenied       = msg{"REFUSÉ", "DENIED"}
	mEmergency    = msg{"⚠ URGENCE", "⚠ EMERGENCY"}
	mProfessional = msg{"professionnel %s (%s, établissement %s)", "professional %s (%s, organisation %s)"}
	mCareTeam     = msg{"équipe de soins", "care team"}
)
