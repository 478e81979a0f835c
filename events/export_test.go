package events

import (
	"context"
	"time"
)

// Batches is how many atomic batches of audit events were stored.
func (p *Publisher) Batches() int64 { return p.batches.Load() }

// ForceBatches makes the writer batch on one replica too, where it does
// not by choice (it costs more there), so that a single test server can
// check how batches are written.
func (p *Publisher) ForceBatches() { p.allowAtomic.Store(true) }

// Lost is how many audit events the publisher gave up.
func (p *Publisher) Lost() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lost
}

// SetAuditTimeout sets auditTimeout, for the publishers made after, and
// returns what puts it back.
func SetAuditTimeout(d time.Duration) func() {
	old := auditTimeout
	auditTimeout = d
	return func() { auditTimeout = old }
}

// Writing tells whether a writer goroutine runs (it says it stops under
// the lock, just before it returns).
func (p *Publisher) Writing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.writing
}

// SetAuditDuplicates sets the audit stream's duplicate window, for the
// publishers made after, and returns what puts it back.
func SetAuditDuplicates(d time.Duration) func() {
	old := auditDuplicates
	auditDuplicates = d
	return func() { auditDuplicates = old }
}

// AuditMaxQueue is the bound of the events waiting for the writer.
const AuditMaxQueue = auditMaxQueue

// SetAuditMaxBytes sets the bound WithAudit gives the audit stream, for
// the publishers made after, and returns what puts it back.
func SetAuditMaxBytes(n int64) func() {
	old := auditMaxBytes
	auditMaxBytes = n
	return func() { auditMaxBytes = old }
}

// Recreate makes the audit stream again if it is gone, as the writer does
// when a write finds no stream (call it while no event waits).
func (p *Publisher) Recreate(ctx context.Context) { p.recreate(ctx) }

// SetBatchesOffFor sets how long the writer writes one by one after the
// audit stream refused a batch as it allows none, for the publishers
// made after, and returns what puts it back.
func SetBatchesOffFor(d time.Duration) func() {
	old := batchesOffFor
	batchesOffFor = d
	return func() { batchesOffFor = old }
}

// SetBeforeConsumer sets what Page runs between its read of the stream's
// info and the create of its consumer.
func (a *Audit) SetBeforeConsumer(f func()) { a.beforeConsumer = f }
