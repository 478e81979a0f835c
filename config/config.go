// Package config reads and checks the provisioner's JSON configuration.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Config is the provisioner's configuration, one JSON object.
// config.example.json documents every field.
type Config struct {
	// NATSURL is the server (or comma-separated servers) to connect to.
	NATSURL string `json:"nats_url"`
	// NATSCreds is the creds file of a system-account user.
	NATSCreds string `json:"nats_creds"`
	// OperatorJWT is the operator JWT file; it names the operator and the
	// system account.
	OperatorJWT string `json:"operator_jwt"`
	// OperatorSigningKey is the seed file of one of the operator's signing
	// keys. The operator identity key is refused.
	OperatorSigningKey string `json:"operator_signing_key"`
	// StoreDir is where the service keeps account seeds, JWTs and user
	// records.
	StoreDir string `json:"store_dir"`

	// SubjectPrefix is the first token of every request subject.
	SubjectPrefix string `json:"subject_prefix,omitempty"`
	// ResolverTimeout bounds the wait for the servers' answers to a push.
	ResolverTimeout Duration `json:"resolver_timeout,omitempty"`
	// RequestTimeout bounds the work of one request, pushes included.
	RequestTimeout Duration `json:"request_timeout,omitempty"`
	// ServiceName is the micro service name shown by `nats micro ls`.
	ServiceName string `json:"service_name,omitempty"`
	// MaxInflight bounds the requests handled at once.
	MaxInflight int `json:"max_inflight,omitempty"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"log_level,omitempty"`
	// LogFormat is text or json.
	LogFormat string `json:"log_format,omitempty"`

	// Comment is ignored. It lets a config file, config.example.json
	// among them, describe its fields.
	Comment json.RawMessage `json:"_comment,omitempty"`
}

// Defaults of the optional fields.
const (
	DefaultSubjectPrefix   = "prov"
	DefaultResolverTimeout = 5 * time.Second
	DefaultServiceName     = "provisioner"
	DefaultMaxInflight     = 512
	DefaultLogLevel        = "info"
	DefaultLogFormat       = "text"
)

// Duration is a time.Duration written in JSON as a Go duration string.
type Duration time.Duration

// UnmarshalJSON reads a duration such as "5s" or "1m30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("must be a duration string such as \"5s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("must be a duration such as \"5s\", got %q", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Load reads the config file at path, refusing unknown fields, applies the
// defaults, resolves relative paths against the file's directory and
// validates the result.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	// A duration's own error cannot name its field; check them first.
	var fields map[string]json.RawMessage
	if json.Unmarshal(data, &fields) == nil {
		for _, name := range []string{"resolver_timeout", "request_timeout"} {
			if raw, ok := fields[name]; ok {
				var d Duration
				if err := d.UnmarshalJSON(raw); err != nil {
					return nil, fmt.Errorf("config %s: %q %w", path, name, err)
				}
			}
		}
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config %s: %s", path, describe(err))
	}
	if dec.More() {
		return nil, fmt.Errorf("config %s: unexpected data after the JSON object", path)
	}
	c.SetDefaults()
	c.resolvePaths(filepath.Dir(path))
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

func describe(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("field %q has the wrong type (%s)", te.Field, te.Value)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if strings.HasPrefix(msg, "unknown field ") {
		return msg + " (config.example.json lists the fields)"
	}
	return msg
}

// SetDefaults fills the optional fields left empty.
func (c *Config) SetDefaults() {
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultSubjectPrefix
	}
	if c.ResolverTimeout == 0 {
		c.ResolverTimeout = Duration(DefaultResolverTimeout)
	}
	if c.RequestTimeout == 0 {
		// A delete pushes twice and deletes once, and a failed one pushes
		// again to put things back.
		c.RequestTimeout = Duration(4*time.Duration(c.ResolverTimeout) + 5*time.Second)
	}
	if c.ServiceName == "" {
		c.ServiceName = DefaultServiceName
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if c.LogLevel == "" {
		c.LogLevel = DefaultLogLevel
	}
	if c.LogFormat == "" {
		c.LogFormat = DefaultLogFormat
	}
}

// resolvePaths makes relative file paths relative to base, the directory of
// the config file, so a deployment directory can move as a whole.
func (c *Config) resolvePaths(base string) {
	for _, p := range []*string{&c.NATSCreds, &c.OperatorJWT, &c.OperatorSigningKey, &c.StoreDir} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
}

// Validate checks every field and names the first bad one.
func (c *Config) Validate() error {
	for _, f := range []struct{ name, value string }{
		{"nats_url", c.NATSURL},
		{"nats_creds", c.NATSCreds},
		{"operator_jwt", c.OperatorJWT},
		{"operator_signing_key", c.OperatorSigningKey},
		{"store_dir", c.StoreDir},
	} {
		if strings.TrimSpace(f.value) == "" {
			return fmt.Errorf("%q is required", f.name)
		}
	}
	switch {
	case strings.ContainsAny(c.SubjectPrefix, " \t*>") || strings.HasPrefix(c.SubjectPrefix, ".") || strings.HasSuffix(c.SubjectPrefix, "."):
		return fmt.Errorf("\"subject_prefix\" %q must be subject tokens without wildcards or spaces", c.SubjectPrefix)
	case c.ResolverTimeout <= 0:
		return errors.New("\"resolver_timeout\" must be positive")
	case c.RequestTimeout <= 0:
		return errors.New("\"request_timeout\" must be positive")
	case c.MaxInflight < 0:
		return errors.New("\"max_inflight\" must be positive")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("\"log_level\" %q must be debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("\"log_format\" %q must be text or json", c.LogFormat)
	}
	return nil
}
