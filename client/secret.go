package client

import (
	"fmt"
	"io"
	"log/slog"
)

// redacted is what a Secret prints, logs and marshals as.
const redacted = "[redacted]"

// Secret holds secret bytes: a seed, or a creds file holding one. It
// prints (with any fmt verb), logs and marshals to JSON as "[redacted]", so
// that it cannot leak by accident; Bytes returns the secret itself. Wipe it
// when done.
//
// The bytes are held by a function: fmt cannot call a Secret's methods
// when it reaches one through an unexported field (a caller's struct that
// keeps a User in a field of its own), and then prints the field's
// contents, with every verb, a pointer's target too when the verb does not
// suit a pointer (%s, %q); of a function, it prints only its address.
type Secret struct{ get func() []byte }

// newSecret returns a Secret holding b (not a copy).
func newSecret(b []byte) Secret { return Secret{get: func() []byte { return b }} }

// Bytes returns the secret. The slice is the Secret's own: Wipe clears it.
func (s Secret) Bytes() []byte {
	if s.get == nil {
		return nil
	}
	return s.get()
}

// IsZero reports whether the Secret holds nothing.
func (s Secret) IsZero() bool { return len(s.Bytes()) == 0 }

// Wipe overwrites the secret with zeros.
func (s Secret) Wipe() { clear(s.Bytes()) }

// String returns "[redacted]".
func (s Secret) String() string { return redacted }

// GoString returns "[redacted]", for %#v.
func (s Secret) GoString() string { return redacted }

// Format writes "[redacted]" for every verb, %x and %d included.
func (s Secret) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }

// LogValue redacts the secret in log/slog records.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON writes "[redacted]": a Secret that ends up in JSON by
// accident (a log line, a reply) does not carry the secret. Write
// Bytes where the secret is meant to go.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
