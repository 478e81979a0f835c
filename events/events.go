// Package events publishes the provisioner's change events: on
// <prefix>.events.<type> in the system account, where admins may subscribe,
// and, with the JetStream store, into a durable audit stream in the
// service's own account, which Audit pages through.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/provision"
)

// StreamName is the audit stream in the service's own account.
const StreamName = api.AuditStream

// AuditMaxBytes bounds the audit stream: a quarter of the 4 GiB of disk
// `provisioner init` gives the service account (about 2.7 million events).
const AuditMaxBytes = 1 << 30

// Publisher publishes events. It is safe for concurrent use.
type Publisher struct {
	nc     *nats.Conn
	prefix string
	js     jetstream.JetStream // nil: no audit stream
	log    *slog.Logger
	// retries are the audit writes being tried again.
	retries sync.WaitGroup
}

// auditTimeout bounds one audit write; auditAttempts bounds the attempts
// of one event before it is logged as lost.
const (
	auditTimeout  = 10 * time.Second
	auditAttempts = 5
)

var _ provision.Events = (*Publisher)(nil)

// New returns a Publisher that publishes on nc, a system-account
// connection.
func New(nc *nats.Conn, prefix string, log *slog.Logger) *Publisher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Publisher{nc: nc, prefix: prefix, log: log}
}

// AuditSubject is the subject of an event in the audit stream:
// <prefix>.audit.<account>.<type>, so that an account's events are one
// subject filter.
func AuditSubject(prefix, account, typ string) string {
	return prefix + ".audit." + account + "." + typ
}

// WithAudit makes the publisher also store every event in the audit stream
// of the service's own account, creating the stream when it is missing.
func (p *Publisher) WithAudit(ctx context.Context, svc *nats.Conn, replicas int) error {
	js, err := jetstream.New(svc,
		jetstream.WithPublishAsyncTimeout(auditTimeout),
		jetstream.WithPublishAsyncErrHandler(p.auditFailed),
	)
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "Every change the provisioner made: who, what, when, the result. Never a seed.",
		Subjects:    []string{p.prefix + ".audit.>"},
		Storage:     jetstream.FileStorage,
		Replicas:    max(1, replicas),
		MaxAge:      365 * 24 * time.Hour,
		// Bounded, so that it can never fill the service account's
		// storage, which the KV bucket shares: at the bound the oldest
		// events go, as with the age.
		MaxBytes: AuditMaxBytes,
		Discard:  jetstream.DiscardOld,
		// An audit write tried again after its answer was lost is
		// stored once (each event has a message id).
		Duplicates: 2 * time.Minute,
	})
	if err != nil {
		return fmt.Errorf("events: audit stream %s: %w", StreamName, err)
	}
	p.js = js
	return nil
}

// Publish sends an event. It never fails the change it reports: a failed
// publish is logged.
func (p *Publisher) Publish(ctx context.Context, e api.Event) {
	data, err := json.Marshal(e)
	if err != nil {
		p.log.Error("could not encode an event", "type", e.Type, "error", err)
		return
	}
	if err := p.nc.Publish(p.prefix+".events."+e.Type, data); err != nil {
		p.log.Warn("could not publish an event", "type", e.Type, "account", e.Account, "error", err)
	}
	if p.js == nil {
		return
	}
	// The change is made and its reply must not wait for the audit
	// stream, whose server may sync every write: the write is
	// asynchronous, in order, and tried again when it fails (auditFailed)
	// until Flush gives up. When the stream falls far behind, the writes wait.
	m := nats.NewMsg(AuditSubject(p.prefix, e.Account, e.Type))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, nuid.Next())
	if _, err := p.js.PublishMsgAsync(m); err != nil {
		p.retry(m, err)
	}
}

// auditFailed is the jetstream package's callback for an audit write that
// failed or had no answer in time; it must not block.
func (p *Publisher) auditFailed(_ jetstream.JetStream, m *nats.Msg, err error) {
	p.retry(m, err)
}

// retry writes an audit event again, synchronously, in a goroutine of its
// own, a few times; the message id makes a write that was stored after
// all count once.
func (p *Publisher) retry(m *nats.Msg, err error) {
	p.retries.Add(1)
	go func() {
		defer p.retries.Done()
		for attempt := 1; ; attempt++ {
			if attempt == auditAttempts {
				p.log.Error("could not store an event in the audit stream", "subject", m.Subject, "attempts", attempt, "error", err)
				return
			}
			time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
			retry := nats.NewMsg(m.Subject)
			retry.Data, retry.Header = m.Data, m.Header
			ctx, cancel := context.WithTimeout(context.Background(), auditTimeout)
			_, err = p.js.PublishMsg(ctx, retry)
			cancel()
			if err == nil {
				return
			}
		}
	}()
}

// Flush waits, at most timeout, for the audit writes in flight; the
// connection stays open, and the publisher may go on. It returns an error
// when some were not stored in that time.
func (p *Publisher) Flush(timeout time.Duration) error {
	if p.js == nil {
		return nil
	}
	done := make(chan struct{})
	go func() {
		<-p.js.PublishAsyncComplete()
		p.retries.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("events: %d audit writes not confirmed within %s", p.js.PublishAsyncPending(), timeout)
	}
}

// Audit pages through the audit stream.
type Audit struct {
	js     jetstream.JetStream
	prefix string
}

// NewAudit returns a reader of the audit stream on a connection in the
// service's own account.
func NewAudit(svc *nats.Conn, prefix string) (*Audit, error) {
	js, err := jetstream.New(svc)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	return &Audit{js: js, prefix: prefix}, nil
}

// Page returns up to limit events of an account ("" for every account)
// after the stream sequence after, and the sequence to go on from (0 when
// there are no more).
func (a *Audit) Page(ctx context.Context, account string, after uint64, limit int) ([]api.AuditEntry, uint64, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	filter := a.prefix + ".audit.>"
	if account != "" {
		filter = a.prefix + ".audit." + account + ".>"
	}
	stream, err := a.js.Stream(ctx, StreamName)
	if err != nil {
		return nil, 0, fmt.Errorf("events: audit stream: %w", err)
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    after + 1,
		// A page is read at once; the server forgets the consumer soon
		// after, instead of keeping one per request for minutes.
		InactiveThreshold: 5 * time.Second,
	})
	if err != nil {
		return nil, 0, fmt.Errorf("events: audit stream: %w", err)
	}
	batch, err := cons.FetchNoWait(limit + 1)
	if err != nil {
		return nil, 0, fmt.Errorf("events: audit stream: %w", err)
	}
	var out []api.AuditEntry
	var next uint64
	for m := range batch.Messages() {
		meta, err := m.Metadata()
		if err != nil {
			continue
		}
		if len(out) == limit {
			next = out[len(out)-1].Seq
			break
		}
		var e api.Event
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			continue
		}
		out = append(out, api.AuditEntry{Seq: meta.Sequence.Stream, Event: e})
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		return out, next, fmt.Errorf("events: audit stream: %w", err)
	}
	return out, next, nil
}
