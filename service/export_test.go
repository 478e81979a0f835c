package service

// HoldStop makes Stop call hold once the health endpoint says stopping,
// before anything stops.
func (s *Service) HoldStop(hold func()) { s.stopping = hold }

// HoldHealth makes the health endpoint call hold in each request's
// handler, before it answers.
func (s *Service) HoldHealth(hold func()) { s.health.hold.Store(&hold) }
