package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/client"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/testenv"
)

// pauseOn is a TCP relay to the server at port that pauses the server
// (SIGSTOP) just before it passes on the first client bytes holding
// marker, and then passes them on: the request reaches a server that is
// paused, as when a server stalls after the CLI has connected. It returns
// the relay's URL.
func pauseOn(t *testing.T, port int, server *os.Process, marker string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var once sync.Once
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				in.Close()
				continue
			}
			t.Cleanup(func() { in.Close(); out.Close() })
			go io.Copy(in, out)
			go func() {
				buf := make([]byte, 64<<10)
				for {
					n, err := in.Read(buf)
					if n > 0 {
						if bytes.Contains(buf[:n], []byte(marker)) {
							once.Do(func() { _ = testenv.PauseProcess(server) })
						}
						if _, err := out.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						out.Close()
						return
					}
				}
			}()
		}
	}()
	return "nats://" + ln.Addr().String()
}

// TestUserCreateInDoubtGivesTheRevokeCommand: the server stalls once the
// create is sent, and no reply comes within --timeout. The client's
// *client.UserInDoubtError names the key sent; the CLI printed it without
// the command that revokes it (and a 504 lost the key altogether). The
// error gives the command, which fences the key, and the exit code is
// that of a request without a reply (2).
func TestUserCreateInDoubtGivesTheRevokeCommand(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	server := env.RealServer(t)
	env.Start(t)
	relay := pauseOn(t, env.Port, server, api.Subject(api.DefaultPrefix, api.SubjectUserCreate))
	c := &cli{env: env, conn: []string{"--server", relay, "--creds", env.Init.AdminCreds}}
	c.mustRun(t, "account", "create", "acme")

	out := filepath.Join(t.TempDir(), "alice.creds")
	_, _, err := c.run(t, "user", "create", "acme", "alice", "-o", out, "--timeout", "1s")
	server.Signal(syscall.SIGCONT)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || exitCode(err) != 2 {
		t.Fatalf("user create with the server paused: %v (exit %d), want no reply in time, exit 2", err, exitCode(err))
	}
	_, line, ok := strings.Cut(err.Error(), "with: provisioner ")
	if !ok {
		t.Fatalf("no revoke command in %q", err)
	}
	args := strings.Fields(line)
	if len(args) != 4 || args[0] != "user" || args[1] != "revoke" || args[2] != "acme" || !nkeys.IsValidPublicUserKey(args[3]) {
		t.Fatalf("revoke command %q", line)
	}
	if _, err := os.Lstat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a creds file at %s after a create in doubt: %v", out, err)
	}
	// The server goes on and delivers the request it kept, after the
	// caller's deadline: the service does not issue it (the next create
	// comes behind it on the same subscription), and the command given
	// still fences the key.
	c.mustRun(t, "user", "create", "acme", "bob", "-o", filepath.Join(t.TempDir(), "bob.creds"))
	var list api.ListUsersReply
	decodeJSON(t, c.mustRun(t, "user", "list", "acme", "--json"), &list)
	if len(list.Users) != 1 || list.Users[0].Name != "bob" {
		t.Fatalf("listed %+v, want bob alone: alice's request came after the CLI's deadline", list.Users)
	}
	if rep := c.mustRun(t, args...); !strings.HasPrefix(rep, "Revoked user "+args[3]) {
		t.Fatalf("the given revoke command printed:\n%s", rep)
	}
	c.mustRun(t, "user", "create", "acme", "alice", "-o", out)
}

// TestUserCreateInDoubt504NamesTheKey: a 504 is the service's answer, so
// it exits 1, but its message kept only the service's description: the
// key in doubt, which the client reports, was lost.
func TestUserCreateInDoubt504NamesTheKey(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	err := asServiceError(inDoubt("acme", &client.UserInDoubtError{PublicKey: pub,
		Err: &client.Error{Code: api.CodeTimeout, Description: "the user record may have taken effect"}}))
	if exitCode(err) != 1 || !errors.Is(err, client.ErrTimeout) {
		t.Errorf("exit %d for %v, want 1 and ErrTimeout", exitCode(err), err)
	}
	if !strings.Contains(err.Error(), "(code 504)") || !strings.HasSuffix(err.Error(), "with: provisioner user revoke acme "+pub) {
		t.Errorf("message %q, want the description and the revoke command of %s", err, pub)
	}
}

// TestUserCreateRefusedIsNotInDoubt: creds that may not publish the
// request get the server's "Permissions Violation for Publish", and the
// server drops the message (it never reaches the service). The CLI
// stopped at the violation but reported the create in doubt, telling the
// operator to revoke a key no service ever saw. It says the server
// refused the request, and nothing was issued.
func TestUserCreateRefusedIsNotInDoubt(t *testing.T) {
	t.Parallel()
	c := newCLI(t, bootstrap.Options{})
	c.mustRun(t, "account", "create", "acme")
	out := filepath.Join(t.TempDir(), "alice.creds")
	_, _, err := runCmd(t, "user", "create", "acme", "alice", "-o", out, "--timeout", "20s",
		"--server", c.env.Server.URL(), "--creds", c.env.Init.ProvisionerCreds)
	var doubt *userInDoubtError
	if err == nil || errors.As(err, &doubt) || strings.Contains(err.Error(), "revoke") || exitCode(err) != 2 ||
		!strings.Contains(err.Error(), `Permissions Violation for Publish to "prov.user.create"`) {
		t.Fatalf("user create with creds that may not send it: %v (exit %d), want the server's refusal, exit 2, and no revoke command", err, exitCode(err))
	}
	if _, err := os.Lstat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a creds file at %s after a refused create: %v", out, err)
	}
	var list api.ListUsersReply
	decodeJSON(t, c.mustRun(t, "user", "list", "acme", "--json"), &list)
	if len(list.Users) != 0 {
		t.Errorf("a refused create issued %+v", list.Users)
	}
}
