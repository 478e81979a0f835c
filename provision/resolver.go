package provision

import (
	"context"
	"time"
)

// ServerReply is what one server answered to a push, or that it did not
// answer in time.
type ServerReply struct {
	Server   string
	ServerID string
	Code     int
	Message  string
	// Stored is true when the server's full resolver stored the JWT or
	// carried out the deletion.
	Stored bool
	// Cached is true when a cache resolver updated its copy ("jwt updated
	// cache"): it holds the account loaded, and now this version. Its
	// "jwt update cache skipped" (the account not loaded) leaves any copy
	// on its disk as it was.
	Cached bool
	// Answered is false for a server that was expected but did not answer.
	Answered bool
}

// PushResult is the outcome of one push: a reply per server, sorted by
// server name.
type PushResult []ServerReply

// Stored counts the servers that stored the change.
func (r PushResult) Stored() int {
	n := 0
	for _, rep := range r {
		if rep.Stored {
			n++
		}
	}
	return n
}

// RefusedError is returned, matching ErrRefused, when a server refused a
// push or when every answer came from a cache resolver that stored nothing.
type RefusedError struct {
	Result PushResult
	Reason string
	// Reasons are the refusals Reason joins, one a server, when there
	// are such: read one by one, none is mistaken for part of another.
	Reasons []string
}

func (e *RefusedError) Error() string { return "resolver refused: " + e.Reason }

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// Server is a server that the resolver client knows of. Servers are known
// by name: a restarted server keeps its name and gets a new ID. A server
// that stopped answering stays known, with Up false, until it has been gone
// for the client's forget interval.
type Server struct {
	Name     string
	ID       string
	Up       bool
	LastSeen time.Time
	// Cache is true for a server whose resolver is a cache resolver (a
	// leaf or edge server), as its answer to a push said: it stores no
	// pushed JWT (it updates one it happens to hold), answers no LOOKUP,
	// and fetches an account from the full resolvers when it needs it. No
	// version waits for it to confirm. A server that has not answered a
	// push since it started counts as a full resolver.
	Cache bool
	// NoResolver is true for a server that answers the server ping but
	// no claims request (a MEMORY or URL resolver): no account is pushed
	// to it and nothing waits for it, so Cache is true as well.
	NoResolver bool
	// NoResolverLong is true for a NoResolver server found to be one at
	// least as long ago as a down server stays known. A full resolver
	// whose claims requests wait (a stalled disk) while it answers pings
	// is NoResolver too, until it answers them, and may hold any account
	// meanwhile: only once NoResolverLong is its missing LIST taken for
	// a resolver that holds nothing.
	NoResolverLong bool
	// Shared is true for a name that two server instances have lately
	// answered under (one server_name given to two servers, which
	// nats-server refuses on routes and gateways but not on leaf
	// connections). Their answers cannot be told apart by name, and a
	// request waits for one of them: what the name confirmed says
	// nothing of the other.
	Shared bool
}

// Resolver is what the service needs of the servers' account resolvers.
type Resolver interface {
	// Update pushes an account JWT to every server. The error is a
	// *RefusedError, ErrTimeout or ErrNotSent; the result lists every
	// known server either way.
	Update(ctx context.Context, accountJWT string) (PushResult, error)
	// Delete sends a signed delete request to every server, with the same
	// result and errors as Update.
	Delete(ctx context.Context, token string) (PushResult, error)
	// Lookup returns the JWT the first server to answer holds for an
	// account ("" when it holds none).
	Lookup(ctx context.Context, pub string) (string, error)
	// LookupAll asks every server with a full resolver (every server but
	// those known to have a cache resolver) for its JWT of an account and
	// returns one entry per server that answered, "" where the server holds
	// none.
	LookupAll(ctx context.Context, pub string) ([]string, error)
	// List returns, per server name, the accounts the server's resolver
	// holds.
	List(ctx context.Context) (map[string][]string, error)
	// Operators returns, per server name, the operator keys (identity and
	// signing) the server trusts. When a server answered with an error,
	// the map holds the others' answers, returned with the error.
	Operators(ctx context.Context) (map[string][]string, error)
	// Servers returns the known servers, sorted by name.
	Servers() []Server
	// Discover asks every server to answer, waiting long enough for one
	// slow to answer that the servers known do not include yet; Servers
	// then lists it.
	Discover(ctx context.Context) error
	// Joined delivers a server each time one starts answering: a new
	// server, or a known one back with a new ID (a restart, possibly from
	// an old disk).
	Joined() <-chan Server
}
