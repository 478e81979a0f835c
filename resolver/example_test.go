package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/resolver"
)

// The client uses a system account connection as it is given; with creds
// that allow replies only under their own prefix, the connection says which.
// It is not run: it needs a deployment.
func Example() {
	nc, err := nats.Connect("nats://127.0.0.1:4222",
		nats.UserCredentials("provisioner.creds"),
		nats.CustomInboxPrefix("_INBOX_provisioner"))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	c, err := resolver.New(ctx, nc, resolver.Options{Timeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// A server that (re)starts may have missed pushes: look at it again.
	go func() {
		for s := range c.Joined() {
			fmt.Println("joined:", s.Name, s.ID)
		}
	}()

	var accountJWT string // signed by the operator signing key
	res, err := c.Update(ctx, accountJWT)
	switch {
	case errors.Is(err, provision.ErrNotSent):
		fmt.Println("no server got it; nothing changed")
	case errors.Is(err, provision.ErrRefused), errors.Is(err, provision.ErrTimeout):
		fmt.Println("not stored:", err)
	}
	for _, r := range res {
		fmt.Println(r.Server, r.Code, r.Message)
	}
}
