package service

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/provision"
)

// Fault is a test-only fault point: the end-to-end tests use it to stop the
// real binary exactly between a change's store write and its push, which no
// timing can do. It is set only from the PROVISIONER_FAULT environment
// variable, as "before-push:ACTION:ACCOUNT[:SKIP]": before the push of a
// version of the account named ACCOUNT, after SKIP such pushes, the process
// kills itself (ACTION kill: SIGKILL, as kill -9 would) or stops itself
// (ACTION pause: SIGSTOP, until the test sends SIGCONT). It fires once.
type Fault struct {
	action  string
	account string
	skip    int64
}

// ParseFault reads a fault spec; "" is no fault.
func ParseFault(spec string) (*Fault, error) {
	if spec == "" {
		return nil, nil
	}
	parts := strings.Split(spec, ":")
	if len(parts) < 3 || len(parts) > 4 || parts[0] != "before-push" || (parts[1] != "kill" && parts[1] != "pause") || parts[2] == "" {
		return nil, fmt.Errorf("fault %q: want before-push:kill|pause:ACCOUNT[:SKIP]", spec)
	}
	f := &Fault{action: parts[1], account: parts[2]}
	if len(parts) == 4 {
		n, err := strconv.ParseInt(parts[3], 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("fault %q: SKIP must be a number from 0 up", spec)
		}
		f.skip = n
	}
	return f, nil
}

// faultResolver fires a Fault before the matching push.
type faultResolver struct {
	provision.Resolver
	f    *Fault
	seen atomic.Int64
}

func (r *faultResolver) Update(ctx context.Context, token string) (provision.PushResult, error) {
	if name, ok := accountName(token); ok && name == r.f.account && r.seen.Add(1) == r.f.skip+1 {
		fmt.Fprintf(os.Stderr, "provisioner: fault point before-push:%s:%s reached\n", r.f.action, name)
		if err := fire(r.f.action); err != nil {
			return nil, err
		}
	}
	return r.Resolver.Update(ctx, token)
}

// accountName returns the name in an account JWT.
func accountName(token string) (string, bool) {
	c, err := jwt.DecodeAccountClaims(token)
	if err != nil {
		return "", false
	}
	return c.Name, true
}
