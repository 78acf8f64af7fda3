//go:build !unix

package node

// lockDir does nothing where flock does not exist: runs of vigie init
// sharing a data directory are not serialised there.
func lockDir(dir string) (func(), error) { return func() {}, nil }
