package service

// HoldStop makes Stop call hold once the health endpoint says stopping,
// before anything stops.
func (s *Service) HoldStop(hold func()) { s.stopping = hold }
