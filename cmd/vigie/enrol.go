package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/vigie-sante/vigie/api/client"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/consent/enrolment"
	"github.com/vigie-sante/vigie/consent/ident"
)

// enrolUsage is vigie enrol's synopsis.
const enrolUsage = `usage: vigie enrol issue --patient-ins-file FILE [--ttl 72h] --server URL --token-file FILE
       vigie enrol revoke --patient-ins-file FILE [--issuer URL] --server URL --token-file FILE`

// runEnrol is "vigie enrol": an administrator issues a patient's one-time
// enrolment code, or revokes a patient's enrolments, through the API
// (AdminService). The INS is read from a file, never from the command
// line (a process list shows it), and never printed.
func runEnrol(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "issue" && args[0] != "revoke" {
		fmt.Fprintln(stderr, enrolUsage)
		return exitUsage
	}
	sub := args[0]
	fs := newFlagSet("enrol "+sub, stderr)
	var rc remoteConfig
	fs.StringVar(&rc.server, "server", "http://127.0.0.1:8080", "URL of Vigie's HTTP API")
	fs.StringVar(&rc.token, "token", "", "an administrator's bearer token (prefer the environment variable, or --token-file: a flag shows in the process list)")
	fs.StringVar(&rc.tokenFile, "token-file", "", "file holding an administrator's bearer token")
	fs.StringVar(&rc.tlsCA, "tls-ca", "", "CA certificates (PEM) to trust for an https server, instead of the system's")
	insFile := fs.String("patient-ins-file", "", "file holding the patient's INS (15 characters; spaces allowed). Required")
	ttl := fs.Duration("ttl", enrolment.DefaultTTL, "issue: how long the code lasts (at most 720h)")
	issuer := fs.String("issuer", "", "revoke: the issuer whose link to remove (its URL, as in --issuers); empty: every issuer")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	if code, done := parseFlags(fs, args[1:]); done {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "vigie enrol %s: %v\n", sub, err)
		var ue *usageError
		if errors.As(err, &ue) {
			return exitUsage
		}
		return exitFailure
	}
	if *insFile == "" {
		return fail(usagef("--patient-ins-file is required"))
	}
	ins, err := readINSFile(*insFile)
	if err != nil {
		return fail(err)
	}
	if sub == "issue" && (*ttl <= 0 || *ttl > enrolment.MaxTTL) {
		return fail(usagef("--ttl: want more than 0 and at most %s", enrolment.MaxTTL))
	}
	if rc.token != "" && rc.tokenFile != "" {
		return fail(usagef("--token and --token-file: give one"))
	}
	if rc.tokenFile != "" {
		b, err := os.ReadFile(rc.tokenFile)
		if err != nil {
			return fail(usagef("--token-file: %v", err))
		}
		rc.token = strings.TrimSpace(string(b))
	}
	if rc.token == "" {
		return fail(usagef("an administrator's token is needed (--token-file, or VIGIE_TOKEN)"))
	}
	cl, err := rc.client()
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	switch sub {
	case "issue":
		c, err := cl.IssueEnrolmentCode(ctx, &vigiev1.IssueEnrolmentCodeRequest{PatientIns: ins.Canonical(), TtlSeconds: int64(*ttl / time.Second)})
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "Enrolment code: %s\n", c.Code)
		fmt.Fprintf(stdout, "Valid until %s, once. Give it to the patient by another channel than their sign-in (a letter, at the desk); they type it in the portal after signing in.\n", c.ExpireTime.AsTime().UTC().Format(time.RFC3339))
	case "revoke":
		r, err := cl.RevokeEnrolments(ctx, &vigiev1.RevokeEnrolmentsRequest{PatientIns: ins.Canonical(), Issuer: *issuer})
		if client.IsCode(err, codes.NotFound) {
			return fail(errors.New("the patient has no enrolment to revoke (at that issuer)"))
		}
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "Enrolments revoked: %d (recorded in the patient's history). A sign-in verified in the last 5 minutes may still work until then.\n", r.Revoked)
	}
	return exitOK
}

// readINSFile reads a patient's INS from a file (at most 64 bytes, spaces
// allowed). Errors name the file, never its content.
func readINSFile(path string) (ident.INS, error) {
	f, err := os.Open(path)
	if err != nil {
		return ident.INS{}, usagef("--patient-ins-file: %v", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 65))
	if err != nil {
		return ident.INS{}, usagef("--patient-ins-file: %v", err)
	}
	if len(b) > 64 {
		return ident.INS{}, usagef("--patient-ins-file: %s is longer than an INS", path)
	}
	ins, err := ident.NormalizeINS(strings.TrimSpace(string(b)))
	if err != nil {
		return ident.INS{}, usagef("--patient-ins-file: %s does not hold a valid INS (%v)", path, err)
	}
	return ins, nil
}
