package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/client"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/service"
)

// Example provisions an account and a user through the client against a
// whole deployment started in-process (see startDeployment), and connects
// with the user's creds.
func Example() {
	url, adminCreds, stop := startDeployment()
	defer stop()

	// The admin's creds may read replies only under their own inbox
	// prefix.
	nc, err := nats.Connect(url, nats.UserCredentials(adminCreds), nats.CustomInboxPrefix(bootstrap.AdminInboxPrefix))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c := client.New(nc)
	ctx := context.Background()

	acct, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Tags: []string{"tier:gold"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("account %s: %s...\n", acct.Account.Name, acct.Account.PublicKey[:1])

	// The client makes alice's key; only its public key is sent.
	user, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "alice", ExpiresIn: "24h"})
	if err != nil {
		log.Fatal(err)
	}
	defer user.Wipe()
	fmt.Printf("user %s: %s..., seed %s...\n", user.Name, user.PublicKey[:1], user.Seed.Bytes()[:2])
	fmt.Println("printed, the seed is", user.Seed)

	// os.CreateTemp makes the file 0600, as a file holding a seed must be.
	f, err := os.CreateTemp("", "alice-*.creds")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(user.Creds.Bytes()); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
	alice, err := nats.Connect(url, nats.UserCredentials(f.Name()))
	fmt.Println("alice connects:", err == nil)
	if err == nil {
		alice.Close()
	}

	_, err = c.GetAccount(ctx, api.AccountRequest{Account: "nobody"})
	var e *client.Error
	fmt.Println(errors.Is(err, client.ErrNotFound), errors.As(err, &e) && e.Code == 404)

	for a, err := range c.Accounts(ctx, api.ListRequest{}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("listed:", a.Name)
	}
	// Output:
	// account acme: A...
	// user alice: U..., seed SU...
	// printed, the seed is [redacted]
	// alice connects: true
	// true true
	// listed: acme
}

// startDeployment starts what `provisioner dev` starts: a deployment
// written by bootstrap.Init into a temp dir, an embedded nats-server from
// its config, and the service. It returns the server URL, the admin creds
// file and a function that stops everything and removes the directory.
func startDeployment() (url, adminCreds string, stop func()) {
	dir, err := os.MkdirTemp("", "client-example-")
	if err != nil {
		log.Fatal(err)
	}
	res, err := bootstrap.Init(bootstrap.Options{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	srv, err := natsembed.Start(res.ServerConf, natsembed.Options{Port: -1})
	if err != nil {
		log.Fatal(err)
	}
	cfg, err := config.Load(res.Config)
	if err != nil {
		log.Fatal(err)
	}
	cfg.NATSURL = srv.URL()
	svc, err := service.Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		log.Fatal(err)
	}
	return srv.URL(), res.AdminCreds, func() {
		svc.Stop()
		srv.Stop()
		os.RemoveAll(dir)
	}
}
