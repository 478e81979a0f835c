package kvstore_test

import (
	"context"
	"log"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/kvstore"
	"github.com/natsprov/provisioner/seal"
)

// The service connects twice: as its system-account user for the claims
// API, and as a user of its own account for the bucket. Every instance
// opens the same bucket.
func ExampleOpen() {
	nc, err := nats.Connect("nats://127.0.0.1:4222", nats.UserCredentials("service.creds"), nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	key, err := seal.Load("seal.xk")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := kvstore.Open(ctx, nc, kvstore.Options{Seal: key, Instance: "provisioner-1", Logger: slog.Default()})
	if err != nil {
		log.Fatal(err) // no JetStream for the account, a bucket of other settings, ...
	}
	defer store.Close()

	// One instance at a time reconciles.
	if ok, err := store.TryLease(ctx, "reconcile", 30*time.Second); err == nil && ok {
		log.Print("reconciling")
	}
}
