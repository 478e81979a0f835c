package client

import (
	"errors"
	"fmt"

	"github.com/natsprov/provisioner/api"
)

// The kinds of failure the service reports, one per wire code. A failed
// request returns an *Error, which matches the kind of its code:
// errors.Is(err, client.ErrNotFound) holds for a 404.
var (
	ErrInvalid     = errors.New("client: invalid request")                       // 400
	ErrForbidden   = errors.New("client: forbidden")                             // 403
	ErrNotFound    = errors.New("client: not found")                             // 404
	ErrConflict    = errors.New("client: conflict")                              // 409
	ErrInternal    = errors.New("client: internal error of the provisioner")     // 500
	ErrRefused     = errors.New("client: a server refused the change")           // 502
	ErrUnavailable = errors.New("client: the provisioner is unavailable; retry") // 503
	ErrTimeout     = errors.New("client: no server answered the push")           // 504
	ErrStoreFull   = errors.New("client: the provisioner's store is full")       // 507
)

// ErrNoService is returned when nothing subscribes to the request's
// subject: no provisioner runs, or it uses another subject prefix, or,
// for a tenant's Self* call, the caller's account has no self_service
// (only such an account imports the self-service subjects). The returned
// error wraps nats.ErrNoResponders as well.
var ErrNoService = errors.New("client: no provisioner answers")

// ErrUnreadable ends Accounts when the service holds account records it
// cannot read (damaged in its store, or written by a newer provisioner):
// the accounts listed before it are not all there are.
var ErrUnreadable = errors.New("client: the account list is incomplete")

// UnreadableError is the error that ends Accounts when the service holds
// account records it cannot read; it matches ErrUnreadable. Count is how
// many, for a caller that shows the accounts listed with it.
type UnreadableError struct{ Count int }

func (e *UnreadableError) Error() string {
	return fmt.Sprintf("%v: %d account record(s) in the service's store cannot be read, and are not listed; prov.status's damage (or, sealed with a seal key the instance lacks, problem) names them", ErrUnreadable, e.Count)
}

func (e *UnreadableError) Is(target error) bool { return target == ErrUnreadable }

// kinds maps each wire code to its kind.
var kinds = map[int]error{
	api.CodeInvalid:     ErrInvalid,
	api.CodeForbidden:   ErrForbidden,
	api.CodeNotFound:    ErrNotFound,
	api.CodeConflict:    ErrConflict,
	api.CodeInternal:    ErrInternal,
	api.CodeRefused:     ErrRefused,
	api.CodeUnavailable: ErrUnavailable,
	api.CodeTimeout:     ErrTimeout,
	api.CodeStoreFull:   ErrStoreFull,
}

// Error is a request the service answered with an error: its code (HTTP
// style, see api.Error) and its description, which is written for people
// and safe to show them.
type Error struct {
	Code        int
	Description string
}

// Error returns the description and the code, such as
// `account "acme" not found (code 404)`.
func (e *Error) Error() string { return fmt.Sprintf("%s (code %d)", e.Description, e.Code) }

// Is reports whether target is the kind of e's code, so that
// errors.Is(err, ErrNotFound) holds for a 404. A code without a kind
// matches none.
func (e *Error) Is(target error) bool {
	k, ok := kinds[e.Code]
	return ok && k == target
}
