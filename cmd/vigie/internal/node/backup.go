package node

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/trillian/sqlite"
)

// A backup archive is a gzip-compressed tar file: first manifest.json
// (Manifest), then vigie.db and trillian.db, each a consistent copy of
// the embedded mode's SQLite file made by the running node with its
// sender and checkpointer paused (ledger.Ledger.Pause), so that the two
// agree: the log's tree holds no leaf the ledger does not count as sent,
// and the ledger's latest checkpoint is within the tree. The keys are not
// in it: the operator keeps the data directory's keys directory apart.

// BackupFormat is the first field of every manifest: the archive's
// format and its version.
const BackupFormat = "vigie-backup/1"

// The files of a backup, in the archive's order.
var backupFiles = []string{"vigie.db", "trillian.db"}

// maxManifest bounds the manifest's size when reading an archive.
const maxManifest = 1 << 20

// RestoredCheckpoint is the file, in a restored data directory, holding
// the latest checkpoint in the backup. While it exists the node starts
// only with Config.PublishedCheckpointFile (the latest checkpoint
// published, which may be that very file when nothing newer was).
const RestoredCheckpoint = "restored-checkpoint"

// BackupSocket is the Unix socket, in the data directory, on which a
// running embedded node makes backups (ServeBackups). The data
// directory is owner-only, so only the node's user reaches it.
const BackupSocket = "backup.sock"

// Manifest describes a backup archive.
type Manifest struct {
	Format string `json:"format"`
	// Version is the version of vigie that made the backup.
	Version string `json:"version"`
	// Created is when the copy was made (UTC).
	Created time.Time `json:"created"`
	// Origin is the log's origin.
	Origin string `json:"origin"`
	// Checkpoint is the latest signed checkpoint in the copy (a signed
	// note), and CheckpointSize its size; empty before the first.
	Checkpoint     string `json:"checkpoint"`
	CheckpointSize uint64 `json:"checkpoint_size"`
	// Files are the archive's files after the manifest, in order.
	Files []BackupFile `json:"files"`
}

// BackupFile is a file of a backup archive.
type BackupFile struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	// SHA256 is the hex SHA-256 of the file's bytes.
	SHA256 string `json:"sha256"`
	// SchemaVersion is the SQLite file's user_version.
	SchemaVersion int64 `json:"schema_version"`
}

// Backup writes a backup archive of the embedded node to w: both SQLite
// files copied while the ledger's sender and checkpointer are paused
// (recording goes on), then compressed with their manifest. version is
// the binary's, for the manifest. It fails on a node whose storage is
// not the embedded mode's SQLite files (back up PostgreSQL and Trillian's
// storage with their own tools).
func (n *Node) Backup(ctx context.Context, w io.Writer, version string) (Manifest, error) {
	lite := n.DB.SQLiteFile()
	tstore, ok := n.Trillian.Storage.(*sqlite.Storage)
	if lite == nil || !ok {
		return Manifest{}, errors.New("backup: only the embedded mode's SQLite files are backed up by vigie; back up PostgreSQL and Trillian's storage with their own tools")
	}
	tmp, err := os.MkdirTemp(n.DataDir, ".backup-")
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	defer os.RemoveAll(tmp)
	m := Manifest{Format: BackupFormat, Version: version, Origin: n.Origin}
	schema := map[string]int64{"vigie.db": lite.UserVersion(), "trillian.db": sqlite.SchemaVersion}
	err = func() error {
		resume, err := n.Ledger.Pause(ctx)
		if err != nil {
			return err
		}
		defer resume()
		m.Created = time.Now().UTC()
		// Paused, the latest checkpoint is the copy's.
		cp, size, err := n.Ledger.LatestCheckpoint(ctx)
		if err != nil && !errors.Is(err, ledger.ErrNotFound) {
			return err
		}
		m.Checkpoint, m.CheckpointSize = string(cp), size
		if err := lite.CopyTo(ctx, filepath.Join(tmp, "vigie.db")); err != nil {
			return err
		}
		return tstore.CopyTo(ctx, filepath.Join(tmp, "trillian.db"))
	}()
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	for _, name := range backupFiles {
		f := BackupFile{Name: name, SchemaVersion: schema[name]}
		if f.Size, f.SHA256, err = hashFile(filepath.Join(tmp, name)); err != nil {
			return Manifest{}, fmt.Errorf("backup: %w", err)
		}
		m.Files = append(m.Files, f)
	}
	if err := writeArchive(w, m, tmp); err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	return m, nil
}

func hashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return 0, "", err
	}
	return size, hex.EncodeToString(h.Sum(nil)), nil
}

func writeArchive(w io.Writer, m Manifest, dir string) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	mb = append(mb, '\n')
	if err := tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o600, Size: int64(len(mb)), ModTime: m.Created, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(mb); err != nil {
		return err
	}
	for _, bf := range m.Files {
		f, err := os.Open(filepath.Join(dir, bf.Name))
		if err != nil {
			return err
		}
		err = tw.WriteHeader(&tar.Header{Name: bf.Name, Mode: 0o600, Size: bf.Size, ModTime: m.Created, Typeflag: tar.TypeReg})
		if err == nil {
			_, err = io.Copy(tw, f)
		}
		f.Close()
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// CheckArchive reads a whole backup archive and checks it: the manifest
// first, of this format, then exactly the manifest's files, each of its
// size and SHA-256.
func CheckArchive(r io.Reader) (Manifest, error) {
	return readArchive(r, nil)
}

// Restore checks the backup archive r and writes its files into dataDir,
// which must be absent or empty, with the backup's latest checkpoint as
// RestoredCheckpoint. Nothing is left in dataDir if it fails. The keys
// are not in the archive: the operator copies the keys directory kept
// apart into KeysDir(dataDir) before starting the node.
func Restore(r io.Reader, dataDir string) (_ Manifest, err error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return Manifest{}, fmt.Errorf("restore: data directory: %w", err)
	}
	entries, err := os.ReadDir(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return Manifest{}, fmt.Errorf("restore: create data directory: %w", err)
		}
		defer func() {
			if err != nil {
				os.RemoveAll(abs)
			}
		}()
	case err != nil:
		return Manifest{}, fmt.Errorf("restore: data directory: %w", err)
	case len(entries) > 0:
		return Manifest{}, fmt.Errorf("restore: the data directory %s is not empty: restore into a new directory", abs)
	default:
		defer func() {
			if err != nil {
				// Empty before: leave it empty.
				entries, _ := os.ReadDir(abs)
				for _, e := range entries {
					os.RemoveAll(filepath.Join(abs, e.Name()))
				}
			}
		}()
	}
	m, err := readArchive(r, func(name string) (io.WriteCloser, error) {
		return os.OpenFile(filepath.Join(abs, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	})
	if err != nil {
		return Manifest{}, fmt.Errorf("restore: %w", err)
	}
	if err := os.WriteFile(filepath.Join(abs, RestoredCheckpoint), []byte(m.Checkpoint), 0o600); err != nil {
		return Manifest{}, fmt.Errorf("restore: %w", err)
	}
	if err := syncDir(abs); err != nil {
		return Manifest{}, fmt.Errorf("restore: %w", err)
	}
	return m, nil
}

// readArchive reads and checks an archive; create, if not nil, receives
// each file's bytes (it is closed after; the caller removes what it
// created if readArchive fails).
func readArchive(r io.Reader, create func(name string) (io.WriteCloser, error)) (Manifest, error) {
	zr, err := gzip.NewReader(bufio.NewReader(r))
	if err != nil {
		return Manifest{}, fmt.Errorf("archive: not a gzip file: %w", err)
	}
	tr := tar.NewReader(zr)
	hdr, err := tr.Next()
	if err != nil {
		return Manifest{}, fmt.Errorf("archive: %w", err)
	}
	if hdr.Name != "manifest.json" || hdr.Typeflag != tar.TypeReg || hdr.Size > maxManifest {
		return Manifest{}, errors.New("archive: manifest.json is not its first file")
	}
	var m Manifest
	dec := json.NewDecoder(io.LimitReader(tr, maxManifest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("archive: manifest.json: %w", err)
	}
	if m.Format != BackupFormat {
		return Manifest{}, fmt.Errorf("archive: manifest.json: format: want %s", BackupFormat)
	}
	if len(m.Files) != len(backupFiles) {
		return Manifest{}, fmt.Errorf("archive: manifest.json: files: want %d", len(backupFiles))
	}
	for i, f := range m.Files {
		if f.Name != backupFiles[i] {
			return Manifest{}, fmt.Errorf("archive: manifest.json: files[%d].name: want %s", i, backupFiles[i])
		}
		hdr, err := tr.Next()
		if err != nil {
			return Manifest{}, fmt.Errorf("archive: %s: %w", f.Name, err)
		}
		if hdr.Name != f.Name || hdr.Typeflag != tar.TypeReg || hdr.Size != f.Size {
			return Manifest{}, fmt.Errorf("archive: file %d is not %s of the manifest's size", i+2, f.Name)
		}
		h := sha256.New()
		var w io.Writer = h
		var out io.WriteCloser
		if create != nil {
			if out, err = create(f.Name); err != nil {
				return Manifest{}, fmt.Errorf("archive: %s: %w", f.Name, err)
			}
			w = io.MultiWriter(h, out)
		}
		_, err = io.Copy(w, tr)
		if out != nil {
			if err == nil {
				err = out.(*os.File).Sync()
			}
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("archive: %s: %w", f.Name, err)
		}
		if hex.EncodeToString(h.Sum(nil)) != f.SHA256 {
			return Manifest{}, fmt.Errorf("archive: %s: its SHA-256 is not the manifest's: the archive is damaged", f.Name)
		}
	}
	if _, err := tr.Next(); err != io.EOF {
		return Manifest{}, errors.New("archive: files beyond the manifest's")
	}
	// To the end of the compressed stream: its CRC covers the manifest.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return Manifest{}, fmt.Errorf("archive: %w", err)
	}
	return m, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ServeBackups serves backups of the node (Backup) on BackupSocket in its
// data directory until ctx is done: POST /backup answers the archive.
// The socket is the node's user's only (0600, in a 0700 directory): no
// other local user can pull the ledger's data, which a loopback TCP port
// would let any of them do. Embedded mode only.
func (n *Node) ServeBackups(ctx context.Context, version string) error {
	path := filepath.Join(n.DataDir, BackupSocket)
	// The data directory is this process's (its files are locked): a
	// socket left there is a dead process's.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("backup socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("backup socket: %w", err)
	}
	// Connecting needs write permission on the socket: its owner only,
	// whatever the directory's mode.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("backup socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /backup", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/gzip")
		if _, err := n.Backup(r.Context(), w, version); err != nil {
			// The client checks the archive: a failure after the first
			// bytes is a damaged archive to it.
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	go func() {
		<-ctx.Done()
		srv.Close()
		os.Remove(path)
	}()
	return nil
}

// RequestBackup asks the node running on dataDir for a backup
// (ServeBackups) and writes the archive to w.
func RequestBackup(ctx context.Context, dataDir string, w io.Writer) error {
	path := filepath.Join(dataDir, BackupSocket)
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://vigie/backup", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("reach the node running on %s (is vigie serve running, in the embedded mode?): %w", dataDir, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("the node refused: %s", msg)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}
