package keys

// Process is who reads a secret file, for the tests of CheckPrivate's
// rule under another user than the test's.
type Process = process

// NewProcess returns a process of effective user uid, group gid and the
// supplementary groups.
func NewProcess(uid, gid int, groups ...int) Process {
	return process{uid: uid, gid: gid, groups: groups}
}

// CheckPrivateAs is CheckPrivate as process p.
func CheckPrivateAs(path string, p Process) error { return checkPrivate(path, p) }
