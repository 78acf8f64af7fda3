package event

import "unsafe"

// unsafeString returns b as a string without copying; b must not change
// while the string is in use (checkPayload's keys live for one call).
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
