package provision

import "time"

// Remembers reports whether this instance's memory of the servers
// (confirmations: versions confirmed, DELETEs carried out, cache resolver
// copies and backoffs) holds anything for an account.
func (s *Service) Remembers(pub string) bool {
	c := &s.confirm
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m[pub]) > 0 || len(c.gone[pub]) > 0 || len(c.cached[pub]) > 0 || len(c.waits[pub]) > 0
}

// Caches reports whether this instance holds the decoded state of an
// account (its signing keys among it).
func (s *Service) Caches(pub string) bool {
	_, ok := s.cache.Load(pub)
	return ok
}

// SetMisfitsSettle sets how old a version must be before a reconcile pass
// revokes the users that do not fit it. Call it before any pass runs.
func (s *Service) SetMisfitsSettle(d time.Duration) {
	s.misfitsSettle = d
}

// AccountLockRefs reports how many hold or wait for an account's lock.
func (s *Service) AccountLockRefs(pub string) int {
	s.locks.mu.Lock()
	defer s.locks.mu.Unlock()
	if l := s.locks.m["account:"+pub]; l != nil {
		return l.refs
	}
	return 0
}
