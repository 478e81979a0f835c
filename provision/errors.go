package provision

import "errors"

// Errors of the provisioning domain. The responder maps them, with the
// keystore's and the resolver's, to wire codes in one table.
var (
	// ErrInvalid: the request is malformed or asks for something invalid.
	ErrInvalid = errors.New("invalid request")
	// ErrForbidden: the request targets something this service must not
	// change, such as the system account.
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound: the account or user is unknown.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the name is taken.
	ErrConflict = errors.New("conflict")
)
