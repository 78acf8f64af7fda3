package node

// SetBeforePin sets Init's hook before pinning, for a test; the returned
// function resets it.
func SetBeforePin(f func()) func() {
	beforePin = f
	return func() { beforePin = nil }
}
