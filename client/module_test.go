package client_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// outsideProgram is a program of another module that provisions through
// the client, as a user of the library would write it.
const outsideProgram = `package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/client"
)

func main() {
	url := flag.String("url", "", "NATS server URL")
	creds := flag.String("creds", "", "admin creds file")
	inbox := flag.String("inbox-prefix", "", "inbox prefix the creds may read replies on")
	dir := flag.String("dir", "", "directory for the user's creds")
	flag.Parse()
	if err := run(*url, *creds, *inbox, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "outside:", err)
		os.Exit(1)
	}
}

func run(url, creds, inbox, dir string) error {
	nc, err := nats.Connect(url, nats.UserCredentials(creds), nats.CustomInboxPrefix(inbox))
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := client.New(nc)
	acct, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: "outside"})
	if err != nil {
		return err
	}
	fmt.Println("account", acct.Account.Name, acct.Account.PublicKey[:1])
	u, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "outside", Name: "olive"})
	if err != nil {
		return err
	}
	defer u.Wipe()
	path := filepath.Join(dir, "olive.creds")
	if err := os.WriteFile(path, u.Creds.Bytes(), 0o600); err != nil {
		return err
	}
	olive, err := nats.Connect(url, nats.UserCredentials(path))
	if err != nil {
		return err
	}
	olive.Close()
	fmt.Println("user", u.Name, u.PublicKey[:1], "connects")
	_, err = c.GetAccount(ctx, api.AccountRequest{Account: "nobody"})
	fmt.Println("not found:", errors.Is(err, client.ErrNotFound))
	return nil
}
`

// TestUsedFromAnotherModule builds a program in a temporary module that
// requires the project by its module path, offline from the module cache,
// and runs it against a deployment: the client is usable from outside.
func TestUsedFromAnotherModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program; skipped with -short")
	}
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	env.Start(t)

	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	mod := t.TempDir()
	gomod := "module example.com/outside\n\ngo 1.26.8\n\n" +
		"require github.com/natsprov/provisioner v0.0.0-00010101000000-000000000000\n\n" +
		"replace github.com/natsprov/provisioner => " + root + "\n"
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"go.mod": []byte(gomod), "go.sum": sum, "main.go": []byte(outsideProgram)} {
		if err := os.WriteFile(filepath.Join(mod, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "outside")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	build.Dir = mod
	// Offline: every module comes from the module cache, checked against
	// the project's go.sum.
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off", "GOTOOLCHAIN=local", "GONOSUMDB=*", "GOSUMDB=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build of a module that requires github.com/natsprov/provisioner: %v\n%s", err, out)
	}

	run := exec.CommandContext(ctx, bin, "-url", env.Server.URL(), "-creds", env.Init.AdminCreds, "-inbox-prefix", bootstrap.AdminInboxPrefix, "-dir", t.TempDir())
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("the program failed: %v\n%s", err, out)
	}
	want := "account outside A\nuser olive U connects\nnot found: true\n"
	if string(out) != want {
		t.Fatalf("the program printed:\n%s\nwant:\n%s", out, want)
	}
}
