package provision

import (
	"errors"
	"fmt"
)

// Errors of the provisioning domain. Adapters (the stores, the resolver
// client) translate their own failures into these, and the responder maps
// them to wire codes in one table.
var (
	// ErrInvalid: the request is malformed or asks for something invalid.
	ErrInvalid = errors.New("invalid request")
	// ErrForbidden: the request targets something this service must not
	// change, such as the system account.
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound: the account or user is unknown.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a name or key that must be new is taken.
	ErrConflict = errors.New("conflict")
	// ErrStale: a store update gave a revision that is no longer current;
	// another change came first.
	ErrStale = errors.New("changed meanwhile")
	// ErrUnavailable: the store cannot be reached now, or the service is
	// stopping; retrying may help.
	ErrUnavailable = errors.New("unavailable")
	// ErrInDoubt: a store write failed without an answer, and the store
	// could not tell afterwards whether it landed; or a change whose push
	// failed could not be taken back out of the store: it may have taken
	// effect (read it back before trying again).
	ErrInDoubt = errors.New("in doubt")
	// ErrBroken: the store refuses every change until the instance is
	// restarted (a journal write it could neither close nor replace with
	// a new snapshot, a bucket deleted under it). It comes with
	// ErrUnavailable (503), but retrying does not help: an operator must
	// restart the instance.
	ErrBroken = errors.New("the store refuses every change until this instance is restarted")
	// ErrFull: the store has no room for the change (the service
	// account's JetStream limit, or the disk); nothing was changed, and
	// retrying helps only once an operator makes room.
	ErrFull = errors.New("store full")
	// ErrFileSizeLimit: with ErrFull, what has no room is a file of the
	// store past the process's file size limit (ulimit -f, systemd's
	// LimitFSIZE), not the disk: room on the disk does not help, an
	// operator must raise or lift the limit.
	ErrFileSizeLimit = errors.New("file size limit")
	// ErrClockBehind: the account's current version was issued later
	// than this machine's clock says now, by more than the service waits
	// for (a clock stepped back, or another instance's clock ahead):
	// nothing was changed; the clocks must be set right.
	ErrClockBehind = errors.New("the clock is behind the account's last version")
	// ErrOtherSealKey: the account's seeds are sealed with a seal key this
	// instance holds neither as seal_key nor as seal_key_previous (the
	// instances were given different seal_key files, or a rotated key was
	// dropped too early). Retrying does not help: an operator must list
	// the key in seal_key_previous, give the instances the same seal_key
	// and restart them.
	ErrOtherSealKey = errors.New("the account is sealed with a seal key this instance does not hold")
	// ErrUnreadable: a record in the store cannot be read, the account's
	// or a user's (damaged in the store, by hand or by a tool, or written
	// by a newer provisioner). Retrying does not help: an operator must
	// put the record back whole or remove it, or upgrade the provisioner.
	ErrUnreadable = errors.New("a record in the store cannot be read")

	// ErrRefused: a server refused a push (its reason is in the error), or
	// only cache resolvers answered.
	ErrRefused = errors.New("resolver refused")
	// ErrTimeout: no server answered in time.
	ErrTimeout = errors.New("no resolver answered")
	// ErrNotSent: the request reached no server (not connected, or nothing
	// listens on the claims API), so nothing can have changed.
	ErrNotSent = errors.New("resolver request not delivered")
	// ErrOverMaxPayload: an account JWT is larger than the servers'
	// max_payload (signed while it was larger), with ErrNotSent. Unlike
	// the other failures to deliver, no retry passes it: an operator must
	// raise max_payload or make the JWT smaller.
	ErrOverMaxPayload = errors.New("too large for the servers' max_payload")
)

// UnreadableError is Store.Accounts' error when the records of some
// accounts cannot be read: it returns the others with it, so that one
// damaged record, which every instance shares, does not fail every list
// and reconcile pass. Accounts are their public keys; Err says why for
// each (ErrUnreadable or ErrOtherSealKey), for the log: it holds no seed.
type UnreadableError struct {
	Accounts []string
	Err      error
}

func (e *UnreadableError) Error() string {
	return fmt.Sprintf("%d account record(s) cannot be read: %v", len(e.Accounts), e.Err)
}

func (e *UnreadableError) Unwrap() error { return e.Err }
