package main

import (
	"context"
	"strings"
	"testing"
)

// TestEnrolUsage: vigie enrol refuses bad input before calling the
// server, naming the flag, never printing the file's content.
func TestEnrolUsage(t *testing.T) {
	const notINS = "179035121518988" // a wrong control key
	good, bad, long := writeFile(t, e2ePatient+"\n"), writeFile(t, notINS), writeFile(t, strings.Repeat("1", 100))
	token := writeFile(t, "x.y.z")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", []string{}, "usage: vigie enrol issue"},
		{"unknown subcommand", []string{"link"}, "usage: vigie enrol issue"},
		{"no INS file", []string{"issue", "--token-file", token}, "--patient-ins-file is required"},
		{"INS file missing", []string{"issue", "--patient-ins-file", "/nonexistent", "--token-file", token}, "--patient-ins-file"},
		{"not an INS", []string{"revoke", "--patient-ins-file", bad, "--token-file", token}, "does not hold a valid INS"},
		{"too long", []string{"issue", "--patient-ins-file", long, "--token-file", token}, "longer than an INS"},
		{"ttl too long", []string{"issue", "--patient-ins-file", good, "--token-file", token, "--ttl", "1000h"}, "--ttl"},
		{"no token", []string{"issue", "--patient-ins-file", good}, "administrator's token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("VIGIE_TOKEN", "")
			var out, errOut strings.Builder
			code := runEnrol(context.Background(), tc.args, &out, &errOut)
			if code != exitUsage || !strings.Contains(errOut.String(), tc.want) {
				t.Errorf("exit %d, %q; want %d saying %q", code, errOut.String(), exitUsage, tc.want)
			}
			if strings.Contains(errOut.String()+out.String(), notINS) || strings.Contains(errOut.String()+out.String(), e2ePatient) {
				t.Errorf("the output quotes the INS: %s", errOut.String())
			}
		})
	}
}
