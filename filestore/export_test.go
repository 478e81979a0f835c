package filestore

import "testing"

// BreakJournal makes every flush fail once it is called, from the next
// journal data flush on, for a test outside the package (one that runs
// the whole service on a file store): the store then breaks, as on a
// disk that fails every write.
func BreakJournal(t *testing.T) func() {
	t.Helper()
	f := installSyncFault(t)
	return func() { f.arm(1, true) }
}
