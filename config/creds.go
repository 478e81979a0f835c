package config

import (
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/jwt/v2"
)

// ErrNotCreds: a file given as a creds file holds no user JWT.
var ErrNotCreds = errors.New("not a creds file")

// ReadCreds returns the claims of the user JWT in the creds file at path,
// and fails with ErrNotCreds when it holds none. Check a creds file with it
// before nats.UserCredentials: nats.go sends the file's first block as the
// JWT of its CONNECT, whatever that block is, so a seed file given for
// creds (an operator signing key's, a user's .nk) went to the server, which
// refused it and published it as the client's "jwt" in its auth error event
// ($SYS.SERVER.<id>.CLIENT.AUTH.ERR), for every system-account user that
// follows those events to read. The error names path, never what the file
// holds.
func ReadCreds(path string) (*jwt.UserClaims, error) {
	_, uc, err := readCreds(path)
	return uc, err
}

// CredsJWT returns the user JWT in the creds file at path, checked as
// ReadCreds checks it: for a connection's JWT callback, which nats.go
// calls at every connect and reconnect.
func CredsJWT(path string) (string, error) {
	token, _, err := readCreds(path)
	return token, err
}

func readCreds(path string) (string, *jwt.UserClaims, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", nil, err
	}
	var uc *jwt.UserClaims
	token, err := jwt.ParseDecoratedJWT(raw)
	if err == nil {
		uc, err = jwt.DecodeUserClaims(token)
	}
	clear(raw)
	if err != nil {
		// The decoder's error is left out: what it quotes is the file's.
		return "", nil, fmt.Errorf("%w: %s holds no user JWT (a seed file given for a creds file?); give the creds file (the user's JWT and seed) that nsc or `provisioner init` wrote", ErrNotCreds, path)
	}
	return token, uc, nil
}
