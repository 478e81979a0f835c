// Package jsbatch publishes messages to a JetStream stream as one atomic
// batch (nats-server 2.12 and later, on a stream with allow_atomic): the
// stream stores all of them or none, and answers once, for the commit.
package jsbatch

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Headers of an atomic batch publish.
const (
	IDHeader     = "Nats-Batch-Id" // kept on each stored message
	seqHeader    = "Nats-Batch-Sequence"
	commitHeader = "Nats-Batch-Commit"
)

// Ack is a stream's answer to a committed batch.
type Ack struct {
	// Seq is the stream sequence of the batch's last message; the batch
	// is stored in order, in one piece, so its first is Seq-Count+1.
	Seq   uint64 `json:"seq"`
	Batch string `json:"batch"`
	Count int    `json:"count"`
}

// Publish sends msgs on nc as one atomic batch and waits, at most until
// ctx ends, for the commit's answer. The messages are copied, so a caller
// may send them again one by one. An error means the batch may not have
// been stored: a refusal (a *jetstream.APIError: an expected revision that
// did not hold, a duplicate message id), or no answer.
func Publish(ctx context.Context, nc *nats.Conn, msgs []*nats.Msg) (*Ack, error) {
	if len(msgs) == 0 {
		return nil, fmt.Errorf("jsbatch: an empty batch")
	}
	id := nuid.Next()
	var reply *nats.Msg
	for i, m := range msgs {
		b := nats.NewMsg(m.Subject)
		b.Data = m.Data
		for k, v := range m.Header {
			b.Header[k] = append([]string(nil), v...)
		}
		b.Header.Set(IDHeader, id)
		b.Header.Set(seqHeader, strconv.Itoa(i+1))
		if i < len(msgs)-1 {
			// No answer is asked for before the commit: the commit's
			// answer tells whether the whole batch was stored.
			if err := nc.PublishMsg(b); err != nil {
				return nil, err
			}
			continue
		}
		b.Header.Set(commitHeader, "1")
		var err error
		if reply, err = nc.RequestMsgWithContext(ctx, b); err != nil {
			return nil, err
		}
	}
	var ack struct {
		Ack
		Error *jetstream.APIError `json:"error"`
	}
	switch {
	case json.Unmarshal(reply.Data, &ack) != nil:
		return nil, fmt.Errorf("jsbatch: unreadable answer to a batch commit: %q", reply.Data)
	case ack.Error != nil:
		return nil, ack.Error
	case ack.Batch != id || ack.Count != len(msgs) || ack.Seq < uint64(len(msgs)):
		return nil, fmt.Errorf("jsbatch: commit answered for batch %q of %d messages ending at %d, want %q of %d", ack.Batch, ack.Count, ack.Seq, id, len(msgs))
	}
	return &ack.Ack, nil
}
