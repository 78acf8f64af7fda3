// Package container_test builds the image of Containerfile with
// build.sh and checks its files. Running a container does not work in
// this project's sandbox, so the binary is taken out of the image and run
// on the host.
package container_test

import (
	"bytes"
	"crypto/x509"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vigie-sante/vigie/deploy/internal/need"
)

// imageConfig is the part of `podman image inspect` the test reads.
type imageConfig struct {
	Config struct {
		User         string
		Env          []string
		Entrypoint   []string
		Cmd          []string
		Volumes      map[string]struct{}
		ExposedPorts map[string]struct{}
		Labels       map[string]string
	}
}

func TestImage(t *testing.T) {
	need.Command(t, "podman", "podman")
	version := strings.TrimSpace(string(run(t, "../../scripts/version.sh")))

	// A storage of the test's own, on vfs: no overlay mounts here.
	store := t.TempDir()
	podman := []string{"--root", filepath.Join(store, "root"), "--runroot", filepath.Join(store, "run"), "--storage-driver", "vfs"}
	out := run(t, "./build.sh", podman...)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	id := lines[len(lines)-1]
	if !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("build.sh printed %q last, want the image's ID", id)
	}

	var cfgs []imageConfig
	if err := json.Unmarshal(run(t, "podman", append(podman, "image", "inspect", id)...), &cfgs); err != nil || len(cfgs) != 1 {
		t.Fatalf("podman image inspect: %v (%d images)", err, len(cfgs))
	}
	cfg := cfgs[0].Config
	root := strings.TrimSpace(string(run(t, "podman", append(podman, "image", "mount", id)...)))
	t.Cleanup(func() { exec.Command("podman", append(podman, "image", "unmount", id)...).Run() })

	t.Run("user is not root", func(t *testing.T) {
		uid, gid, ok := strings.Cut(cfg.User, ":")
		n, err := strconv.Atoi(uid)
		if !ok || err != nil || n == 0 || gid == "0" {
			t.Errorf("USER %q, want numeric uid:gid, neither 0", cfg.User)
		}
		passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
		if err != nil || !strings.Contains(string(passwd), ":"+uid+":"+gid+":") {
			t.Errorf("/etc/passwd names no user %s (%v)", cfg.User, err)
		}
	})
	t.Run("labels carry the version", func(t *testing.T) {
		for label, want := range map[string]string{
			"org.opencontainers.image.version": version,
			"org.opencontainers.image.title":   "vigie",
			"org.opencontainers.image.source":  "https://github.com/vigie-sante/vigie",
		} {
			if got := cfg.Labels[label]; got != want {
				t.Errorf("label %s = %q, want %q", label, got, want)
			}
		}
		if rev := cfg.Labels["org.opencontainers.image.revision"]; len(rev) != 40 {
			t.Errorf("label org.opencontainers.image.revision = %q, want a commit", rev)
		}
	})
	t.Run("binary is static and runs", func(t *testing.T) {
		bin := filepath.Join(root, "usr/bin/vigie")
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("/usr/bin/vigie has an ELF interpreter: not a static binary (CGO_ENABLED=0)")
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("/usr/bin/vigie needs shared libraries %v", libs)
		}
		got := string(run(t, bin, "version"))
		if !strings.HasPrefix(got, "vigie "+version+" ") {
			t.Errorf("vigie version = %q, want vigie %s (...)", got, version)
		}
	})
	t.Run("entrypoint is vigie serve", func(t *testing.T) {
		if cmd := append(slices.Clone(cfg.Entrypoint), cfg.Cmd...); !slices.Equal(cmd, []string{"/usr/bin/vigie", "serve"}) {
			t.Errorf("entrypoint and command %q, want [/usr/bin/vigie serve]", cmd)
		}
		help := string(runAllowFail(filepath.Join(root, "usr/bin/vigie"), "serve", "--help"))
		for _, kv := range cfg.Env {
			name, _, _ := strings.Cut(kv, "=")
			if strings.HasPrefix(name, "VIGIE_") && !strings.Contains(help, "["+name+"]") {
				t.Errorf("ENV %s is the variable of no flag of vigie serve", name)
			}
		}
		if !slices.Contains(cfg.Env, "VIGIE_DATA_DIR=/data") {
			t.Errorf("ENV %q, want VIGIE_DATA_DIR=/data", cfg.Env)
		}
		for _, p := range []string{"8080/tcp", "8081/tcp"} {
			if _, ok := cfg.ExposedPorts[p]; !ok {
				t.Errorf("EXPOSE lacks %s", p)
			}
		}
	})
	t.Run("data volume belongs to the user", func(t *testing.T) {
		if _, ok := cfg.Volumes["/data"]; !ok {
			t.Errorf("volumes %v, want /data", cfg.Volumes)
		}
		info, err := os.Stat(filepath.Join(root, "data"))
		if err != nil || !info.IsDir() {
			t.Fatalf("/data: %v", err)
		}
		uid, _, _ := strings.Cut(cfg.User, ":")
		if got := strconv.Itoa(int(fileUID(info))); got != uid {
			t.Errorf("/data is owned by uid %s, want %s", got, uid)
		}
	})
	t.Run("CA bundle", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(root, "etc/ssl/certs/ca-certificates.crt"))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) || bytes.Count(b, []byte("BEGIN CERTIFICATE")) < 10 {
			t.Error("/etc/ssl/certs/ca-certificates.crt holds no CA bundle")
		}
	})
	t.Run("nothing but vigie's files", func(t *testing.T) {
		var files []string
		filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() {
				rel, _ := filepath.Rel(root, path)
				files = append(files, rel)
			}
			return err
		})
		want := []string{"etc/group", "etc/passwd", "etc/ssl/certs/ca-certificates.crt", "usr/bin/vigie"}
		if !slices.Equal(files, want) {
			t.Errorf("image files %q, want %q", files, want)
		}
	})
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, stderr.Bytes())
	}
	return out
}

func runAllowFail(name string, args ...string) []byte {
	out, _ := exec.Command(name, args...).CombinedOutput()
	return out
}
