package resolver

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/natsprov/provisioner/provision"
)

// Messages a cache resolver sends in the data of a successful claims reply:
// a 200 that stored nothing. A full resolver answers "jwt updated" to an
// update and "deleted N accounts" to a delete.
const (
	msgCacheSkipped = "jwt update cache skipped"
	msgCacheUpdated = "jwt updated cache"
)

// claimsReply mirrors the server's ServerAPIClaimUpdateResponse.
type claimsReply struct {
	Server *serverInfo `json:"server"`
	Data   *struct {
		Account string `json:"account"`
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"data"`
	Error *apiError `json:"error"`
}

// Update pushes an account JWT to every server's resolver. The result has
// one reply per known server, sorted by server name: those that are down
// are not waited for and are listed as not answered (code 504). The error,
// wrapped with context, is a *provision.RefusedError (matching
// provision.ErrRefused) when a server refused (a cache resolver's failure
// to update its copy is in the result, but refuses nothing) or only cache
// resolvers answered, provision.ErrTimeout when no server answered, and
// provision.ErrNotSent when the push reached no server.
func (c *Client) Update(ctx context.Context, accountJWT string) (provision.PushResult, error) {
	res, err := c.push(ctx, SubjectClaimsUpdate, []byte(accountJWT))
	if err != nil {
		return res, fmt.Errorf("resolver: update: %w", err)
	}
	return res, nil
}

// Delete sends a signed delete request (a generic JWT listing accounts,
// signed by an operator key) to every server's resolver, with the same
// result and errors as Update; a server known to run a cache resolver
// refuses nothing.
func (c *Client) Delete(ctx context.Context, token string) (provision.PushResult, error) {
	res, err := c.push(ctx, SubjectClaimsDelete, []byte(token))
	if err != nil {
		return res, fmt.Errorf("resolver: delete: %w", err)
	}
	return res, nil
}

func (c *Client) push(ctx context.Context, subject string, data []byte) (provision.PushResult, error) {
	g, err := c.gather(ctx, subject, data, untilAllUp, true)
	res := provision.PushResult{}
	answered := map[string]bool{}
	var refusals []string
	replaced := 0
	for _, r := range g.replies {
		rep, refusal := decodeClaimsReply(r.msg.Data)
		otherRefused := refusal != "" && !(subject == SubjectClaimsUpdate && isCacheMessage(rep.Message))
		if id, ok := c.currentID(rep.Server); ok && rep.ServerID != "" && id != rep.ServerID && otherRefused && c.isShared(rep.Server) {
			// Not replaced: a second server answers under the name (the
			// client cannot tell which is "the" one) and it refused (a
			// cache resolver's failure refuses nothing, as below).
			// Dropped as a replaced instance's, the push (a revoke) was
			// reported stored while that server kept the older version.
			// Its line is kept, not taken for the name's answer: the
			// current instance's silence is still reported.
			c.log.Warn("resolver: a second server under a shared name refused a push", "server", rep.Server, "server_id", rep.ServerID, "current_id", id)
			res = append(res, rep)
			// No "; " in the mark: the refusals are joined with it, and
			// the service reads a DELETE's one by one (deletesRefused):
			// split there, its tail was taken for a refusal for another
			// reason than deletes off, and every pass failed the
			// account.
			refusals = append(refusals, refusal+" (two servers answer with that name: give each its own server_name)")
			continue
		}
		if id, ok := c.currentID(rep.Server); ok && rep.ServerID != "" && id != rep.ServerID {
			// The answer of an instance replaced by a restart since (its
			// reply came in after the new instance was known): the new
			// one never got the push, and may hold an old disk. Counted,
			// the server was reported as having stored it (the service,
			// which forgets what a restarted server confirmed, noted it
			// again by name) and no line said its new instance did not.
			c.log.Debug("resolver ignored a push answer from a server instance replaced by a restart", "server", rep.Server, "server_id", rep.ServerID, "current_id", id)
			replaced++
			continue
		}
		if subject == SubjectClaimsUpdate && rep.ServerID != "" {
			// A cache resolver answers every update (its messages say
			// "cache"), but no LOOKUP: LookupAll and the service must
			// know not to wait for it.
			c.noteResolver(rep.Server, rep.ServerID, isCacheMessage(rep.Message))
		}
		answered[rep.Server] = true
		res = append(res, rep)
		if refusal != "" && (subject == SubjectClaimsUpdate && isCacheMessage(rep.Message) || subject == SubjectClaimsDelete && c.isCache(rep.Server, rep.ServerID)) {
			// A cache resolver that could not update or remove its copy
			// (its disk full or broken) refuses nothing that is waited
			// for: it stores nothing pushed, and fetches the account
			// from the full resolvers. Counted, one leaf server's disk
			// failed every change of an account used there, put back on
			// every server, and kept every delete disabled. Its answer
			// stays in the result.
			continue
		}
		if refusal != "" {
			refusals = append(refusals, refusal)
		}
	}
	missedUp := false
	for _, s := range g.known {
		if answered[s.Name] {
			continue
		}
		rep := provision.ServerReply{Server: s.Name, ServerID: s.ID, Code: 504}
		if id, ok := c.currentID(s.Name); ok && id != s.ID {
			// The line is the current instance's: the one the push was
			// sent to is gone.
			rep.ServerID = id
			rep.Message = "restarted while the push waited; its new instance did not get it"
		} else if s.Up && c.hasNoResolver(s.Name, s.ID) {
			rep.Message = "answers no claims request (its resolver is not a full or cache one); not waited for"
		} else if s.Up {
			missedUp = true
			rep.Message = fmt.Sprintf("no answer within %s", c.opts.Timeout)
			if g.cutAfter > 0 {
				// Said as the timeout, a server that answers in a
				// second looked dead in the reply of a push cut short.
				rep.Message = fmt.Sprintf("no answer within %s, when the push was cut short (its caller's deadline or stop, or the connection closed), before the %s timeout", g.cutAfter.Round(time.Millisecond), c.opts.Timeout)
			}
		} else {
			rep.Message = fmt.Sprintf("server is down (last seen %s); not waited for", s.LastSeen.UTC().Format(time.RFC3339))
		}
		res = append(res, rep)
	}
	if missedUp {
		// A server that went away would keep every later push waiting for
		// it; a ping tells whether it is down.
		c.triggerRefresh()
	}
	slices.SortFunc(res, func(a, b provision.ServerReply) int {
		return strings.Compare(a.Server+"\x00"+a.ServerID, b.Server+"\x00"+b.ServerID)
	})
	switch {
	case len(refusals) > 0:
		slices.Sort(refusals)
		return res, &provision.RefusedError{Result: res, Reason: strings.Join(refusals, "; "), Reasons: refusals}
	case err != nil:
		return res, err
	case replaced == len(g.replies):
		return res, fmt.Errorf("%w: only server instances since replaced by a restart answered", provision.ErrTimeout)
	case res.Stored() == 0:
		return res, &provision.RefusedError{Result: res, Reason: "no server has a full resolver that stored it (only cache resolvers answered)"}
	}
	return res, nil
}

// isCacheMessage tells a cache resolver's answer to an update, a success
// or a failure ("jwt update cache skipped", "jwt updated cache", "jwt
// update cache resulted in error - ...", "jwt update cache validation
// failed - ..."), from a full resolver's ("jwt updated", "jwt update
// resulted in error - ...", "jwt validation failed - ...").
func isCacheMessage(msg string) bool {
	return strings.HasPrefix(msg, "jwt update cache") || strings.HasPrefix(msg, msgCacheUpdated)
}

// decodeClaimsReply turns one server's answer into a ServerReply, and
// returns the reason when the server refused.
func decodeClaimsReply(data []byte) (provision.ServerReply, string) {
	var cr claimsReply
	if err := json.Unmarshal(data, &cr); err != nil {
		return provision.ServerReply{Answered: true, Code: 500, Message: "unreadable reply: " + err.Error()}, "unreadable reply from a server"
	}
	rep := provision.ServerReply{Answered: true}
	if cr.Server != nil {
		rep.Server, rep.ServerID = serverName(cr.Server), cr.Server.ID
	}
	who := rep.Server
	switch {
	case cr.Error != nil:
		rep.Code, rep.Message = cr.Error.Code, cr.Error.Description
		return rep, fmt.Sprintf("server %s: %s", who, cr.Error.Description)
	case cr.Data != nil:
		rep.Code, rep.Message = cr.Data.Code, cr.Data.Message
		// A delete answers "deleted N accounts"; an update "jwt updated".
		// The cache resolver's answers are 200s that store nothing.
		rep.Stored = rep.Code == 200 && rep.Message != msgCacheSkipped && rep.Message != msgCacheUpdated
		rep.Cached = rep.Code == 200 && rep.Message == msgCacheUpdated
		return rep, ""
	}
	rep.Code, rep.Message = 500, "reply with neither data nor error"
	return rep, fmt.Sprintf("server %s: reply with neither data nor error", who)
}
