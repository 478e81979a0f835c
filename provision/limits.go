package provision

import (
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
)

// mergeAccountFields sets the limits and default permissions a request
// gives on the account claims: each limit given replaces the current one,
// the others stay; default permissions given replace the current ones. It
// checks every value before it changes anything.
func mergeAccountFields(claims *jwt.AccountClaims, limits *api.AccountLimits, perms *api.Permissions) error {
	if limits != nil {
		l := &claims.Limits
		ints := []struct {
			name string
			give *int64
			dst  *int64
		}{
			{"subs", limits.Subs, &l.Subs}, {"data", limits.Data, &l.Data}, {"payload", limits.Payload, &l.Payload},
			{"imports", limits.Imports, &l.Imports}, {"exports", limits.Exports, &l.Exports},
			{"conn", limits.Conn, &l.Conn}, {"leaf", limits.Leaf, &l.LeafNodeConn},
			{"mem_storage", limits.MemStorage, &l.MemoryStorage}, {"disk_storage", limits.DiskStorage, &l.DiskStorage},
			{"streams", limits.Streams, &l.Streams}, {"consumer", limits.Consumer, &l.Consumer},
			{"max_ack_pending", limits.MaxAckPending, &l.MaxAckPending},
			{"mem_max_stream_bytes", limits.MemMaxStreamBytes, &l.MemoryMaxStreamBytes},
			{"disk_max_stream_bytes", limits.DiskMaxStreamBytes, &l.DiskMaxStreamBytes},
		}
		for _, f := range ints {
			if f.give != nil && *f.give < -1 {
				return fmt.Errorf("%w: \"limits\": %q is %d; use -1 for unlimited or a number from 0 up", ErrInvalid, f.name, *f.give)
			}
		}
		if limits.TieredLimits != nil {
			if _, err := tiersOf(limits); err != nil {
				return err
			}
		} else if len(claims.Limits.JetStreamTieredLimits) > 0 && limits.JetStreamLimits != (api.JetStreamLimits{}) && !switchesToFlat(limits) {
			// Flat JetStream limits replace the tiers. Given without a
			// storage limit (only max_ack_pending, streams, ...), they
			// dropped every tier and left JetStream off: the account's
			// streams were cut off by a request that asked to change one
			// limit.
			return fmt.Errorf("%w: \"limits\": the account has tiered JetStream limits; change them with \"tiered_limits\" (\"tiered_limits\": {} turns JetStream off), or give a \"mem_storage\" or \"disk_storage\" above 0 to replace the tiers with flat limits", ErrInvalid)
		}
		for _, f := range ints {
			if f.give != nil {
				*f.dst = *f.give
			}
		}
		for _, f := range []struct {
			give *bool
			dst  *bool
		}{
			{limits.Wildcards, &l.WildcardExports}, {limits.DisallowBearer, &l.DisallowBearer},
			{limits.MaxBytesRequired, &l.MaxBytesRequired},
		} {
			if f.give != nil {
				*f.dst = *f.give
			}
		}
	}
	if limits != nil && limits.TieredLimits != nil {
		tiers, _ := tiersOf(limits) // checked above
		claims.Limits.JetStreamLimits = jwt.JetStreamLimits{}
		claims.Limits.JetStreamTieredLimits = tiers
	} else if limits != nil && limits.JetStreamLimits != (api.JetStreamLimits{}) {
		// Flat JetStream limits given: they replace any tiers.
		claims.Limits.JetStreamTieredLimits = nil
	}
	if perms != nil {
		claims.DefaultPermissions = *perms
	}
	return nil
}

// switchesToFlat tells whether a request's flat JetStream limits give
// JetStream storage (mem_storage or disk_storage not 0): flat limits that
// can replace an account's tiers without turning JetStream off.
func switchesToFlat(limits *api.AccountLimits) bool {
	return limits.MemStorage != nil && *limits.MemStorage != 0 || limits.DiskStorage != nil && *limits.DiskStorage != 0
}

// tierName is the name of a JetStream tier as the server looks it up:
// "R" and a stream's replicas (1 to 5). Limits under any other name apply
// to no stream.
var tierName = regexp.MustCompile(`^R[1-5]$`)

// tiersOf returns the JetStream tiers a request gives. A request that also
// gives a flat JetStream limit other than 0 is refused: the two are
// alternatives. No tiers is nil.
func tiersOf(limits *api.AccountLimits) (jwt.JetStreamTieredLimits, error) {
	for _, v := range []*int64{limits.MemStorage, limits.DiskStorage, limits.Streams, limits.Consumer, limits.MaxAckPending, limits.MemMaxStreamBytes, limits.DiskMaxStreamBytes} {
		if v != nil && *v != 0 {
			return nil, fmt.Errorf("%w: \"limits\": give either \"tiered_limits\" or the flat JetStream limits (mem_storage, disk_storage, ...), not both", ErrInvalid)
		}
	}
	if limits.MaxBytesRequired != nil && *limits.MaxBytesRequired {
		// The tiers replace the flat limits: it was dropped, and the
		// request answered as done.
		return nil, fmt.Errorf("%w: \"limits\": \"max_bytes_required\" is a flat JetStream limit; with \"tiered_limits\", give it in each tier", ErrInvalid)
	}
	tiers := jwt.JetStreamTieredLimits{}
	for name, t := range limits.TieredLimits {
		if name == "" {
			return nil, fmt.Errorf("%w: \"limits.tiered_limits\": a tier needs a name such as \"R1\" or \"R3\"", ErrInvalid)
		}
		if !tierName.MatchString(name) {
			return nil, fmt.Errorf("%w: \"limits.tiered_limits\": tier %q is not a replica count: name a tier \"R1\" to \"R5\" (the server looks up a stream's limits under \"R\" and its replicas)", ErrInvalid, name)
		}
		var out jwt.JetStreamLimits
		for _, f := range []struct {
			name string
			give *int64
			dst  *int64
		}{
			{"mem_storage", t.MemStorage, &out.MemoryStorage}, {"disk_storage", t.DiskStorage, &out.DiskStorage},
			{"streams", t.Streams, &out.Streams}, {"consumer", t.Consumer, &out.Consumer},
			{"max_ack_pending", t.MaxAckPending, &out.MaxAckPending},
			{"mem_max_stream_bytes", t.MemMaxStreamBytes, &out.MemoryMaxStreamBytes},
			{"disk_max_stream_bytes", t.DiskMaxStreamBytes, &out.DiskMaxStreamBytes},
		} {
			if f.give == nil {
				continue
			}
			if *f.give < -1 {
				return nil, fmt.Errorf("%w: \"limits.tiered_limits.%s\": %q is %d; use -1 for unlimited or a number from 0 up", ErrInvalid, name, f.name, *f.give)
			}
			*f.dst = *f.give
		}
		if t.MaxBytesRequired != nil {
			out.MaxBytesRequired = *t.MaxBytesRequired
		}
		tiers[name] = out
	}
	if len(tiers) == 0 {
		return nil, nil
	}
	return tiers, nil
}

// mergeUserLimits sets the user limits a request gives.
func mergeUserLimits(l *jwt.Limits, give *api.UserLimits) error {
	if give == nil {
		return nil
	}
	for _, f := range []struct {
		name string
		give *int64
		dst  *int64
	}{{"subs", give.Subs, &l.Subs}, {"data", give.Data, &l.Data}, {"payload", give.Payload, &l.Payload}} {
		if f.give == nil {
			continue
		}
		if *f.give < -1 {
			return fmt.Errorf("%w: \"limits\": %q is %d; use -1 for unlimited or a number from 0 up", ErrInvalid, f.name, *f.give)
		}
		*f.dst = *f.give
	}
	if len(give.Src) > 0 {
		l.Src = jwt.CIDRList(give.Src)
	}
	l.Times = give.Times
	l.Locale = give.TimesLocation
	return nil
}

// replyServersRoom is what the servers' answers may take of a reply that
// carries an account JWT: the service leaves 4096 bytes of a reply beside
// the largest JWT it signs (jwtReplyEnvelope), and the rest of the reply
// (a name of 128 characters JSON escapes to 768 bytes, the keys) takes up
// to about 1 KB of it.
const replyServersRoom = 3072

// wireResult turns a resolver result into the replies of the wire, as
// many as replyServersRoom holds, and counts the rest. At about 140 bytes
// an answer, with 25 servers or more a JWT near the largest was made and
// pushed, then answered 500 "its reply would be over max_payload", and a
// caller that retried made it again. Answers that are not a store are
// kept first: they are the ones to act on.
func wireResult(res PushResult) ([]api.ServerReply, int) {
	keep := make([]bool, len(res))
	room := replyServersRoom
	for _, stored := range []bool{false, true} {
		for i, r := range res {
			if (r.Code == 200) != stored {
				continue
			}
			line, _ := json.Marshal(api.ServerReply{Server: r.Server, ServerID: r.ServerID, Code: r.Code, Message: r.Message})
			if len(line)+1 <= room {
				room -= len(line) + 1
				keep[i] = true
			}
		}
	}
	out := make([]api.ServerReply, 0, len(res))
	for i, r := range res {
		if keep[i] {
			out = append(out, api.ServerReply{Server: r.Server, ServerID: r.ServerID, Code: r.Code, Message: r.Message})
		}
	}
	return out, len(res) - len(out)
}
