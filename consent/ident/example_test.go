package ident_test

import (
	"errors"
	"fmt"

	"github.com/vigie-sante/vigie/consent/ident"
)

func ExampleNormalizeINS() {
	x, err := ident.NormalizeINS("1 85 05 2a 012 345 79")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(x)             // prints redacted, whatever the verb
	fmt.Println(x.Canonical()) // the only way to the digits
	// Output:
	// INS(redacted)
	// 185052A01234579
}

func ExampleParseINS_errors() {
	_, err := ident.ParseINS("185052A01234578")
	fmt.Println(err, errors.Is(err, ident.ErrINSKey))
	_, err = ident.ParseINS("1 85 05 2A 012 345 79")
	fmt.Println(err)
	// Output:
	// INS control key does not match true
	// INS must be 15 characters, got 21 characters
}

func ExampleRedactINS() {
	fmt.Println(ident.RedactINS("request_id=req-185052a01234579 caller=service:1 85 05 2A 012 345 79"))
	// Output:
	// request_id=req-INS(redacted) caller=service:INS(redacted)
}
