// Package need finds the commands the deploy tests run. scripts/test.sh
// installs them from Debian's packages; a test run without them skips,
// except under CI=true, where it fails.
package need

import (
	"os"
	"os/exec"
	"testing"
)

// Command returns the path of name, or ends the test: a failure under
// CI=true, a skip that says why otherwise.
func Command(t testing.TB, name, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing (Debian package %s), and CI=true: scripts/test.sh installs it", name, debianPackage)
	}
	t.Skipf("%s is missing (Debian package %s): scripts/test.sh installs it", name, debianPackage)
	return ""
}
