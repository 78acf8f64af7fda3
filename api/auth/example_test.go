package auth_test

import (
	"context"
	"fmt"

	"github.com/vigie-sante/vigie/api/auth"
)

// The embedded issuer mints a token, and a verifier that trusts its keys
// returns the identity it carries. The patient's INS never prints.
func Example() {
	key, err := auth.GenerateIssuerKey()
	if err != nil {
		panic(err)
	}
	issuer, err := auth.NewIssuer(auth.IssuerConfig{Issuer: "https://vigie.localhost", Audience: "vigie", Key: key})
	if err != nil {
		panic(err)
	}
	verifier, err := auth.NewVerifier(auth.VerifierConfig{Issuer: issuer.Issuer(), Audience: issuer.Audience(), Keys: issuer.Keys()})
	if err != nil {
		panic(err)
	}
	token, err := issuer.Mint(auth.TokenRequest{Role: auth.RolePatient, Subject: "137047624348415"})
	if err != nil {
		panic(err)
	}
	id, err := verifier.Verify(context.Background(), token)
	if err != nil {
		panic(err)
	}
	ins, _ := id.Patient()
	fmt.Println(id.Role(), id, ins)
	// Output: patient patient (bearer) INS(redacted)
}
