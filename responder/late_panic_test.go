package responder_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/responder"
)

// lateFault makes the real service's account.get go on past its request's
// deadline and then panic.
type lateFault struct {
	*provision.Service
}

func (lateFault) GetAccount(ctx context.Context, _ api.AccountRequest) (*api.AccountReply, error) {
	<-ctx.Done()
	time.Sleep(100 * time.Millisecond)
	panic("a bug after the deadline")
}

// levelLog keeps each record's level and text.
type levelLog struct {
	mu    sync.Mutex
	lines []string
}

func (h *levelLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *levelLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *levelLog) WithGroup(string) slog.Handler            { return h }
func (h *levelLog) Handle(_ context.Context, r slog.Record) error {
	line := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool {
		line += fmt.Sprintf(" %s=%v", a.Key, a.Value)
		return true
	})
	h.mu.Lock()
	h.lines = append(h.lines, line)
	h.mu.Unlock()
	return nil
}

// find waits up to 5 s for a line at level holding text, because a
// handler logs on its own goroutine, after the reply or the drop a test saw.
// Without it, it returns the whole log.
func (h *levelLog) find(level, text string) (string, bool) {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if line, ok := h.findNow(level, text); ok || time.Now().After(deadline) {
			return line, ok
		}
	}
}

func (h *levelLog) findNow(level, text string) (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range h.lines {
		if strings.HasPrefix(l, level+" ") && strings.Contains(l, text) {
			return l, true
		}
	}
	return strings.Join(h.lines, "\n"), false
}

// TestPanicAfterTheDeadlineIsLoggedAsAnError: a handler that panics after
// its request was answered 504 at request_timeout is a bug as much as one
// that panics before (a 500 whose panic the log has at ERROR): it was
// logged at INFO, in the line that says a late request ended, which an
// operator's log_level warn or error never shows.
func TestPanicAfterTheDeadlineIsLoggedAsAnError(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	h := &levelLog{}
	extra(t, env, lateFault{svc.Provision}, responder.Config{Prefix: "prov.latepanic", Name: "latepanic", RequestTimeout: 200 * time.Millisecond, Logger: slog.New(h)})
	if rep := provtest.Request(t, admin, "prov.latepanic.account.get", `{"account":"acme"}`); rep.Code != 504 {
		t.Fatalf("a get past request_timeout: %d %q, want 504", rep.Code, rep.Description)
	}
	if lines, ok := h.find("ERROR", "a bug after the deadline"); !ok {
		t.Fatalf("no ERROR line for the panic after the deadline; the log:\n%s", lines)
	}
}
