package provision

// Remembers reports whether this instance's memory of the servers
// (confirmations: versions confirmed, DELETEs carried out, cache resolver
// copies and backoffs) holds anything for an account.
func (s *Service) Remembers(pub string) bool {
	c := &s.confirm
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m[pub]) > 0 || len(c.gone[pub]) > 0 || len(c.cached[pub]) > 0 || len(c.waits[pub]) > 0
}
