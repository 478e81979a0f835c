package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/nats-io/nuid"

	"github.com/natsprov/provisioner/jsbatch"
)

// The JetStream write floors measure what one write costs the servers on
// this machine, next to the service's rows: a change through the JetStream
// store makes a few writes (a user record and an audit record for a
// user.create; a name claim, the record, the name's fence and an audit
// record for an account.create), so their cost bounds how close the
// service can come to floors that store nothing. They run in an account of
// their own that the bench makes and deletes, on a stream with the
// bucket's replicas and the servers' sync setting.
const (
	writeSize      = 400 // bytes, about a user record
	writeBatchSize = 32
	writeStream    = "BENCH_WRITES"
)

// writeFloor is the bench's own JetStream account, its connection and
// stream.
type writeFloor struct {
	account string
	nc      *nats.Conn
	js      jetstream.JetStream
	data    []byte
}

// startWriteFloor makes an account with JetStream, pushes it, connects a
// user of it and creates the stream with replicas replicas.
func (e *Env) startWriteFloor(ctx context.Context, replicas int) (_ *writeFloor, err error) {
	acct, err := nkeys.CreateAccount()
	if err != nil {
		return nil, err
	}
	signer, err := nkeys.CreateAccount()
	if err != nil {
		return nil, err
	}
	user, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	apub, _ := acct.PublicKey()
	spub, _ := signer.PublicKey()
	upub, _ := user.PublicKey()
	ac := jwt.NewAccountClaims(apub)
	ac.Name = "bench-jetstream-writes"
	ac.SigningKeys.Add(spub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	token, err := ac.Encode(e.Operator.Signer)
	if err != nil {
		return nil, err
	}
	if err := e.push(subjectClaimsUpdate, token); err != nil {
		return nil, err
	}
	w := &writeFloor{account: apub, data: make([]byte, writeSize)}
	defer func() {
		if err != nil {
			w.stop(context.WithoutCancel(ctx), e)
		}
	}()
	uc := jwt.NewUserClaims(upub)
	uc.IssuerAccount = apub
	ujwt, err := uc.Encode(signer)
	if err != nil {
		return nil, err
	}
	useed, _ := user.Seed()
	if w.nc, err = nats.Connect(e.URL, nats.UserJWTAndSeed(ujwt, string(useed)), nats.Name("bench-jetstream-writes")); err != nil {
		return nil, fmt.Errorf("bench: connect to the write floor's account: %w", err)
	}
	if w.js, err = jetstream.New(w.nc); err != nil {
		return nil, err
	}
	cfg := jetstream.StreamConfig{Name: writeStream, Subjects: []string{"bench.>"}, Replicas: replicas, MaxMsgsPerSubject: 1, AllowAtomicPublish: true}
	// A cluster may take a moment to place a new account's first stream.
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = w.js.CreateStream(cctx, cfg)
		cancel()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("bench: create the write floor's stream (R%d): %w", replicas, err)
	}
	return w, nil
}

// write is one acknowledged write of its own key, as the store's
// single writes are.
func (w *writeFloor) write(ctx context.Context) error {
	_, err := w.js.Publish(ctx, "bench."+nuid.Next(), w.data)
	return err
}

// batch is one atomic batch of writeBatchSize writes, committed, as the
// store's batches of user records are.
func (w *writeFloor) batch(ctx context.Context) error {
	msgs := make([]*nats.Msg, writeBatchSize)
	for i := range msgs {
		msgs[i] = &nats.Msg{Subject: "bench." + nuid.Next(), Data: w.data}
	}
	_, err := jsbatch.Publish(ctx, w.nc, msgs)
	return err
}

// stop deletes the stream and the account.
func (w *writeFloor) stop(ctx context.Context, e *Env) error {
	var errs []error
	if w.js != nil {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := w.js.DeleteStream(cctx, writeStream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			errs = append(errs, err)
		}
		cancel()
	}
	if w.nc != nil {
		w.nc.Close()
	}
	errs = append(errs, e.deleteAccounts([]string{w.account}))
	return errors.Join(errs...)
}
