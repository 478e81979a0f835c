package client_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/client"
	"github.com/natsprov/provisioner/provtest"
)

// started is a deployment with the service running and a client on the
// admin creds.
func started(t *testing.T, opts bootstrap.Options) (*provtest.Env, *client.Client) {
	t.Helper()
	env := provtest.Deployment(t, opts)
	env.Start(t)
	return env, client.New(env.Admin(t), client.WithPrefix(opts.SubjectPrefix))
}

func i64(v int64) *int64 { return &v }

// writeCreds writes a creds file into a temp dir, 0600.
func writeCreds(t *testing.T, creds []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "user.creds")
	if err := os.WriteFile(p, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAccountLifecycle(t *testing.T) {
	t.Parallel()
	env, c := started(t, bootstrap.Options{})
	ctx := context.Background()

	created, err := c.CreateAccount(ctx, api.CreateAccountRequest{
		Name:        "acme",
		Description: "the acme account",
		Limits:      &api.AccountLimits{Conn: i64(10), JetStreamLimits: api.JetStreamLimits{DiskStorage: i64(1 << 20)}},
		Tags:        []string{"tier:gold"},
	})
	if err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	if created.Account.Name != "acme" || !nkeys.IsValidPublicAccountKey(created.Account.PublicKey) {
		t.Fatalf("CreateAccount reply %+v", created.Account)
	}
	if len(created.Resolver) != 1 || created.Resolver[0].Code != 200 {
		t.Errorf("CreateAccount resolver answers %+v, want one 200", created.Resolver)
	}
	ac, err := jwt.DecodeAccountClaims(created.Account.JWT)
	if err != nil || ac.Subject != created.Account.PublicKey {
		t.Fatalf("CreateAccount JWT: %v, subject %s", err, ac.Subject)
	}

	for _, key := range []string{"acme", created.Account.PublicKey} {
		got, err := c.GetAccount(ctx, api.AccountRequest{Account: key})
		if err != nil {
			t.Fatalf("GetAccount(%s): %v", key, err)
		}
		if got.Account.PublicKey != created.Account.PublicKey || got.Account.Claims == nil {
			t.Fatalf("GetAccount(%s) = %+v", key, got.Account)
		}
		if l := got.Account.Claims.Limits; l.Conn != 10 || l.DiskStorage != 1<<20 || l.Subs != -1 {
			t.Errorf("GetAccount(%s) limits conn %d disk %d subs %d, want 10, 1MiB, unlimited", key, l.Conn, l.DiskStorage, l.Subs)
		}
		if got.Account.Claims.Description != "the acme account" || !got.Account.Claims.Tags.Contains("tier:gold") {
			t.Errorf("GetAccount(%s) description %q tags %v", key, got.Account.Claims.Description, got.Account.Claims.Tags)
		}
	}

	// Only what the update gives changes.
	updated, err := c.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", Limits: &api.AccountLimits{Subs: i64(100)}})
	if err != nil {
		t.Fatalf("UpdateAccount: %v", err)
	}
	uc, err := jwt.DecodeAccountClaims(updated.Account.JWT)
	if err != nil {
		t.Fatal(err)
	}
	if uc.Limits.Subs != 100 || uc.Limits.Conn != 10 || uc.Description != "the acme account" {
		t.Errorf("after UpdateAccount: subs %d conn %d description %q, want 100, 10 kept, description kept", uc.Limits.Subs, uc.Limits.Conn, uc.Description)
	}

	list, err := c.ListAccounts(ctx, api.ListRequest{})
	if err != nil {
		t.Fatalf("ListAccounts: %v", err)
	}
	if list.Total != 1 || len(list.Accounts) != 1 || list.Accounts[0] != (api.AccountSummary{Name: "acme", PublicKey: created.Account.PublicKey}) || list.NextOffset != 0 {
		t.Errorf("ListAccounts = %+v", list)
	}

	// A user of the account connects; the account's deletion shuts it out.
	u, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "alice"})
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	env.Connect(t, writeCreds(t, u.Creds.Bytes())).Close()

	del, err := c.DeleteAccount(ctx, api.AccountRequest{Account: "acme"})
	if err != nil {
		t.Fatalf("DeleteAccount: %v", err)
	}
	if del.Deleted != created.Account.PublicKey {
		t.Errorf("DeleteAccount deleted %s, want %s", del.Deleted, created.Account.PublicKey)
	}
	if _, err := c.GetAccount(ctx, api.AccountRequest{Account: "acme"}); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("GetAccount after DeleteAccount: %v, want ErrNotFound", err)
	}
	if _, err := nats.Connect(env.Server.URL(), nats.UserCredentials(writeCreds(t, u.Creds.Bytes()))); err == nil {
		t.Errorf("a user of the deleted account still connects")
	}
}

// TestErrorKinds checks that each failure the service reports comes back as
// an *Error with its wire code, matching its kind and no other.
func TestErrorKinds(t *testing.T) {
	t.Parallel()
	// The server's resolver holds three accounts: the system account, the
	// service's own and "taken"; it refuses a fourth.
	env, c := started(t, bootstrap.Options{NoDelete: true, ResolverLimit: 3})
	ctx := context.Background()
	if _, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: "taken"}); err != nil {
		t.Fatal(err)
	}
	kinds := []error{client.ErrInvalid, client.ErrForbidden, client.ErrNotFound, client.ErrConflict,
		client.ErrInternal, client.ErrRefused, client.ErrUnavailable, client.ErrTimeout, client.ErrStoreFull}
	tests := []struct {
		name     string
		call     func() error
		want     error
		wantCode int
		wantDesc string
	}{
		{"unknown account", func() error {
			_, err := c.GetAccount(ctx, api.AccountRequest{Account: "nobody"})
			return err
		}, client.ErrNotFound, 404, "nobody"},
		{"unknown account of a user", func() error {
			_, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "nobody", Name: "bob"})
			return err
		}, client.ErrNotFound, 404, "nobody"},
		{"duplicate name", func() error {
			_, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: "taken"})
			return err
		}, client.ErrConflict, 409, "taken"},
		{"empty name", func() error {
			_, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: ""})
			return err
		}, client.ErrInvalid, 400, "name"},
		{"negative offset", func() error {
			_, err := c.ListAccounts(ctx, api.ListRequest{Offset: -1})
			return err
		}, client.ErrInvalid, 400, "offset"},
		{"system account update", func() error {
			_, err := c.UpdateAccount(ctx, api.UpdateAccountRequest{Account: env.Init.SystemAccount, Limits: &api.AccountLimits{Conn: i64(1)}})
			return err
		}, client.ErrForbidden, 403, "system account"},
		{"user in the system account", func() error {
			_, err := c.CreateUser(ctx, api.CreateUserRequest{Account: env.Init.SystemAccount, Name: "intruder"})
			return err
		}, client.ErrForbidden, 403, "system account"},
		{"create refused by the server", func() error {
			_, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: "one-too-many"})
			return err
		}, client.ErrRefused, 502, "jwt store is full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var e *client.Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want a *client.Error", err)
			}
			if e.Code != tt.wantCode || !strings.Contains(e.Description, tt.wantDesc) {
				t.Errorf("got code %d %q, want %d mentioning %q", e.Code, e.Description, tt.wantCode, tt.wantDesc)
			}
			if want := fmt.Sprintf("%s (code %d)", e.Description, e.Code); err.Error() != want {
				t.Errorf("Error() = %q, want %q", err.Error(), want)
			}
			for _, k := range kinds {
				if got := errors.Is(err, k); got != (k == tt.want) {
					t.Errorf("errors.Is(err, %v) = %v", k, got)
				}
			}
		})
	}

	t.Run("a refused create leaves nothing", func(t *testing.T) {
		if _, err := c.GetAccount(ctx, api.AccountRequest{Account: "one-too-many"}); !errors.Is(err, client.ErrNotFound) {
			t.Errorf("GetAccount of the refused account: %v, want ErrNotFound", err)
		}
	})
	// With allow_delete off the servers keep the disabled version: that is
	// the end of a delete, not an error.
	t.Run("delete where servers do not allow deletes", func(t *testing.T) {
		got, err := c.GetAccount(ctx, api.AccountRequest{Account: "taken"})
		if err != nil {
			t.Fatal(err)
		}
		del, err := c.DeleteAccount(ctx, api.AccountRequest{Account: "taken"})
		if err != nil {
			t.Fatalf("DeleteAccount: %v, want success", err)
		}
		if del.Deleted != got.Account.PublicKey || del.Phase != api.PhaseDeleted || len(del.Waiting) != 0 {
			t.Errorf("DeleteAccount = %+v, want %s deleted, phase %q", del, got.Account.PublicKey, api.PhaseDeleted)
		}
		if _, err := c.GetAccount(ctx, api.AccountRequest{Account: "taken"}); !errors.Is(err, client.ErrNotFound) {
			t.Errorf("GetAccount after DeleteAccount: %v, want ErrNotFound", err)
		}
	})
}

// TestNoService: nothing answers on the subject.
func TestNoService(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	c := client.New(env.Admin(t))
	_, err := c.ListAccounts(context.Background(), api.ListRequest{})
	if !errors.Is(err, client.ErrNoService) || !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("got %v, want ErrNoService wrapping nats.ErrNoResponders", err)
	}
	if !strings.Contains(err.Error(), "no provisioner answers on prov.account.list") {
		t.Errorf("the message %q does not say that no provisioner answers on the subject", err)
	}
	var e *client.Error
	if errors.As(err, &e) {
		t.Errorf("no service is not a service error: %v", e)
	}
}

// silent subscribes to the provisioning subjects with the provisioner's
// creds and never answers, like a hung service.
func silent(t *testing.T, env *provtest.Env) {
	t.Helper()
	nc := env.Connect(t, env.Init.ProvisionerCreds)
	if _, err := nc.Subscribe("prov.>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestTimeouts: a service that does not answer costs the client's timeout,
// or the context's deadline when there is one.
func TestTimeouts(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	silent(t, env)
	nc := env.Admin(t)
	tests := []struct {
		name    string
		timeout time.Duration
		ctx     time.Duration // 0: no deadline
		want    time.Duration
	}{
		{"client timeout", 300 * time.Millisecond, 0, 300 * time.Millisecond},
		{"context deadline wins", 20 * time.Second, 300 * time.Millisecond, 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.ctx > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.ctx)
				defer cancel()
			}
			c := client.New(nc, client.WithTimeout(tt.timeout))
			began := time.Now()
			_, err := c.GetAccount(ctx, api.AccountRequest{Account: "acme"})
			took := time.Since(began)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v, want context.DeadlineExceeded", err)
			}
			if !strings.Contains(err.Error(), "no reply on prov.account.get") || !strings.Contains(err.Error(), "may still carry the request out") {
				t.Errorf("message %q", err)
			}
			if took < tt.want || took > tt.want+2*time.Second {
				t.Errorf("gave up after %s, want about %s", took, tt.want)
			}
		})
	}
	t.Run("canceled", func(t *testing.T) {
		// Canceled once the request is out: a cancel at a fixed time
		// landed, on a loaded machine, before it was sent (a "not sent"
		// error, another test's).
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		watch := env.Connect(t, env.Init.ProvisionerCreds)
		if _, err := watch.Subscribe("prov.account.get", func(*nats.Msg) { cancel() }); err != nil {
			t.Fatal(err)
		}
		if err := watch.Flush(); err != nil {
			t.Fatal(err)
		}
		_, err := client.New(nc).GetAccount(ctx, api.AccountRequest{Account: "acme"})
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "prov.account.get canceled") {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	})
}

// TestContextEndedBeforeTheCall: a context that has already ended sends
// nothing (nats.go checks it before it publishes), yet the error said the
// service "may still carry the request out": a caller of CreateUser would
// read back, or revoke, a user that was never asked for. It says nothing
// was sent, and a cause the caller gave is named, then and while waiting.
func TestContextEndedBeforeTheCall(t *testing.T) {
	t.Parallel()
	env, c := started(t, bootstrap.Options{})
	tp := newTap(t, env)
	if _, err := c.CreateAccount(context.Background(), api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("the job was called off"))
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	for _, tt := range []struct {
		name  string
		ctx   context.Context
		want  error
		cause string
	}{
		{"canceled", canceled, context.Canceled, "the job was called off"},
		{"deadline passed", expired, context.DeadlineExceeded, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.CreateUser(tt.ctx, api.CreateUserRequest{Account: "acme", Name: "alice"})
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), "prov.user.create not sent") || strings.Contains(err.Error(), "may still carry") || !strings.Contains(err.Error(), tt.cause) {
				t.Errorf("message %q, want it to say that prov.user.create was not sent (and the cause %q)", err, tt.cause)
			}
		})
	}
	// Nothing crossed the wire: the one user.create the tap sees is the
	// next one.
	if _, err := c.CreateUser(context.Background(), api.CreateUserRequest{Account: "acme", Name: "bob"}); err != nil {
		t.Fatal(err)
	}
	if requests, _ := tp.wait(t, 1); len(requests) != 1 || !strings.Contains(string(requests[0]), `"bob"`) {
		t.Errorf("the service was sent %d user.create requests: %q", len(requests), requests)
	}
	// A cause given while the request waits is named too.
	silent(t, env)
	hung := client.New(env.Admin(t), client.WithPrefix("prov.hung"))
	ctx, stop := context.WithCancelCause(context.Background())
	time.AfterFunc(200*time.Millisecond, func() { stop(errors.New("the operator pressed stop")) })
	_, err := hung.GetAccount(ctx, api.AccountRequest{Account: "nobody-answers"})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "the operator pressed stop") {
		t.Errorf("got %v, want context.Canceled naming its cause", err)
	}
}

// TestReplyDecoding answers with hand-made replies on a real connection:
// the error code and description are read from the micro headers, or from
// the body when a responder sends no headers; a successful reply may carry
// fields this client does not know.
func TestReplyDecoding(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	var mu sync.Mutex
	var answer *nats.Msg
	nc := env.Connect(t, env.Init.ProvisionerCreds)
	if _, err := nc.Subscribe("prov.>", func(m *nats.Msg) {
		mu.Lock()
		a := *answer
		mu.Unlock()
		a.Subject = m.Reply
		nc.PublishMsg(&a)
	}); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	c := client.New(env.Admin(t))
	header := func(code, desc string) nats.Header {
		h := nats.Header{}
		h.Set(micro.ErrorCodeHeader, code)
		if desc != "" {
			h.Set(micro.ErrorHeader, desc)
		}
		return h
	}
	body := func(code int, desc string) []byte {
		b, _ := json.Marshal(api.ErrorReply{Error: api.Error{Code: code, Description: desc}})
		return b
	}
	tests := []struct {
		name     string
		give     *nats.Msg
		wantCode int
		wantDesc string
		wantKind error
	}{
		{"headers and body", &nats.Msg{Header: header("404", "account \"x\" not found"), Data: body(404, "account \"x\" not found")}, 404, "account \"x\" not found", client.ErrNotFound},
		{"headers only", &nats.Msg{Header: header("409", "taken")}, 409, "taken", client.ErrConflict},
		{"code header, description in the body", &nats.Msg{Header: header("503", ""), Data: body(503, "draining")}, 503, "draining", client.ErrUnavailable},
		{"body only", &nats.Msg{Data: body(504, "no server answered")}, 504, "no server answered", client.ErrTimeout},
		{"a code without a kind", &nats.Msg{Header: header("418", "teapot")}, 418, "teapot", nil},
		{"success with unknown fields", &nats.Msg{Data: []byte(`{"account":{"name":"x","public_key":"AX","color":"red"},"extra":1}`)}, 0, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			answer = tt.give
			mu.Unlock()
			rep, err := c.GetAccount(context.Background(), api.AccountRequest{Account: "x"})
			if tt.wantCode == 0 {
				if err != nil || rep.Account.Name != "x" {
					t.Fatalf("got %+v, %v", rep, err)
				}
				return
			}
			var e *client.Error
			if !errors.As(err, &e) || e.Code != tt.wantCode || e.Description != tt.wantDesc {
				t.Fatalf("got %v, want code %d %q", err, tt.wantCode, tt.wantDesc)
			}
			if tt.wantKind != nil && !errors.Is(err, tt.wantKind) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.wantKind)
			}
			if tt.wantKind == nil && (errors.Is(err, client.ErrInternal) || errors.Is(err, client.ErrInvalid)) {
				t.Errorf("code %d matches a kind", e.Code)
			}
		})
	}
}

func TestIteratorsPage(t *testing.T) {
	t.Parallel()
	_, c := started(t, bootstrap.Options{})
	ctx := context.Background()
	var names []string
	for i := range 5 {
		name := fmt.Sprintf("acct-%d", i)
		names = append(names, name)
		if _, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	// Users are listed in issue order to the second, then by public key.
	type issued struct {
		iat       int64
		pub, name string
	}
	var created []issued
	for i := range 5 {
		u, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "acct-0", Name: fmt.Sprintf("user-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		claims, err := jwt.DecodeUserClaims(u.JWT)
		if err != nil {
			t.Fatal(err)
		}
		created = append(created, issued{claims.IssuedAt, u.PublicKey, u.Name})
	}
	slices.SortFunc(created, func(a, b issued) int {
		if a.iat != b.iat {
			return cmp.Compare(a.iat, b.iat)
		}
		return strings.Compare(a.pub, b.pub)
	})
	var userNames []string
	for _, u := range created {
		userNames = append(userNames, u.name)
	}
	page, err := c.ListAccounts(ctx, api.ListRequest{Limit: 2})
	if err != nil || len(page.Accounts) != 2 || page.NextOffset != 2 || page.Total != 5 {
		t.Fatalf("ListAccounts(limit 2) = %+v, %v: the test needs small pages", page, err)
	}

	collect := func(seq func(func(string, error) bool)) []string {
		var got []string
		for name, err := range seq {
			if err != nil {
				t.Fatalf("iteration: %v", err)
			}
			got = append(got, name)
		}
		return got
	}
	accounts := func(start api.ListRequest) func(func(string, error) bool) {
		return func(yield func(string, error) bool) {
			for a, err := range c.Accounts(ctx, start) {
				if !yield(a.Name, err) {
					return
				}
			}
		}
	}
	users := func(start api.ListUsersRequest) func(func(string, error) bool) {
		return func(yield func(string, error) bool) {
			for u, err := range c.Users(ctx, start) {
				if !yield(u.Name, err) {
					return
				}
			}
		}
	}
	tests := []struct {
		name string
		seq  func(func(string, error) bool)
		want []string
	}{
		{"accounts in pages of 2", accounts(api.ListRequest{Limit: 2}), names},
		{"accounts in pages of 1 from 3", accounts(api.ListRequest{Offset: 3, Limit: 1}), names[3:]},
		{"accounts in one page", accounts(api.ListRequest{}), names},
		{"users in pages of 2", users(api.ListUsersRequest{Account: "acct-0", ListRequest: api.ListRequest{Limit: 2}}), userNames},
		{"users of an account without any", users(api.ListUsersRequest{Account: "acct-1"}), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := collect(tt.seq); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("break stops", func(t *testing.T) {
		n := 0
		for range c.Accounts(ctx, api.ListRequest{Limit: 2}) {
			if n++; n == 3 {
				break
			}
		}
		if n != 3 {
			t.Errorf("saw %d", n)
		}
	})
	t.Run("an error ends it", func(t *testing.T) {
		var errs []error
		for u, err := range c.Users(ctx, api.ListUsersRequest{Account: "nobody"}) {
			if err == nil {
				t.Errorf("got user %+v of an unknown account", u)
			}
			errs = append(errs, err)
		}
		if len(errs) != 1 || !errors.Is(errs[0], client.ErrNotFound) {
			t.Errorf("got %v, want one ErrNotFound", errs)
		}
	})
}

// tap records what crosses the wire: the requests on prov.> (seen with the
// provisioner's creds) and the replies on the admin's inboxes (seen by a
// second admin connection, which may subscribe to the admin's inbox prefix
// as the first does).
type tap struct {
	mu       sync.Mutex
	requests [][]byte
	replies  [][]byte
}

func newTap(t *testing.T, env *provtest.Env) *tap {
	t.Helper()
	tp := &tap{}
	req := env.Connect(t, env.Init.ProvisionerCreds)
	if _, err := req.Subscribe("prov.user.create", func(m *nats.Msg) {
		tp.mu.Lock()
		tp.requests = append(tp.requests, m.Data)
		tp.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	rep := env.Admin(t)
	if _, err := rep.Subscribe(bootstrap.AdminInboxPrefix+".>", func(m *nats.Msg) {
		tp.mu.Lock()
		tp.replies = append(tp.replies, m.Data)
		tp.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	for _, nc := range []*nats.Conn{req, rep} {
		// A refused subscription shows only as an asynchronous error,
		// which arrives before the flush's PONG.
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := nc.LastError(); err != nil {
			t.Fatalf("the tap's subscriptions: %v", err)
		}
	}
	return tp
}

// wait returns what the tap saw once it saw n requests and n replies.
func (tp *tap) wait(t *testing.T, n int) (requests, replies [][]byte) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		tp.mu.Lock()
		requests, replies = slices.Clone(tp.requests), slices.Clone(tp.replies)
		tp.mu.Unlock()
		if len(requests) >= n && len(replies) >= n {
			return requests, replies
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tap saw %d requests and %d replies, want %d", len(requests), len(replies), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCreateUserMakesTheKeyLocally checks that no seed crosses the wire in
// either direction, that the seed the client returns is the key the JWT was
// issued to, and that its creds connect.
func TestCreateUserMakesTheKeyLocally(t *testing.T) {
	t.Parallel()
	env, c := started(t, bootstrap.Options{})
	ctx := context.Background()
	if _, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	tp := newTap(t, env)

	u, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "alice", ExpiresIn: "1h"})
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	requests, replies := tp.wait(t, 1)
	var req api.CreateUserRequest
	if err := json.Unmarshal(requests[0], &req); err != nil || req.PublicKey != u.PublicKey {
		t.Fatalf("the request %s did not carry the user's public key %s", requests[0], u.PublicKey)
	}
	var rep api.CreateUserReply
	if err := json.Unmarshal(replies[0], &rep); err != nil {
		t.Fatalf("the reply %s: %v", replies[0], err)
	}
	if rep.User.Seed != "" || rep.User.Creds != "" || bytes.Contains(replies[0], []byte(`"S`)) || bytes.Contains(replies[0], []byte("SEED")) {
		t.Fatalf("the reply carried a seed: %s", replies[0])
	}
	seed := u.Seed.Bytes()
	for _, wire := range [][]byte{requests[0], replies[0]} {
		if bytes.Contains(wire, seed) {
			t.Fatalf("the seed crossed the wire: %s", wire)
		}
	}

	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		t.Fatalf("the result's seed: %v", err)
	}
	pub, _ := kp.PublicKey()
	kp.Wipe()
	claims, err := jwt.DecodeUserClaims(u.JWT)
	if err != nil {
		t.Fatal(err)
	}
	if pub != u.PublicKey || claims.Subject != pub || claims.Name != "alice" || claims.Expires == 0 {
		t.Fatalf("seed of %s, user %s, JWT subject %s name %q expires %d", pub, u.PublicKey, claims.Subject, claims.Name, claims.Expires)
	}
	nc := env.Connect(t, writeCreds(t, u.Creds.Bytes()))
	if err := nc.Publish("hello", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatalf("the creds' connection: %v", err)
	}

	// Wipe clears what the result held.
	u.Wipe()
	if !bytes.Equal(u.Seed.Bytes(), make([]byte, len(u.Seed.Bytes()))) || bytes.Contains(u.Creds.Bytes(), []byte("SU")) {
		t.Errorf("Wipe left the secrets")
	}
}

func TestCreateUserWithAPublicKey(t *testing.T) {
	t.Parallel()
	env, c := started(t, bootstrap.Options{})
	ctx := context.Background()
	if _, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	kp, _ := nkeys.CreateUser()
	defer kp.Wipe()
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()

	u, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "bob", PublicKey: pub})
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if u.PublicKey != pub || u.JWT == "" || !u.Seed.IsZero() || !u.Creds.IsZero() {
		t.Fatalf("CreateUser with a public key = %+v", u)
	}
	creds, err := jwt.FormatUserConfig(u.JWT, seed)
	if err != nil {
		t.Fatal(err)
	}
	env.Connect(t, writeCreds(t, creds)).Close()

	// A key is issued once: the same key again, under another name, is a
	// conflict.
	if _, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "bob-again", PublicKey: pub}); !errors.Is(err, client.ErrConflict) {
		t.Fatalf("CreateUser with a key issued before: %v, want ErrConflict", err)
	}

	// A seed sent as the key is refused before it is sent.
	tp := newTap(t, env)
	_, err = c.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "carol", PublicKey: string(seed)})
	if !errors.Is(err, client.ErrInvalid) || strings.Contains(err.Error(), string(seed)) {
		t.Fatalf("a seed as public_key: %v", err)
	}
	// Something that is sent lets the tap see that nothing came before it;
	// dave has a key of his own.
	dave, _ := nkeys.CreateUser()
	defer dave.Wipe()
	davePub, _ := dave.PublicKey()
	if _, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "dave", PublicKey: davePub}); err != nil {
		t.Fatal(err)
	}
	requests, _ := tp.wait(t, 1)
	if len(requests) != 1 || bytes.Contains(requests[0], seed) {
		t.Fatalf("the tap saw %q", requests)
	}
}

func TestRevokeUser(t *testing.T) {
	t.Parallel()
	env, c := started(t, bootstrap.Options{})
	ctx := context.Background()
	if _, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	u, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	creds := writeCreds(t, u.Creds.Bytes())
	closed := make(chan struct{})
	env.Connect(t, creds, nats.NoReconnect(), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))

	rep, err := c.RevokeUser(ctx, api.RevokeUserRequest{Account: "acme", User: "alice"})
	if err != nil {
		t.Fatalf("RevokeUser: %v", err)
	}
	if rep.Revoked != u.PublicKey || rep.Account.Name != "acme" {
		t.Fatalf("RevokeUser = %+v", rep)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked user's connection is still open 5s later")
	}
	if _, err := nats.Connect(env.Server.URL(), nats.UserCredentials(creds)); err == nil {
		t.Error("the revoked user connects again")
	}
	list, err := c.ListUsers(ctx, api.ListUsersRequest{Account: "acme"})
	if err != nil || len(list.Users) != 1 || !list.Users[0].Revoked || list.Users[0].PublicKey != u.PublicKey {
		t.Errorf("ListUsers after the revoke = %+v, %v", list, err)
	}
	if _, err := c.RevokeUser(ctx, api.RevokeUserRequest{Account: "acme", User: "nobody"}); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("RevokeUser of an unknown name: %v, want ErrNotFound", err)
	}
}

func TestWithPrefix(t *testing.T) {
	t.Parallel()
	_, c := started(t, bootstrap.Options{SubjectPrefix: "acme"})
	if c.Prefix() != "acme" {
		t.Fatalf("Prefix() = %q", c.Prefix())
	}
	if _, err := c.CreateAccount(context.Background(), api.CreateAccountRequest{Name: "a"}); err != nil {
		t.Fatalf("CreateAccount on the acme prefix: %v", err)
	}
}

// TestSecretsDoNotPrint checks every way a result could be printed, logged
// or marshalled by accident.
func TestSecretsDoNotPrint(t *testing.T) {
	t.Parallel()
	_, c := started(t, bootstrap.Options{})
	ctx := context.Background()
	if _, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	u, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	seed := string(u.Seed.Bytes())
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("issued", "user", u, "seed", u.Seed, "creds", u.Creds)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("issued", "user", *u, "seed", u.Seed)
	marshalled, _ := json.Marshal(u)
	for _, out := range []string{
		fmt.Sprint(u.Seed), fmt.Sprintf("%v %+v %#v %s %q %x %X %d", u.Seed, u.Seed, u.Seed, u.Seed, u.Seed, u.Seed, u.Seed, u.Seed),
		fmt.Sprintf("%v %+v %#v", *u, *u, *u), fmt.Sprintf("%x", *u), logged.String(), string(marshalled),
	} {
		if strings.Contains(out, seed) || strings.Contains(out, seed[:12]) || strings.Contains(strings.ToLower(out), fmt.Sprintf("%x", seed[:8])) {
			t.Errorf("a seed shows in %q", out)
		}
	}
	if !strings.Contains(string(marshalled), u.PublicKey) {
		t.Errorf("json.Marshal dropped the public key: %s", marshalled)
	}
}

// TestAccountsWhileTheListChanges: accounts deleted or created before the
// iterator's place between two pages neither make it skip an account that
// stayed nor show one twice.
func TestAccountsWhileTheListChanges(t *testing.T) {
	t.Parallel()
	_, c := started(t, bootstrap.Options{})
	ctx := context.Background()
	for _, name := range []string{"b", "d", "f", "h", "j", "l"} {
		if _, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	var seenBefore []string // what the iteration yielded before the current account
	tests := []struct {
		name   string
		change func(t *testing.T, seen string) // after each account yielded
		want   []string
	}{
		{"deletes before the place", func(t *testing.T, seen string) {
			if seen == "d" {
				for _, name := range []string{"b", "d"} {
					if _, err := c.DeleteAccount(ctx, api.AccountRequest{Account: name}); err != nil {
						t.Fatal(err)
					}
				}
			}
		}, []string{"b", "d", "f", "h", "j", "l"}},
		{"creates before the place", func(t *testing.T, seen string) {
			if seen == "h" && !slices.Contains(seenBefore, "h") {
				for _, name := range []string{"a", "c"} {
					if _, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: name}); err != nil {
						t.Fatal(err)
					}
				}
			}
		}, []string{"f", "h", "j", "l"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for a, err := range c.Accounts(ctx, api.ListRequest{Limit: 2}) {
				if err != nil {
					t.Fatalf("after %v: %v", got, err)
				}
				seenBefore = got
				got = append(got, a.Name)
				tt.change(t, a.Name)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCreateUserRefusesASeedInsideThePublicKey: a public_key that holds a
// seed anywhere (copied with its quotes, or a whole creds file read by
// mistake) is refused before anything is sent, as a bare seed is.
func TestCreateUserRefusesASeedInsideThePublicKey(t *testing.T) {
	t.Parallel()
	env, c := started(t, bootstrap.Options{})
	ctx := context.Background()
	if _, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	kp, _ := nkeys.CreateUser()
	defer kp.Wipe()
	seed, _ := kp.Seed()
	// A creds file as the nats tools write it; its JWT does not matter:
	// the client must not send the file at all.
	creds := "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.e30.c2ln\n------END NATS USER JWT------\n\n" +
		"-----BEGIN USER NKEY SEED-----\n" + string(seed) + "\n------END USER NKEY SEED------\n"
	tp := newTap(t, env)
	tests := []struct{ name, give string }{
		{"quoted", `"` + string(seed) + `"`},
		{"a creds file", creds},
	}
	for _, tt := range tests {
		_, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "carol", PublicKey: tt.give})
		if !errors.Is(err, client.ErrInvalid) || strings.Contains(err.Error(), string(seed)) {
			t.Errorf("%s: a seed inside public_key: %v, want ErrInvalid", tt.name, err)
		}
	}
	dave, _ := nkeys.CreateUser()
	defer dave.Wipe()
	davePub, _ := dave.PublicKey()
	if _, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "dave", PublicKey: davePub}); err != nil {
		t.Fatal(err)
	}
	// The requests reach the tap in the order they were sent: dave's is
	// the last.
	requests, _ := tp.wait(t, 1)
	for _, r := range requests {
		if bytes.Contains(r, seed) {
			t.Errorf("the seed crossed the wire: %d requests sent, want only dave's", len(requests))
			break
		}
	}
}

// TestSeedInAnyFieldIsNotSent: a seed in any field of a request (here a
// user's name), not only in public_key, is refused by the client before
// anything is sent: the service would refuse it too, once it had crossed
// the wire. So is a seed right after a character encoding/json escapes:
// it writes "&" as \u0026 (and a control character such as \x03 as
// \u0003), whose last digit is base32, and a scan of the raw JSON missed
// the seed after it, which crossed the wire to a service that found it (it
// unescapes such strings) and refused it, 400, too late. The client scans
// escaped strings as the service does (one function, api.BodyHoldsSeed).
func TestSeedInAnyFieldIsNotSent(t *testing.T) {
	t.Parallel()
	env, c := started(t, bootstrap.Options{})
	ctx := context.Background()
	if _, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	kp, _ := nkeys.CreateUser()
	defer kp.Wipe()
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	tp := newTap(t, env)
	for _, name := range []string{"device " + string(seed), "tom&" + string(seed), "tom\x03" + string(seed), "tom&" + strings.ToLower(string(seed))} {
		_, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: name, PublicKey: pub})
		if !errors.Is(err, client.ErrInvalid) || strings.Contains(strings.ToUpper(err.Error()), string(seed)) {
			t.Errorf("a seed in the name %.8q...: %v, want ErrInvalid without the seed", name, err)
		}
	}
	if _, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "dave", PublicKey: pub}); err != nil {
		t.Fatal(err)
	}
	requests, _ := tp.wait(t, 1)
	for _, r := range requests {
		if bytes.Contains(bytes.ToUpper(r), seed) {
			t.Fatalf("the seed crossed the wire: %d requests sent, want only dave's: %s", len(requests), r[:40])
		}
	}
}

// TestGetAccountDecodesOmittedClaims: account.get leaves the claims out of
// a reply they would make larger than max_payload (claims_omitted); the Go
// client decodes them from the JWT, so a caller of GetAccount sees them
// as with a small account.
func TestGetAccountDecodesOmittedClaims(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	env.SetMaxPayload(t, 16384)
	env.Start(t)
	c := client.New(env.Admin(t))
	ctx := context.Background()
	tags := make([]string, 700) // a JWT of about 10 KB: its claims do not fit beside it
	for i := range tags {
		tags[i] = fmt.Sprintf("t%07d", i)
	}
	if _, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: "big", Description: "large", Tags: tags}); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetAccount(ctx, api.AccountRequest{Account: "big"})
	if err != nil {
		t.Fatalf("GetAccount of an account the service made: %v", err)
	}
	if got.Account.ClaimsOmitted == "" {
		t.Fatal("the reply carried the claims: the account is too small to test the omission; make it larger")
	}
	if got.Account.Claims == nil || got.Account.Claims.Subject != got.Account.PublicKey || got.Account.Claims.Description != "large" || len(got.Account.Claims.Tags) != len(tags) {
		t.Fatalf("GetAccount's claims were not decoded from the JWT: %+v", got.Account.Claims)
	}
}

// TestWithPrefixRefusesABadPrefix: a prefix the service could not have
// (a wildcard, a space, an empty token: the CLI's --prefix refuses them)
// is refused at the first call, naming the prefix, with nothing sent: it
// went to a wildcard or invalid subject, where no service answers or the
// server drops it, and the caller waited out its timeout or was told no
// service runs.
func TestWithPrefixRefusesABadPrefix(t *testing.T) {
	t.Parallel()
	env, _ := started(t, bootstrap.Options{})
	for _, prefix := range []string{"prov.*", ">", "prov.>", "*", "prov..x", "prov x", ".prov", "$SYS"} {
		c := client.New(env.Admin(t), client.WithPrefix(prefix))
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		began := time.Now()
		_, err := c.ListAccounts(ctx, api.ListRequest{})
		cancel()
		if !errors.Is(err, client.ErrInvalid) || time.Since(began) > time.Second || !strings.Contains(err.Error(), "nothing was sent") || !strings.Contains(err.Error(), strconv.Quote(prefix)) {
			t.Errorf("WithPrefix(%q): %v after %s, want ErrInvalid at once naming the prefix, nothing sent", prefix, err, time.Since(began).Round(time.Millisecond))
		}
	}
}

// TestInboxRefusedIsSaidAtOnce: admin creds may read replies only under
// _INBOX_admin. A connection made without nats.CustomInboxPrefix had its
// inbox subscription refused (said only to the async error handler), yet
// every request was sent and carried out: the caller waited out its
// timeout to hear that the service "may still carry the request out",
// while the account was created. The client says at once that the
// connection may not read its replies, and sends nothing.
func TestInboxRefusedIsSaidAtOnce(t *testing.T) {
	t.Parallel()
	env, c := started(t, bootstrap.Options{})
	bad := client.New(env.Connect(t, env.Init.AdminCreds, nats.CustomInboxPrefix("_INBOX")), client.WithTimeout(3*time.Second))
	began := time.Now()
	_, err := bad.CreateAccount(context.Background(), api.CreateAccountRequest{Name: "acme"})
	if err == nil || !strings.Contains(err.Error(), "CustomInboxPrefix") || !strings.Contains(err.Error(), "not sent") || time.Since(began) > 2*time.Second {
		t.Fatalf("a create on a connection that may not read its inbox: %v after %s, want at once that nothing was sent, naming CustomInboxPrefix", err, time.Since(began).Round(time.Millisecond))
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := c.GetAccount(context.Background(), api.AccountRequest{Account: "acme"}); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("GetAccount after the refused create: %v, want ErrNotFound", err)
	}
	// A key made here is not in doubt: nothing was sent.
	_, err = bad.CreateUser(context.Background(), api.CreateUserRequest{Account: "acme", Name: "alice"})
	var doubt *client.UserInDoubtError
	if err == nil || errors.As(err, &doubt) {
		t.Errorf("CreateUser on that connection: %v, want an error and no key in doubt", err)
	}
	// The right prefix works, and is checked once.
	for range 2 {
		if _, err := c.CreateAccount(context.Background(), api.CreateAccountRequest{Name: fmt.Sprintf("ok-%d", time.Now().UnixNano())}); err != nil {
			t.Fatal(err)
		}
	}
}
