package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
)

// Events is where the service reports each change: the events subjects,
// and an audit stream where there is one. Publish must not block for long
// and never fails the change it reports.
type Events interface {
	Publish(ctx context.Context, e api.Event)
}

// callerNameWithheld stands in an event for a caller's connection name
// that looks like it holds an nkey seed.
const callerNameWithheld = "(withheld: it holds what looks like an nkey seed)"

// emit reports a change that was made.
func (s *Service) emit(ctx context.Context, e api.Event) {
	if s.cfg.Events == nil {
		return
	}
	if e.Time == "" {
		e.Time = time.Now().UTC().Format(time.RFC3339Nano)
	}
	if e.Result == "" {
		e.Result = "ok"
	}
	e.Instance = s.cfg.Instance
	if e.Caller.Kind == "" {
		e.Caller.Kind = "admin"
	}
	// A tenant's connection name is whatever its client chose, checked by
	// no one: one that holds a seed (a client named by its own seed, by
	// mistake) went to the admins' events and the audit stream, kept a
	// year, as it was. An event never holds a seed.
	if looksLikeSeed(e.Caller.Name) {
		e.Caller.Name = callerNameWithheld
	}
	s.cfg.Events.Publish(ctx, e)
}

// AuditLog pages the durable record of past events (the audit stream of
// the JetStream store): up to limit events after the sequence after, the
// sequence to go on from, and when the log was made, which the caller
// sends back with it as made (zero: not checked); a log made at another
// time since is ErrConflict.
type AuditLog interface {
	Page(ctx context.Context, account string, after uint64, made time.Time, limit int) ([]api.AuditEntry, uint64, time.Time, error)
}

// Audit pages the audit log (prov.audit): the events of one account, by
// name or key (a deleted account by key), or of all.
func (s *Service) Audit(ctx context.Context, req api.AuditRequest) (*api.AuditReply, error) {
	if s.cfg.Audit == nil {
		return nil, fmt.Errorf("%w: there is no audit stream: it is kept with the JetStream store; the events subjects (<prefix>.events.>) carry every change either way", ErrNotFound)
	}
	if req.Limit < 0 || req.Limit > api.MaxAuditLimit {
		return nil, fmt.Errorf("%w: \"limit\" must be from 0 (the default, %d) to %d", ErrInvalid, api.DefaultAuditLimit, api.MaxAuditLimit)
	}
	acct := strings.TrimSpace(req.Account)
	if acct != "" && !nkeys.IsValidPublicAccountKey(acct) {
		t, err := s.resolve(ctx, acct)
		if err != nil {
			return nil, err
		}
		acct = t.pub
	}
	entries, next, made, err := s.cfg.Audit.Page(ctx, acct, req.After, req.StreamCreated, req.Limit)
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid) || errors.Is(err, ErrConflict) {
		// The stream gone, until the next event makes it again; a cursor
		// from a stream made again since.
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	// A page stops early to fit one message, as the lists do (page): an
	// event's caller.name is a tenant's connection name, kilobytes long,
	// and a page over max_payload is no reply. Each entry is measured as
	// the reply encodes it; a page holds at least one, so that following
	// next always ends.
	budget := s.jwtLimit() - 4096 // room for the envelope
	for i, e := range entries {
		b, _ := json.Marshal(e) // strings and numbers: it cannot fail
		if budget -= len(b) + 1; budget < 0 && i > 0 {
			entries, next = entries[:i], entries[i-1].Seq
			break
		}
	}
	if entries == nil {
		entries = []api.AuditEntry{}
	}
	return &api.AuditReply{Events: entries, Next: next, StreamCreated: made}, nil
}
