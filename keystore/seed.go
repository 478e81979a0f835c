package keystore

import "log/slog"

// Seed is an nkey seed held by the store. Its String, GoString and LogValue
// methods redact it, so a seed that reaches a log line or an error by
// accident prints as "[redacted]". Only the journal encoding writes it out.
type Seed string

const redacted = "[redacted]"

// String returns a redacted placeholder, never the seed.
func (Seed) String() string { return redacted }

// GoString returns a redacted placeholder, never the seed.
func (Seed) GoString() string { return redacted }

// LogValue makes slog print a redacted placeholder.
func (Seed) LogValue() slog.Value { return slog.StringValue(redacted) }

// Bytes returns the seed itself, for nkeys.FromSeed.
func (s Seed) Bytes() []byte { return []byte(s) }
