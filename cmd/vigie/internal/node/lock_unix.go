//go:build unix

package node

import (
	"fmt"
	"os"
	"syscall"
)

// lockDir takes an exclusive lock on a directory, waiting for it, until
// the returned function releases it (or the process ends).
func lockDir(dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
