package responder

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/provision"
)

// SelfProvisioner is what the self-service responder needs of the domain.
type SelfProvisioner interface {
	SelfCreateUser(context.Context, provision.Tenant, api.SelfCreateUserRequest) (*api.CreateUserReply, error)
	SelfListUsers(context.Context, provision.Tenant, api.SelfListUsersRequest) (*api.ListUsersReply, error)
	SelfRevokeUser(context.Context, provision.Tenant, api.SelfRevokeUserRequest) (*api.RevokeUserReply, error)
}

var _ SelfProvisioner = (*provision.Service)(nil)

// NewSelf starts the self-service responder on a connection in the
// service's own account. Tenants reach it through the import the service
// adds to their account, on <prefix>.self.user.*, which the server maps
// onto <prefix>.self.<their account>.user.* here: the account token is
// bound by the export (account_token_position), so the server, not the
// request, names the caller's account. The Nats-Request-Info header the
// server sets on every request that crosses the import names the user.
func NewSelf(ctx context.Context, nc *nats.Conn, p SelfProvisioner, cfg Config) (*Responder, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = api.DefaultPrefix
	}
	if cfg.Name == "" {
		cfg.Name = "provisioner-self"
	}
	pos := len(strings.Split(cfg.Prefix, ".")) + 1 // 0-based: prefix, "self", account
	sub := func(op string) string { return "self.*.user." + op }
	eps := []*endpoint{
		handleSelf("self_user_create", sub("create"), pos, p.SelfCreateUser),
		handleSelf("self_user_list", sub("list"), pos, p.SelfListUsers),
		handleSelf("self_user_revoke", sub("revoke"), pos, p.SelfRevokeUser),
	}
	return start(ctx, nc, cfg, eps, "Self-service for tenants: issue, list and revoke users of your own account in its roles, on "+cfg.Prefix+".self.user.*")
}

// requestInfo mirrors the server's ClientInfo in the Nats-Request-Info
// header, the fields the responder reads.
type requestInfo struct {
	Account   string `json:"acc"`
	User      string `json:"user"`
	Name      string `json:"name"`
	IssuerKey string `json:"issuer_key"`
}

// handleSelf makes the endpoint of a self-service operation: the tenant
// comes from the subject's account token and the server's
// Nats-Request-Info header.
func handleSelf[Req, Rep any](name, subject string, pos int, op func(context.Context, provision.Tenant, Req) (Rep, error)) *endpoint {
	return &endpoint{
		name:    name,
		subject: subject,
		request: new(Req),
		reply:   new(Rep),
		handle: func(ctx context.Context, m *nats.Msg) (any, error) {
			t, err := tenant(m, pos)
			if err != nil {
				return nil, err
			}
			var req Req
			if err := decode(m.Data, &req); err != nil {
				return nil, err
			}
			return op(ctx, t, req)
		},
	}
}

// tenant reads the caller of a self-service request. A request without
// the header, or whose header names another account than the subject, did
// not come through a tenant's import and is refused.
func tenant(m *nats.Msg, pos int) (provision.Tenant, error) {
	tokens := strings.Split(m.Subject, ".")
	if pos >= len(tokens) || !nkeys.IsValidPublicAccountKey(tokens[pos]) {
		return provision.Tenant{}, fmt.Errorf("%w: self-service requests come through the account's import", provision.ErrForbidden)
	}
	acc := tokens[pos]
	raw, ok := serverRequestInfo(m)
	if !ok {
		return provision.Tenant{}, fmt.Errorf("%w: a self-service request carries no headers of its own but %s (the server adds the one the service reads)", provision.ErrForbidden, api.DeadlineHeader)
	}
	var info requestInfo
	if raw == "" || json.Unmarshal([]byte(raw), &info) != nil || info.Account != acc {
		return provision.Tenant{}, fmt.Errorf("%w: self-service requests come through the account's import", provision.ErrForbidden)
	}
	return provision.Tenant{Account: acc, User: info.User, Name: info.Name, IssuerKey: info.IssuerKey}, nil
}

// requestInfoHeader is the header the server sets on a request that
// crosses a service import.
const requestInfoHeader = "Nats-Request-Info"

// serverRequestInfo returns the Nats-Request-Info header of a request when
// it can only be the one the server set, and false otherwise. The server
// replaces a caller's header of that name only where it finds it as its
// own line (after "\r\n", ending in "\r\n") and appends its own at the end
// of the header block; nats.go splits header lines at a bare "\n" and stops
// at the first empty line. A caller that writes "X: a\nNats-Request-Info:
// {...}" or ends its block with "\n\n" hides its own header from the server,
// and nats.go reads it first or alone: a forged user and issuer_key (a role's
// signing key is no secret), past self_service_role. So the request must
// carry that header once, beside at most the caller's deadline
// (api.DeadlineHeader, once), and its header block on the wire must be
// exactly what the server writes for such a request: any bytes the parse
// skipped or never reached (a hidden forgery, the server's own line after
// an empty one) make it longer. The few bytes a caller can save by writing
// its lines shorter (a bare "\n", no space after ":") are far fewer than
// the server's own line, which then went unread, adds.
func serverRequestInfo(m *nats.Msg) (string, bool) {
	want := len("NATS/1.0\r\n") + len("\r\n")
	for k, vals := range m.Header {
		if k != requestInfoHeader && k != api.DeadlineHeader || len(vals) != 1 {
			return "", false
		}
		want += len(k) + len(": ") + len(vals[0]) + len("\r\n")
	}
	vals := m.Header[requestInfoHeader]
	if len(vals) != 1 {
		return "", false
	}
	got := m.Size() - len(m.Subject) - len(m.Reply) - len(m.Data)
	// Some clients write "Key:value", without the space: the caller's
	// deadline line may be one byte shorter. One byte hides nothing (the
	// server's own line, unread, would add far more).
	_, deadline := m.Header[api.DeadlineHeader]
	return vals[0], got == want || deadline && got == want-1
}
