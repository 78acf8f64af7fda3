// Package compose_test loads the compose files with compose-go, as
// docker compose and podman compose do, and checks what an operator
// relies on.
package compose_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/vigie-sante/vigie/deploy/internal/vigie"
)

// env is what an operator sets.
var env = map[string]string{
	"VIGIE_LOG_NAME":  "vigie.chu.example",
	"TLS_SERVER_NAME": "vigie.chu.example",
	"TREE_ID":         "7",
	"TRILLIAN_IMAGE":  "localhost/trillian:v1.8.0",
}

func load(t *testing.T, file string, env map[string]string) (*types.Project, error) {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(file) {
		file = filepath.Join(dir, file)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: file, Content: b}},
		Environment: env,
	}, func(o *loader.Options) {
		o.Profiles = []string{"*"}
		o.SkipConsistencyCheck = false
		// Secret files are the operator's, never in the repository.
		o.ResolvePaths = true
	})
}

func mustLoad(t *testing.T, file string) *types.Project {
	t.Helper()
	p, err := load(t, file, env)
	if err != nil {
		t.Fatalf("load %s: %v", file, err)
	}
	return p
}

// TestStrict: the loader refuses a key the compose specification does
// not have, and a required variable left unset: a typo fails here.
func TestStrict(t *testing.T) {
	for _, file := range []string{"embedded.yaml", "cluster.yaml"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		bad := filepath.Join(t.TempDir(), file)
		typo := strings.Replace(string(b), "    healthcheck:", "    healthchek:", 1)
		if err := os.WriteFile(bad, []byte(typo), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := load(t, bad, env); err == nil || !strings.Contains(err.Error(), "healthchek") {
			t.Errorf("%s with an unknown key: err = %v, want it refused", file, err)
		}
		partial := maps(env)
		delete(partial, "VIGIE_LOG_NAME")
		if _, err := load(t, file, partial); err == nil || !strings.Contains(err.Error(), "VIGIE_LOG_NAME") {
			t.Errorf("%s without VIGIE_LOG_NAME: err = %v, want it refused", file, err)
		}
	}
}

func maps(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func TestEmbedded(t *testing.T) {
	p := mustLoad(t, "embedded.yaml")
	if names := p.ServiceNames(); !slices.Equal(names, []string{"vigie"}) {
		t.Fatalf("services %v, want [vigie]", names)
	}
	s := p.Services["vigie"]
	checkNode(t, p, s)
	checkVolume(t, s, "/data")
	if len(s.Command) != 0 {
		t.Errorf("command %q, want the image's (serve)", s.Command)
	}
	noSecretInlined(t, p)
}

func TestCluster(t *testing.T) {
	p := mustLoad(t, "cluster.yaml")
	want := []string{"postgres", "trillian-log-server", "trillian-log-signer", "vigie-1", "vigie-2", "vigie-init"}
	if names := p.ServiceNames(); !slices.Equal(names, want) {
		t.Fatalf("services %v, want %v", names, want)
	}
	for _, name := range []string{"vigie-1", "vigie-2"} {
		s := p.Services[name]
		t.Run(name, func(t *testing.T) {
			checkNode(t, p, s)
			checkVolume(t, s, "/data")
			checkVolume(t, s, "/data/keys")
			for k, want := range map[string]string{
				"VIGIE_TRILLIAN":         "trillian-log-server:8090",
				"VIGIE_TRILLIAN_TREE_ID": env["TREE_ID"],
				"VIGIE_KEK_FILE":         "/run/secrets/kek",
			} {
				if got := value(s.Environment[k]); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if db := value(s.Environment["VIGIE_DB"]); !strings.HasPrefix(db, "postgres://") {
				t.Errorf("VIGIE_DB = %q, want a postgres:// URL", db)
			}
			if d, ok := s.DependsOn["postgres"]; !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("depends on postgres %+v, want it healthy first", d)
			}
		})
	}
	if a, b := p.Services["vigie-1"].Volumes[0].Source, p.Services["vigie-2"].Volumes[0].Source; a == b {
		t.Errorf("both nodes on data volume %s: a data directory is locked by one process", a)
	}
	if a, b := p.Services["vigie-1"].Volumes[1].Source, p.Services["vigie-2"].Volumes[1].Source; a != b {
		t.Errorf("keys volumes %s and %s: the nodes share the keys vigie init made", a, b)
	}

	init := p.Services["vigie-init"]
	if !slices.Equal(init.Command, types.ShellCommand{"init"}) || init.Restart != "no" {
		t.Errorf("vigie-init: command %q restart %q, want a one-shot vigie init", init.Command, init.Restart)
	}
	if _, ok := init.Environment["VIGIE_TRILLIAN_TREE_ID"]; ok {
		t.Error("vigie-init is given a tree ID: it creates the tree")
	}
	checkVolume(t, init, "/data/keys")

	pg := p.Services["postgres"]
	if pg.HealthCheck == nil || !slices.Contains(pg.HealthCheck.Test, "pg_isready") {
		t.Errorf("postgres healthcheck %+v, want pg_isready", pg.HealthCheck)
	}
	checkVolume(t, pg, "/var/lib/postgresql/data")
	schema := false
	for _, v := range pg.Volumes {
		if v.Type == types.VolumeTypeBind && strings.HasSuffix(v.Source, "ledger/trillian/postgresql_schema.sql") {
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("Trillian's schema: %v", err)
			}
			schema = true
		}
	}
	if !schema {
		t.Error("postgres does not load Trillian's schema")
	}
	for _, name := range []string{"trillian-log-server", "trillian-log-signer"} {
		s := p.Services[name]
		if !slices.Contains(s.Command, "--storage_system=postgresql") {
			t.Errorf("%s: command %q, want the postgresql storage", name, s.Command)
		}
	}
	noSecretInlined(t, p)
}

// checkNode checks what every Vigie node needs.
func checkNode(t *testing.T, p *types.Project, s types.ServiceConfig) {
	t.Helper()
	hc := s.HealthCheck
	if hc == nil || hc.Disable || len(hc.Test) < 3 || hc.Test[0] != "CMD" || hc.Test[1] != "/usr/bin/vigie" || hc.Test[2] != "health" || slices.Contains(hc.Test, "--live") {
		t.Errorf("%s: healthcheck %+v, want vigie health (/readyz)", s.Name, hc)
	} else if !slices.Contains(hc.Test, "--tls-server-name") || !slices.Contains(hc.Test, env["TLS_SERVER_NAME"]) {
		t.Errorf("%s: healthcheck %q does not check the certificate's name", s.Name, hc.Test)
	}
	if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") || !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("%s: read_only %v cap_drop %v security_opt %v, want a read-only root, no capability, no new privileges", s.Name, s.ReadOnly, s.CapDrop, s.SecurityOpt)
	}
	if drain := vigie.DrainTimeout(t); s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) <= drain {
		t.Errorf("%s: stop_grace_period %v, want more than --drain-timeout (%v)", s.Name, s.StopGracePeriod, drain)
	}
	if value(s.Environment["VIGIE_LOG_NAME"]) != env["VIGIE_LOG_NAME"] {
		t.Errorf("%s: VIGIE_LOG_NAME %q: required beyond loopback", s.Name, value(s.Environment["VIGIE_LOG_NAME"]))
	}
	targets := map[string]bool{}
	for _, sec := range s.Secrets {
		targets[sec.Target] = true
		if _, ok := p.Secrets[sec.Source]; !ok {
			t.Errorf("%s: secret %s is not defined", s.Name, sec.Source)
		}
	}
	for _, f := range []string{"/etc/vigie/tls/tls.crt", "/etc/vigie/tls/tls.key"} {
		if !targets[f] {
			t.Errorf("%s: no secret at %s (the image's VIGIE_TLS_CERT, VIGIE_TLS_KEY)", s.Name, f)
		}
	}
}

// checkVolume checks that target is a named volume of s.
func checkVolume(t *testing.T, s types.ServiceConfig, target string) {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Target == target {
			if v.Type != types.VolumeTypeVolume || v.ReadOnly {
				t.Errorf("%s: %s is a %s (read-only %v), want a writable named volume", s.Name, target, v.Type, v.ReadOnly)
			}
			return
		}
	}
	t.Errorf("%s: no volume at %s", s.Name, target)
}

var secretish = regexp.MustCompile(`(?i)pass|secret|key|token|kek`)

// noSecretInlined: secrets come from files (compose secrets), never from
// the compose file or a variable's value; a database URL has no
// password.
func noSecretInlined(t *testing.T, p *types.Project) {
	t.Helper()
	for name, sec := range p.Secrets {
		if sec.File == "" || sec.Content != "" || sec.Environment != "" {
			t.Errorf("secret %s: want it from a file", name)
		}
	}
	for _, s := range p.Services {
		for k, v := range s.Environment {
			val := value(v)
			if secretish.MatchString(k) && !strings.HasPrefix(val, "/run/secrets/") && !strings.HasPrefix(val, "/etc/vigie/") {
				t.Errorf("%s: %s holds a value, want a file under /run/secrets", s.Name, k)
			}
			if u, err := url.Parse(val); err == nil && u.User != nil {
				if _, ok := u.User.Password(); ok {
					t.Errorf("%s: %s has a password in its URL", s.Name, k)
				}
			}
		}
		for _, arg := range s.Command {
			if strings.Contains(arg, "password=") || strings.Contains(arg, ":@") {
				t.Errorf("%s: a password in its command", s.Name)
			}
		}
	}
}

func value(v *string) string {
	if v == nil {
		return ""
	}
	return *v
}
