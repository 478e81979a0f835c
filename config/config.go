// Package config reads and checks the provisioner's JSON configuration.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"

	"github.com/natsprov/provisioner/jsonstrict"
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
	// OperatorSigningKeyNext is the seed file of the operator signing key
	// an operator signing-key rotation (prov.operator.rotate) switches to.
	OperatorSigningKeyNext string `json:"operator_signing_key_next,omitempty"`

	// StoreDir, when set, selects the file store in that directory (one
	// instance). When empty the JetStream KV store is used, which needs
	// ServiceCreds and SealKey.
	StoreDir string `json:"store_dir,omitempty"`
	// ServiceCreds is the creds file of the service's user in its own,
	// non-system account: the KV bucket lives there (the system account
	// cannot use JetStream).
	ServiceCreds string `json:"service_creds,omitempty"`
	// KVBucket is the JetStream KV bucket of the KV store.
	KVBucket string `json:"kv_bucket,omitempty"`
	// KVReplicas is the bucket's replica count: 1, 3 or 5, or 0 to choose
	// at start (see Replicas).
	KVReplicas int `json:"kv_replicas,omitempty"`
	// SealKey is the file of the curve seed (SX...) that seals seeds at
	// rest. Required with the KV store.
	SealKey string `json:"seal_key,omitempty"`
	// SealKeyPrevious are older seal key files; they still open what they
	// sealed, so that a key can be rotated.
	SealKeyPrevious []string `json:"seal_key_previous,omitempty"`

	// SubjectPrefix is the first token of every request subject.
	SubjectPrefix string `json:"subject_prefix,omitempty"`
	// ResolverTimeout bounds the wait for the servers' answers to a push.
	ResolverTimeout Duration `json:"resolver_timeout,omitempty"`
	// RequestTimeout bounds the work of one request, pushes included.
	RequestTimeout Duration `json:"request_timeout,omitempty"`
	// ReconcileInterval is the time between two reconcile sweeps.
	ReconcileInterval Duration `json:"reconcile_interval,omitempty"`
	// ReconcileRate bounds the LOOKUPs per second of a reconcile sweep.
	ReconcileRate int `json:"reconcile_rate,omitempty"`
	// TombstoneRetention is how long a deleted account's tombstone is kept.
	TombstoneRetention Duration `json:"tombstone_retention,omitempty"`
	// ServerForgetAfter is how long a server that stopped answering is
	// still expected before it is forgotten.
	ServerForgetAfter Duration `json:"server_forget_after,omitempty"`
	// DurableUserRecords makes user.create wait until its user record is
	// durable.
	DurableUserRecords bool `json:"durable_user_records,omitempty"`
	// Instance names this process among the instances sharing a store.
	Instance string `json:"instance,omitempty"`
	// ServiceName is the micro service name shown by `nats micro ls`.
	ServiceName string `json:"service_name,omitempty"`
	// MaxInflight bounds the requests handled at once.
	MaxInflight int `json:"max_inflight,omitempty"`
	// HealthListen is the host:port of the HTTP health endpoint (GET
	// /healthz, for container healthchecks and readiness probes); empty:
	// none.
	HealthListen string `json:"health_listen,omitempty"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"log_level,omitempty"`
	// LogFormat is text or json.
	LogFormat string `json:"log_format,omitempty"`

	// Comment is ignored. It lets a config file, config.example.json
	// among them, describe its fields.
	Comment json.RawMessage `json:"_comment,omitempty"`
}

// Store kinds, as StoreKind reports them.
const (
	StoreFile      = "file"
	StoreJetStream = "jetstream"
)

// Defaults of the optional fields.
const (
	DefaultKVBucket           = "provisioner"
	DefaultSubjectPrefix      = "prov"
	DefaultResolverTimeout    = 5 * time.Second
	DefaultReconcileInterval  = 30 * time.Second
	DefaultReconcileRate      = 500
	DefaultTombstoneRetention = 720 * time.Hour
	DefaultServerForgetAfter  = 24 * time.Hour
	DefaultServiceName        = "provisioner"
	DefaultMaxInflight        = 512
	DefaultLogLevel           = "info"
	DefaultLogFormat          = "text"
	// MinResolverTimeout, MinRequestTimeout and MinReconcileInterval are
	// the smallest values of their fields. Below them the service runs but
	// does nothing useful: every push or request times out at once, or
	// reconcile passes run back to back (LOOKUPs to every server) under a
	// lease of three intervals that ends before it is renewed.
	MinResolverTimeout   = 100 * time.Millisecond
	MinRequestTimeout    = time.Second
	MinReconcileInterval = time.Second
	// MinServerForgetAfter and MinTombstoneRetention are the smallest
	// values of their fields. A server that restarts is unseen for
	// seconds, and a server that missed a DELETE brings the account back
	// through resolver sync within its interval (a minute by default):
	// forgotten sooner, or a tombstone dropped sooner, a restart or a sync
	// undoes a delete.
	MinServerForgetAfter  = time.Minute
	MinTombstoneRetention = time.Minute
	// MaxDuration bounds every duration field.
	MaxDuration = 10 * 365 * 24 * time.Hour
)

// ErrNoConfig is wrapped by Load when the config file does not exist,
// together with fs.ErrNotExist.
var ErrNoConfig = errors.New("config: no config file")

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
	if v <= 0 {
		// Zero is what SetDefaults fills in: "0s" silently became the
		// default, never "none" or "no wait" as an operator may mean it.
		return fmt.Errorf("must be positive, such as \"5s\" (leave it out for the default), got %q", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Load reads the config file at path, refusing unknown fields, applies the
// defaults, resolves relative paths against the file's directory and
// validates the result. A missing file gives an error that wraps both
// ErrNoConfig and fs.ErrNotExist and says how to make one.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s (`provisioner init --dir DIR` writes a deployment with DIR/config.json; pass it with --config): %w", ErrNoConfig, path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	// The one strict decoder of the project: exact field names with a
	// suggestion for a near miss, errors that name the field as written
	// (a Duration's own error included).
	// Before the decoder, whose errors (a duration's, for one) and the
	// checks after it quote values.
	if err := refuseSeeds(data); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	var c Config
	if err := jsonstrict.Decode(data, &c); err != nil {
		msg := err.Error()
		if errors.Is(err, jsonstrict.ErrUnknownField) {
			msg += " (config.example.json lists the fields)"
		}
		return nil, fmt.Errorf("config %s: %s", path, msg)
	}
	if err := refuseExplicitZero(data); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c.SetDefaults()
	c.resolvePaths(filepath.Dir(path))
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

// refuseExplicitZero refuses a number written out as 0, or a name as "",
// where that is what SetDefaults fills in: "max_inflight": 0 or
// "reconcile_rate": 0 silently became the default, never "unlimited" as
// an operator may mean it. Only
// the input tells a 0 written from one left out; data has passed the
// strict decode.
func refuseExplicitZero(data []byte) error {
	var given struct {
		MaxInflight   *int    `json:"max_inflight"`
		ReconcileRate *int    `json:"reconcile_rate"`
		KVBucket      *string `json:"kv_bucket"`
		SubjectPrefix *string `json:"subject_prefix"`
		ServiceName   *string `json:"service_name"`
		LogLevel      *string `json:"log_level"`
		LogFormat     *string `json:"log_format"`
	}
	if err := json.Unmarshal(data, &given); err != nil {
		return err
	}
	switch {
	case given.MaxInflight != nil && *given.MaxInflight == 0:
		return fmt.Errorf("\"max_inflight\" 0: must be positive, there is no unlimited (leave it out for the default, %d)", DefaultMaxInflight)
	case given.ReconcileRate != nil && *given.ReconcileRate == 0:
		return fmt.Errorf("\"reconcile_rate\" 0: must be a positive number of LOOKUPs per second, there is no unlimited (leave it out for the default, %d)", DefaultReconcileRate)
	}
	// The same for a name written out as "": "kv_bucket": "" (a template
	// whose variable was unset) silently became the bucket "provisioner",
	// which may be another deployment's in the same account, and
	// "subject_prefix": "" the prefix prov, where an operator may mean no
	// prefix. None of these fields has an empty value; the fields whose
	// "" means "none" or "the default" (store_dir, instance, health_listen,
	// operator_signing_key_next) say so in config.example.json, and take it.
	for _, f := range []struct {
		name, def string
		value     *string
	}{
		{"kv_bucket", DefaultKVBucket, given.KVBucket},
		{"subject_prefix", DefaultSubjectPrefix, given.SubjectPrefix},
		{"service_name", DefaultServiceName, given.ServiceName},
		{"log_level", DefaultLogLevel, given.LogLevel},
		{"log_format", DefaultLogFormat, given.LogFormat},
	} {
		if f.value != nil && *f.value == "" {
			return fmt.Errorf("%q is empty: give a value, or leave it out for the default, %s", f.name, f.def)
		}
	}
	return nil
}

// SetDefaults fills the optional fields left empty. The instance name
// defaults to the host name and the process id, so that instances sharing
// a config differ.
func (c *Config) SetDefaults() {
	if c.KVBucket == "" {
		c.KVBucket = DefaultKVBucket
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultSubjectPrefix
	}
	if c.ResolverTimeout == 0 {
		c.ResolverTimeout = Duration(DefaultResolverTimeout)
	}
	if c.RequestTimeout == 0 {
		// A delete pushes twice and deletes once, and a failed one pushes
		// again to put things back.
		// Capped at MaxDuration, so that a resolver_timeout Validate takes
		// does not give a default it refuses, naming request_timeout,
		// which the config does not set. (One past MaxDuration, which can
		// overflow here, is refused naming resolver_timeout.)
		rt := time.Duration(c.ResolverTimeout)
		if rt > 0 && rt <= (MaxDuration-5*time.Second)/4 {
			c.RequestTimeout = Duration(4*rt + 5*time.Second)
		} else {
			c.RequestTimeout = Duration(MaxDuration)
		}
	}
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = Duration(DefaultReconcileInterval)
	}
	if c.ReconcileRate == 0 {
		c.ReconcileRate = DefaultReconcileRate
	}
	if c.TombstoneRetention == 0 {
		c.TombstoneRetention = Duration(DefaultTombstoneRetention)
	}
	if c.ServerForgetAfter == 0 {
		c.ServerForgetAfter = Duration(DefaultServerForgetAfter)
	}
	if c.Instance == "" {
		c.Instance = DefaultInstance()
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

// DefaultInstance returns the host name and the process id, as
// "host-1234", with every character an instance name may not hold (see
// Validate) replaced by "_".
func DefaultInstance() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "provisioner"
	}
	host = strings.Map(func(r rune) rune {
		if instanceChar(r) {
			return r
		}
		return '_'
	}, host)
	return host + "-" + strconv.Itoa(os.Getpid())
}

func instanceChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-'
}

// StoreKind returns StoreFile when StoreDir is set, else StoreJetStream.
func (c *Config) StoreKind() string {
	if c.StoreDir != "" {
		return StoreFile
	}
	return StoreJetStream
}

// Replicas returns the KV bucket's replica count given how many JetStream
// servers there are: KVReplicas when set, else 3 for three or more
// servers and 1 below.
func (c *Config) Replicas(jetStreamServers int) int {
	switch {
	case c.KVReplicas != 0:
		return c.KVReplicas
	case jetStreamServers >= 3:
		return 3
	default:
		return 1
	}
}

// resolvePaths makes relative file paths relative to base, the directory of
// the config file, so a deployment directory can move as a whole. Blank
// values stay as they are, for Validate to name.
func (c *Config) resolvePaths(base string) {
	paths := []*string{&c.NATSCreds, &c.OperatorJWT, &c.OperatorSigningKey, &c.OperatorSigningKeyNext, &c.StoreDir, &c.ServiceCreds, &c.SealKey}
	for i := range c.SealKeyPrevious {
		paths = append(paths, &c.SealKeyPrevious[i])
	}
	for _, p := range paths {
		if strings.TrimSpace(*p) != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
}

// kvBucketRe is what nats.go's jetstream package accepts as a bucket name.
var kvBucketRe = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// MaxKVBucketLen is the longest bucket name: nats-server refuses a stream
// name over 255 bytes (JSMaxNameLen), and the bucket's stream is
// KV_<bucket>. nats.go checks no length, so a longer name passed, and the
// start failed with the server's "stream name is too long", which names
// neither kv_bucket nor the bucket.
const MaxKVBucketLen = 255 - len("KV_")

// MaxNameLen is the longest instance, service_name and subject_prefix.
// They go into the subjects the service subscribes to and clients publish
// to (<prefix>.status.<instance>, $SRV.INFO.<service_name>.<id>), and
// nats-server closes a connection whose SUB or PUB line, subject and reply
// subject together, is past its max_control_line (4096 bytes by default):
// the start failed with "connection closed", naming no field. 255 each, as
// for a stream name, keeps the longest subject (prefix and instance) and a
// reply subject well inside it.
const MaxNameLen = 255

// ValidKVBucket reports whether name is a valid JetStream KV bucket name.
func ValidKVBucket(name string) bool {
	return len(name) <= MaxKVBucketLen && kvBucketRe.MatchString(name)
}

// CheckSubjectPrefix checks a subject prefix: api.CheckPrefix, which the
// client shares, and MaxNameLen. The error quotes no prefix past the limit.
func CheckSubjectPrefix(p string) error {
	if len(p) > MaxNameLen {
		return fmt.Errorf("is %d bytes, at most %d: it goes into every subject, and a subject past the server's max_control_line closes the connection", len(p), MaxNameLen)
	}
	return api.CheckPrefix(p)
}

// Validate checks every field and names the first bad one.
func (c *Config) Validate() error {
	for _, f := range []struct{ name, value string }{
		{"nats_url", c.NATSURL},
		{"nats_creds", c.NATSCreds},
		{"operator_jwt", c.OperatorJWT},
		{"operator_signing_key", c.OperatorSigningKey},
	} {
		if strings.TrimSpace(f.value) == "" {
			return fmt.Errorf("%q is required", f.name)
		}
	}
	if err := checkNATSURL(c.NATSURL); err != nil {
		return err
	}
	if err := c.validateStore(); err != nil {
		return err
	}
	if err := c.validateNoSeeds(); err != nil {
		return err
	}
	if err := CheckSubjectPrefix(c.SubjectPrefix); err != nil {
		return fmt.Errorf("\"subject_prefix\" %w", err)
	}
	if c.HealthListen != "" {
		if _, port, err := net.SplitHostPort(c.HealthListen); err != nil {
			return fmt.Errorf("\"health_listen\" %q must be host:port (127.0.0.1:8081, or :8081 for every interface): %w", c.HealthListen, err)
		} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("\"health_listen\" %q: the port must be a number from 1 to 65535", c.HealthListen)
		}
	}
	switch {
	case c.MaxInflight < 0:
		return errors.New("\"max_inflight\" must be positive")
	case c.ReconcileRate < 0:
		return errors.New("\"reconcile_rate\" must be a positive number of LOOKUPs per second")
	case len(c.ServiceName) > MaxNameLen:
		return fmt.Errorf("\"service_name\" is %d bytes, at most %d: it goes into the micro subjects ($SRV.INFO.<service_name>.<id>), and a subject past the server's max_control_line closes the connection", len(c.ServiceName), MaxNameLen)
	case len(c.Instance) > MaxNameLen:
		return fmt.Errorf("\"instance\" is %d bytes, at most %d: it goes into the subject <prefix>.status.<instance>, and a subject past the server's max_control_line closes the connection", len(c.Instance), MaxNameLen)
	case c.ServiceName == "" || strings.IndexFunc(c.ServiceName, func(r rune) bool { return !instanceChar(r) }) >= 0:
		return fmt.Errorf("\"service_name\" %q may hold only letters, digits, _ and - (it is the micro service name)", c.ServiceName)
	case c.Instance == "" || strings.IndexFunc(c.Instance, func(r rune) bool { return !instanceChar(r) }) >= 0:
		return fmt.Errorf("\"instance\" %q may hold only letters, digits, _ and - (leave it out for host name and process id)", c.Instance)
	}
	for _, d := range []struct {
		name  string
		value Duration
		min   time.Duration
	}{
		{"resolver_timeout", c.ResolverTimeout, MinResolverTimeout},
		{"request_timeout", c.RequestTimeout, MinRequestTimeout},
		{"reconcile_interval", c.ReconcileInterval, MinReconcileInterval},
		{"tombstone_retention", c.TombstoneRetention, MinTombstoneRetention},
		{"server_forget_after", c.ServerForgetAfter, MinServerForgetAfter},
	} {
		if d.value <= 0 {
			return fmt.Errorf("%q must be positive", d.name)
		}
		if time.Duration(d.value) < d.min {
			return fmt.Errorf("%q %s is below its minimum of %s", d.name, time.Duration(d.value), d.min)
		}
		// The service multiplies them (the reconciler's lease is three
		// intervals, the default request_timeout four resolver timeouts):
		// far above any use, they would overflow.
		if time.Duration(d.value) > MaxDuration {
			return fmt.Errorf("%q must be at most %s", d.name, MaxDuration)
		}
	}
	if c.TombstoneRetention < c.ServerForgetAfter {
		// A server down past server_forget_after is no longer waited for,
		// so a delete can finish without it; the tombstone is what deletes
		// the account again when it comes back, as long as it is kept.
		return fmt.Errorf("\"tombstone_retention\" (%s) must be at least \"server_forget_after\" (%s): a server away longer than the tombstone is kept brings a deleted account back", time.Duration(c.TombstoneRetention), time.Duration(c.ServerForgetAfter))
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

// validateNoSeeds refuses a path field that holds an nkey seed itself: a
// seed pasted where the path of its file belongs would be read as a
// relative path, and the start would fail with "open DIR/SO...: no such
// file or directory", the seed in the error and the log. The error names
// the field, never the value. A seed that is not the whole last element of
// the path counts too: one in quotes, after a label, or pasted as the
// decorated block of a creds or seed file ("-----BEGIN ... NKEY SEED-----"),
// which the check of the last element alone let through to the same error.
func (c *Config) validateNoSeeds() error {
	fields := []struct{ name, value string }{
		{"nats_creds", c.NATSCreds},
		{"operator_jwt", c.OperatorJWT},
		{"operator_signing_key", c.OperatorSigningKey},
		{"operator_signing_key_next", c.OperatorSigningKeyNext},
		{"store_dir", c.StoreDir},
		{"service_creds", c.ServiceCreds},
		{"seal_key", c.SealKey},
	}
	for _, p := range c.SealKeyPrevious {
		fields = append(fields, struct{ name, value string }{"seal_key_previous", p})
	}
	for _, f := range fields {
		// Load has joined a relative value to the config's directory.
		base := strings.TrimSpace(filepath.Base(strings.TrimSpace(f.value)))
		if _, _, err := nkeys.DecodeSeed([]byte(base)); err == nil || api.LooksLikeSeed(f.value) {
			return fmt.Errorf("%q holds a seed, not the path of a file: write the seed to a file only its owner may read (mode 0600) and give that file's path", f.name)
		}
	}
	return nil
}

// refuseSeeds refuses a config with a seed in any field, escaped in the
// JSON or not, naming the field and never the value. validateNoSeeds sees
// only the path fields, once decoded: a seed elsewhere was quoted by that
// field's error ("log_level" "SU..." must be ..., a duration's "got ..."),
// or taken as it was and logged at every start and put in every event (an
// instance, kv_bucket, subject_prefix or service_name). A body that is not
// a JSON object is left to the decoder, whose errors quote no value.
func refuseSeeds(data []byte) error {
	var fields map[string]json.RawMessage
	if json.Unmarshal(data, &fields) != nil {
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		var v any
		if api.LooksLikeSeed(string(fields[name])) || json.Unmarshal(fields[name], &v) == nil && holdsSeed(v) {
			return fmt.Errorf("%q holds a seed: seeds are secrets; the config names the files that hold them (mode 0600), and holds none", name)
		}
	}
	return nil
}

// holdsSeed reports whether a decoded JSON value holds a seed in any string.
func holdsSeed(v any) bool {
	switch v := v.(type) {
	case string:
		return api.LooksLikeSeed(v)
	case []any:
		return slices.ContainsFunc(v, holdsSeed)
	case map[string]any:
		for k, e := range v {
			if api.LooksLikeSeed(k) || holdsSeed(e) {
				return true
			}
		}
	}
	return false
}

// validateStore checks the fields of the store: the file store needs only
// store_dir; the KV store needs service_creds and seal_key.
func (c *Config) validateStore() error {
	if c.StoreDir != "" && strings.TrimSpace(c.StoreDir) == "" {
		return errors.New("\"store_dir\" (or --store-dir) is blank: set a directory for the file store, or leave it out for the JetStream KV store")
	}
	if c.StoreKind() == StoreJetStream {
		for _, f := range []struct{ name, value string }{
			{"service_creds", c.ServiceCreds},
			{"seal_key", c.SealKey},
		} {
			if strings.TrimSpace(f.value) == "" {
				return fmt.Errorf("%q is required when \"store_dir\" is not set (the JetStream KV store is used); set \"store_dir\" for the file store instead", f.name)
			}
		}
	}
	if c.ServiceCreds != "" && strings.TrimSpace(c.ServiceCreds) == "" {
		return errors.New("\"service_creds\" is blank")
	}
	if c.SealKey != "" && strings.TrimSpace(c.SealKey) == "" {
		return errors.New("\"seal_key\" is blank")
	}
	if len(c.SealKeyPrevious) > 0 && c.SealKey == "" {
		return errors.New("\"seal_key_previous\" needs \"seal_key\", the key that seals from now on")
	}
	for i, p := range c.SealKeyPrevious {
		if strings.TrimSpace(p) == "" {
			return fmt.Errorf("\"seal_key_previous\" entry %d is blank", i+1)
		}
		if p == c.SealKey {
			return fmt.Errorf("\"seal_key_previous\" entry %d is \"seal_key\" itself", i+1)
		}
	}
	if !ValidKVBucket(c.KVBucket) {
		return fmt.Errorf("\"kv_bucket\" %q must be a KV bucket name: letters, digits, _ and - only, at most %d", c.KVBucket, MaxKVBucketLen)
	}
	switch c.KVReplicas {
	case 0, 1, 3, 5:
	default:
		return fmt.Errorf("\"kv_replicas\" %d must be 1, 3 or 5, or 0 to choose at start (3 with three or more JetStream servers, else 1)", c.KVReplicas)
	}
	return nil
}

// RedactURL returns a nats_url (one URL or several, comma-separated) with
// the user information of each replaced, so that a password or token in
// it never reaches a log or an error. A part that is no URL (a typo in the
// port, a password with a space) has everything before its last @ after
// the scheme replaced: left as it was, its password was logged.
func RedactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := parseNATSURL(p)
		switch {
		case err == nil && u.User != nil:
			u.User = url.User("redacted")
			parts[i] = u.String()
		case err != nil && strings.Contains(p, "@"):
			p = strings.TrimSpace(p)
			start := 0
			if j := strings.Index(p, "://"); j >= 0 {
				start = j + len("://")
			}
			if at := strings.LastIndex(p, "@"); at >= start {
				parts[i] = p[:start] + "redacted" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}

// parseNATSURL parses one URL of a nats_url as nats.go does: trimmed, with
// nats:// when it names no scheme.
func parseNATSURL(s string) (*url.URL, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		s = "nats://" + s
	}
	return url.Parse(s)
}

// checkNATSURL refuses a nats_url that nats.go cannot parse: a
// configuration error, which the start would otherwise take for a server
// that is not up yet and wait for forever. The error names the field and
// the position, never the value (url.Parse's error quotes the URL,
// password included).
func checkNATSURL(urls string) error {
	parts := strings.Split(urls, ",")
	if !slices.ContainsFunc(parts, func(p string) bool { return strings.TrimSpace(p) != "" }) {
		// nats.go skips every blank part and, left with none, connects
		// to its default, nats://127.0.0.1:4222: not what was written.
		return errors.New("\"nats_url\" holds no URL, only commas and blanks; want nats://[user:password@]host:port, several comma-separated")
	}
	for i, p := range parts {
		if strings.TrimSpace(p) == "" {
			continue // nats.go skips it
		}
		u, err := parseNATSURL(p)
		if err == nil && u.Host == "" {
			err = errors.New("no host")
		}
		// url.Parse takes any digits as the port: one out of range
		// (422222, a digit too many) failed only at the dial, which the
		// start takes for a server not up yet and waits for forever.
		if err == nil && u.Port() != "" {
			if n, perr := strconv.Atoi(u.Port()); perr != nil || n < 1 || n > 65535 {
				err = fmt.Errorf("port %s is not a TCP port (1 to 65535)", u.Port())
			}
		}
		if err != nil {
			what := "it is not a URL"
			if ue, ok := err.(*url.Error); ok && u == nil && !strings.Contains(p, "@") {
				what = ue.Err.Error()
			} else if u != nil {
				what = err.Error()
			}
			where := ""
			if len(parts) > 1 {
				where = fmt.Sprintf(" (URL %d of %d)", i+1, len(parts))
			}
			return fmt.Errorf("\"nats_url\" %s%s: %s; want nats://[user:password@]host:port, several comma-separated", RedactURL(p), where, what)
		}
	}
	return nil
}
