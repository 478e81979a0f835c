package resolver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/provision"
)

// Lookup returns the JWT that the first server to answer holds for an
// account, or "" when that server holds none (an empty reply is an answer,
// not an error). The error, wrapped with context, is provision.ErrTimeout
// when no server answered and provision.ErrNotSent when nothing listens.
func (c *Client) Lookup(ctx context.Context, pub string) (string, error) {
	g, err := c.gather(ctx, fmt.Sprintf(subjectLookupFormat, pub), nil, untilFirst, false)
	if err != nil {
		return "", fmt.Errorf("resolver: lookup %s: %w", pub, err)
	}
	return string(g.replies[0].msg.Data), nil
}

// LookupAll asks every server for its JWT of an account with one LOOKUP,
// and collects the replies until as many as there are servers up with a
// full resolver have arrived or the timeout passes: a cache resolver
// answers no LOOKUP (a server counts as one once its answer to a push said
// so). It returns one entry per answer, "" where the server holds none; a
// LOOKUP reply does not say which server sent it. Errors as Lookup's.
func (c *Client) LookupAll(ctx context.Context, pub string) ([]string, error) {
	g, err := c.gather(ctx, fmt.Sprintf(subjectLookupFormat, pub), nil, untilAllFullUp, false)
	if err != nil {
		return nil, fmt.Errorf("resolver: lookup %s on every server: %w", pub, err)
	}
	out := make([]string, 0, len(g.replies))
	for _, r := range g.replies {
		out = append(out, string(r.msg.Data))
	}
	return out, nil
}

// listReply mirrors the server's reply to CLAIMS.LIST.
type listReply struct {
	Server *serverInfo `json:"server"`
	Data   []string    `json:"data"`
	Error  *apiError   `json:"error"`
}

// List returns, per server name, the accounts the server's resolver holds,
// sorted. It waits as requests do: for every server up, or the timeout;
// servers that did not answer in time are missing from the map. The error
// is provision.ErrTimeout or provision.ErrNotSent as for Lookup; when a
// server answered with an error, the map holds the others and the error
// matches provision.ErrRefused.
func (c *Client) List(ctx context.Context) (map[string][]string, error) {
	g, err := c.gather(ctx, SubjectClaimsList, nil, untilAllUp, true)
	if err != nil {
		return nil, fmt.Errorf("resolver: list: %w", err)
	}
	out := map[string][]string{}
	var errs []error
	for _, r := range g.replies {
		var lr listReply
		if err := json.Unmarshal(r.msg.Data, &lr); err != nil {
			errs = append(errs, fmt.Errorf("unreadable reply: %w", err))
			continue
		}
		if lr.Server == nil {
			// No server's (nats-server names itself in every LIST
			// reply): a foreign responder in the system account, whose
			// list, kept under the name "", stood for accounts on the
			// servers, as the gather counts it for no server.
			continue
		}
		name := serverName(lr.Server)
		if lr.Error != nil {
			errs = append(errs, fmt.Errorf("server %s: %s", name, lr.Error.Description))
			continue
		}
		if lr.Data == nil {
			// nats-server always sends "data", an empty list too. A
			// reply without it says nothing of what that server holds:
			// read as holding nothing, it let the reconciler drop a
			// tombstone for good while the server might hold the
			// account.
			errs = append(errs, fmt.Errorf("server %s: a LIST reply without \"data\"", name))
			continue
		}
		if c.notCurrent("LIST", name, lr.Server) {
			// Kept as the last reply under the name, it stood for what
			// the new instance holds, and the reconciler could drop a
			// tombstone of an account the new one held.
			continue
		}
		if c.isShared(name) {
			// Two servers answer as name: which of them holds what
			// cannot be told, and the request waited for one only.
			// Listed, the first to answer stood for both, and the
			// reconciler dropped a tombstone of an account the other
			// held. Left out, as a server that did not answer, it keeps
			// the tombstones until the names are told apart.
			errs = append(errs, fmt.Errorf("server %s: two servers answer with that name; give each its own server_name", name))
			continue
		}
		accounts := slices.Clone(lr.Data)
		slices.Sort(accounts)
		out[name] = accounts
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("resolver: list: %w: %w", provision.ErrRefused, errors.Join(errs...))
	}
	return out, nil
}

// varzReply mirrors the parts of the server's reply to PING.VARZ that
// Operators reads.
type varzReply struct {
	Server *serverInfo `json:"server"`
	Data   *struct {
		TrustedOperatorsClaim []*jwt.OperatorClaims `json:"trusted_operators_claim"`
	} `json:"data"`
	Error *apiError `json:"error"`
}

// Operators returns, per server name, the operator keys the server trusts:
// the identity key and the signing keys of each trusted operator, sorted,
// as the server's varz reports them from the operator JWT it loaded. It
// tells whether a signing key rotation reached every server. It waits and
// fails as List does.
func (c *Client) Operators(ctx context.Context) (map[string][]string, error) {
	g, err := c.gather(ctx, SubjectServerVarz, nil, untilAllUp, true)
	if err != nil {
		return nil, fmt.Errorf("resolver: operators: %w", err)
	}
	out := map[string][]string{}
	var errs []error
	for _, r := range g.replies {
		var vr varzReply
		if err := json.Unmarshal(r.msg.Data, &vr); err != nil {
			errs = append(errs, fmt.Errorf("unreadable reply: %w", err))
			continue
		}
		name := serverName(vr.Server)
		if vr.Error != nil {
			errs = append(errs, fmt.Errorf("server %s: %s", name, vr.Error.Description))
			continue
		}
		if c.notCurrent("VARZ", name, vr.Server) {
			// Kept as the last reply under the name, it stood for the
			// operator keys the new instance trusts (a rotation's check
			// that every server trusts the next key).
			continue
		}
		keys := []string{}
		if vr.Data != nil {
			for _, oc := range vr.Data.TrustedOperatorsClaim {
				if oc == nil {
					continue
				}
				keys = append(keys, oc.Subject)
				keys = append(keys, oc.SigningKeys...)
			}
		}
		slices.Sort(keys)
		out[name] = slices.Compact(keys)
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("resolver: operators: %w: %w", provision.ErrRefused, errors.Join(errs...))
	}
	return out, nil
}

// notCurrent tells whether a reply to request comes from an instance that
// is not its server's current one (a restarted server's old one, not yet
// gone), whose answer says nothing of what the server holds or trusts now.
func (c *Client) notCurrent(request, name string, s *serverInfo) bool {
	id, ok := c.currentID(name)
	if !ok || s == nil || s.ID == id {
		return false
	}
	c.log.Debug("resolver ignored a reply from a server instance that is not the current one", "request", request, "server", name, "server_id", s.ID, "current_id", id)
	return true
}

// serverName names the server of a reply: its name, else its ID.
func serverName(s *serverInfo) string {
	switch {
	case s == nil:
		return ""
	case s.Name != "":
		return s.Name
	}
	return s.ID
}
