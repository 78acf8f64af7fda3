package keys

import "io/fs"

// Process is who reads a secret file, for the tests of CheckPrivate's
// rule under another user than the test's.
type Process = process

// NewProcess returns a process of effective user uid, group gid and the
// supplementary groups.
func NewProcess(uid, gid int, groups ...int) Process {
	return process{uid: uid, gid: gid, groups: groups}
}

// CheckOwnerMode is CheckPrivate's rule as process p over a file of
// owner uid, group gid and mode perm, at path.
func CheckOwnerMode(path string, uid, gid int, perm fs.FileMode, p Process) error {
	return checkOwnerMode(path, uid, gid, perm, p)
}

// CheckPrivateAs is CheckPrivate as process p.
func CheckPrivateAs(path string, p Process) error { return checkPrivate(path, p) }
