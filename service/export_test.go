package service

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go"
)

// WaitJetStreamOn is waitJetStream on nc, the connection name of creds.
func WaitJetStreamOn(ctx context.Context, nc *nats.Conn, name, creds string, op func() error) error {
	return waitJetStream(ctx, &conn{nc: nc, name: name, creds: creds, closed: make(chan struct{})}, "test", slog.New(slog.DiscardHandler), op)
}

// HoldStop makes Stop call hold once the health endpoint says stopping,
// before anything stops.
func (s *Service) HoldStop(hold func()) { s.stopping = hold }

// HoldHealth makes the health endpoint call hold in each request's
// handler, before it answers.
func (s *Service) HoldHealth(hold func()) { s.health.hold.Store(&hold) }

// StopRenewingInstance stops renewing the lease on the instance name, as
// a process that crashed stops: the lease stays in the bucket.
func (s *Service) StopRenewingInstance() {
	s.stopClaim()
	<-s.claimDone
	s.stopClaim = nil
}

// ResumeRenewingInstance starts renewing the lease on the instance name
// again after StopRenewingInstance, as a paused process resumes.
func (s *Service) ResumeRenewingInstance() { s.renewInstance() }
