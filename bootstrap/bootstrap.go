// Package bootstrap creates everything a deployment needs from nothing: an
// operator with a separate signing key and strict signing key usage, the
// system account, the service's own account (JetStream on, for the KV
// store), least-privilege users for the provisioner, the service and an
// admin, a seal key for seeds at rest, nats-server configurations with a
// full resolver (one server, and a three-node cluster for containers), and
// the provisioner's config.json.
package bootstrap

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/safefile"
)

// Names of the files Init writes, relative to its directory.
const (
	OperatorJWTFile        = "operator.jwt"
	OperatorSigningKeyFile = "operator-signing.nk"
	SystemAccountJWTFile   = "system-account.jwt"
	ServiceAccountJWTFile  = "service-account.jwt"
	ProvisionerCredsFile   = "provisioner.creds"
	AdminCredsFile         = "admin.creds"
	ServiceCredsFile       = "service.creds"
	SealKeyFile            = "seal.xk"
	ServerConfFile         = "nats-server.conf"
	ConfigFile             = "config.json"
	// ContainerConfigFile is config.json for the provisioners of
	// docker-compose.yml: the cluster's URLs and three replicas.
	ContainerConfigFile = "config.container.json"
	// OfflineDir holds the keys that no running process needs. Move it off
	// the machine once the deployment works.
	OfflineDir                = "OFFLINE-identity-keys"
	OperatorIdentityKeyFile   = OfflineDir + "/operator-identity.nk"
	SystemAccountKeyFile      = OfflineDir + "/system-account-identity.nk"
	SystemAccountSigningFile  = OfflineDir + "/system-account-signing.nk"
	ServiceAccountKeyFile     = OfflineDir + "/service-account-identity.nk"
	ServiceAccountSigningFile = OfflineDir + "/service-account-signing.nk"
	// ResolverDir, StoreDir and JetStreamDir are made by nats-server and the
	// file store, not by Init; Init refuses a directory that has them.
	ResolverDir  = "jwt"
	StoreDir     = "store"
	JetStreamDir = "jetstream"

	// ContainerDeployDir and ContainerDataDir are where docker-compose.yml
	// mounts the init output and each nats node's data volume.
	ContainerDeployDir   = "/deploy"
	ContainerDataDir     = "/data"
	ContainerPort        = 4222
	ContainerClusterPort = 6222
	// ContainerHealthListen is the health endpoint of a provisioner
	// container, on its own loopback: docker-compose.yml's healthcheck
	// asks it there.
	ContainerHealthListen = "127.0.0.1:8081"
	// ClusterName and ClusterSize describe the container cluster.
	ClusterName = "provisioner"
	ClusterSize = 3
)

// ContainerConfFile returns the name of the nats-server config of container
// cluster node n, 1 to ClusterSize.
func ContainerConfFile(n int) string { return fmt.Sprintf("nats-server-%d.container.conf", n) }

// ClusterRouteUser is the user the container cluster's routes
// authenticate as; the password is made by each init.
const ClusterRouteUser = "route"

// randomPassword returns 32 random bytes, base64url: characters a route
// URL's user information and a config string take as they are.
func randomPassword() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("bootstrap: route password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// ContainerNode returns the server name of container cluster node n, which
// is also its host name in docker-compose.yml: "n1" to "n3".
func ContainerNode(n int) string { return "n" + strconv.Itoa(n) }

// ContainerURLs returns the client URLs of the container cluster, comma
// separated, as nats_url and --nats-url take them.
func ContainerURLs() string {
	urls := make([]string, ClusterSize)
	for i := range urls {
		urls[i] = "nats://" + net.JoinHostPort(ContainerNode(i+1), strconv.Itoa(ContainerPort))
	}
	return strings.Join(urls, ",")
}

// Inbox prefixes. Every user Init makes may subscribe to its own inbox
// prefix only, never to _INBOX.>, so that no user can read the replies
// meant for another; clients set theirs with nats.CustomInboxPrefix or
// natscli's --inbox-prefix.
const (
	AdminInboxPrefix       = "_INBOX_admin"
	ProvisionerInboxPrefix = "_INBOX_provisioner"
	ServiceInboxPrefix     = "_INBOX_service"
)

// Store kinds of Options.Store.
const (
	StoreJetStream = config.StoreJetStream
	StoreFile      = config.StoreFile
)

// The service's own account.
const (
	ServiceAccountName = "PROVISIONER"
	// The account's JetStream limits: the KV bucket holds a few KiB per
	// account (seeds, JWT, user records), so 4 GiB of disk is room for
	// hundreds of thousands of accounts with history, and a runaway stream
	// cannot fill the servers' disks.
	ServiceAccountMemStorage  = 256 << 20
	ServiceAccountDiskStorage = 4 << 30
)

// ServiceAccountTiers are the replica counts the account has these limits
// for, each in its own tier: R1 (one server) and R3 (the 3-node cluster of
// the container configs). Tiers, not flat limits: the server counts a
// stream's bytes on every replica against flat limits, so on the 3-node
// cluster the audit stream's 1 GiB took 3 GiB of the 4 and left the bucket
// 341 MiB; a tier's limit is what its streams hold, on each replica. Not
// R1 to R5: a single server checks the sum of an account's tiers against
// its max_file_store and max_memory_store (75% of the free disk and of
// the memory by default), so each tier more asks 4 GiB of disk and
// 256 MiB of memory more of every host; a kv_replicas of 5 needs
// its tier added (README).
var ServiceAccountTiers = []int{1, 3}

// Options tune Init. The zero value gives a JetStream deployment listening
// on 127.0.0.1:4222 that allows deletes.
type Options struct {
	// Dir receives the files. It may exist, but no file Init writes may.
	Dir string
	// Store is StoreJetStream (the default: the KV store, any number of
	// instances) or StoreFile (the file store in Dir/store, one instance).
	Store string
	// KVBucket names the KV bucket the service user may use. Default
	// config.DefaultKVBucket.
	KVBucket string
	// Host and Port are the client listen address. Defaults 127.0.0.1, 4222.
	Host string
	Port int
	// OperatorName names the operator. Default "provisioner".
	OperatorName string
	// SubjectPrefix is the provisioning subject prefix. Default "prov".
	SubjectPrefix string
	// NoDelete turns allow_delete off in the server config.
	NoDelete bool
	// ResolverLimit is the resolver's account limit. Default 10000.
	ResolverLimit int
	// ServerName names the server. Default "provisioner-nats".
	ServerName string
}

func (o *Options) setDefaults() {
	if o.Store == "" {
		o.Store = StoreJetStream
	}
	if o.KVBucket == "" {
		o.KVBucket = config.DefaultKVBucket
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = 4222
	}
	if o.OperatorName == "" {
		o.OperatorName = "provisioner"
	}
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = config.DefaultSubjectPrefix
	}
	if o.ResolverLimit == 0 {
		o.ResolverLimit = 10000
	}
	if o.ServerName == "" {
		o.ServerName = "provisioner-nats"
	}
}

// Check reports what Init would refuse in the options, before anything is
// written: for a caller that must refuse bad options before it changes
// anything itself (dev --reset).
func (o Options) Check() error {
	o.setDefaults()
	return o.check()
}

func (o *Options) check() error {
	switch {
	case o.Dir == "":
		return errors.New("bootstrap: a directory is required")
	case o.Store != StoreJetStream && o.Store != StoreFile:
		return fmt.Errorf("bootstrap: store %q: want %s or %s", o.Store, StoreJetStream, StoreFile)
	case !config.ValidKVBucket(o.KVBucket):
		return fmt.Errorf("bootstrap: KV bucket %q: letters, digits, _ and - only, at most %d", o.KVBucket, config.MaxKVBucketLen)
	case config.CheckSubjectPrefix(o.SubjectPrefix) != nil:
		return fmt.Errorf("bootstrap: subject prefix %w", config.CheckSubjectPrefix(o.SubjectPrefix))
	case !validHost(o.Host):
		return fmt.Errorf("bootstrap: host %q must be a host name or an IP address, without a scheme or a port (the port is --port)", o.Host)
	case o.Port < 1 || o.Port > 65535:
		return fmt.Errorf("bootstrap: port %d is not a TCP port", o.Port)
	case o.ResolverLimit < 1:
		return fmt.Errorf("bootstrap: resolver limit %d must be positive", o.ResolverLimit)
	}
	return nil
}

// hostLabel is one label of a host name: letters, digits, - and _ (which
// container and service names hold).
var hostLabel = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?$`)

// validHost reports whether h is an IP address or a host name, which Init
// joins with the port into nats-server's listen and the config's nats_url.
func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for l := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if len(l) > 63 || !hostLabel.MatchString(l) {
			return false
		}
	}
	return true
}

// Result tells what Init made.
type Result struct {
	Dir             string
	Store           string // StoreJetStream or StoreFile
	KVBucket        string
	Operator        string
	OperatorSigning string
	SystemAccount   string
	// ServiceAccount is the service's own account. The service learns it
	// from service.creds (the user JWT's issuer_account).
	ServiceAccount  string
	ProvisionerUser string
	AdminUser       string
	ServiceUser     string
	// SealKey is the public curve key of seal.xk.
	SealKey string
	URL     string
	Files   []string // relative to Dir
	// Absolute paths.
	ServerConf       string
	Config           string
	AdminCreds       string
	ProvisionerCreds string
	ServiceCreds     string
	SealKeyFile      string
	// Server is what ServerConf was rendered from, for tools that derive
	// other servers' configs from it (the bench's local cluster).
	Server ServerConf
}

// Init writes a new deployment into opts.Dir. It refuses, before writing
// anything, when any file it would write exists.
func Init(opts Options) (*Result, error) {
	opts.setDefaults()
	if err := opts.check(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	files := []string{
		OperatorJWTFile, OperatorSigningKeyFile, SystemAccountJWTFile, ServiceAccountJWTFile,
		ProvisionerCredsFile, AdminCredsFile, ServiceCredsFile, SealKeyFile,
		ServerConfFile, ConfigFile,
	}
	if opts.Store == StoreJetStream {
		for n := 1; n <= ClusterSize; n++ {
			files = append(files, ContainerConfFile(n))
		}
		files = append(files, ContainerConfigFile)
	}
	files = append(files, OperatorIdentityKeyFile, SystemAccountKeyFile, SystemAccountSigningFile, ServiceAccountKeyFile, ServiceAccountSigningFile)
	for _, f := range append(files, ResolverDir, StoreDir, JetStreamDir, OfflineDir) {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			return nil, fmt.Errorf("bootstrap: %s exists; init never overwrites a deployment (choose another --dir or remove it)", filepath.Join(dir, f))
		}
	}

	k, err := newKeys()
	if err != nil {
		return nil, err
	}
	defer k.wipe()

	out := map[string]fileSpec{}
	secret := func(name string, data []byte) { out[name] = fileSpec{data, 0o600} }
	public := func(name string, data []byte) { out[name] = fileSpec{data, 0o644} }

	// The operator: self-signed by its identity key, which then goes
	// offline; everything else is signed by the signing key.
	oc := jwt.NewOperatorClaims(k.pub(k.operator))
	oc.Name = opts.OperatorName
	oc.SigningKeys.Add(k.pub(k.operatorSigning))
	oc.StrictSigningKeyUsage = true
	oc.SystemAccount = k.pub(k.sysAccount)
	opJWT, err := oc.Encode(k.operator)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: sign operator: %w", err)
	}
	public(OperatorJWTFile, decorate(opJWT))
	secret(OperatorSigningKeyFile, seedFile(k.operatorSigning))
	secret(OperatorIdentityKeyFile, seedFile(k.operator))

	ac := jwt.NewAccountClaims(k.pub(k.sysAccount))
	ac.Name = "SYS"
	ac.SigningKeys.Add(k.pub(k.sysSigning))
	// The system account's exports as nsc creates them are not needed: the
	// server adds its own.
	sysJWT, err := ac.Encode(k.operatorSigning)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: sign system account: %w", err)
	}
	public(SystemAccountJWTFile, decorate(sysJWT))
	secret(SystemAccountKeyFile, seedFile(k.sysAccount))
	secret(SystemAccountSigningFile, seedFile(k.sysSigning))

	// The service's own account: JetStream is on (the system account
	// cannot have it), so the KV store, and later the audit stream, live
	// here. Both its seeds go offline: its one user is made here, and
	// nothing running signs users of it.
	sc := jwt.NewAccountClaims(k.pub(k.svcAccount))
	sc.Name = ServiceAccountName
	sc.SigningKeys.Add(k.pub(k.svcSigning))
	// Tenants' users reach the self-service responder through this export,
	// which binds the importing account's key into the subject.
	sc.Exports.Add(api.SelfExport(opts.SubjectPrefix))
	sc.Limits.JetStreamTieredLimits = jwt.JetStreamTieredLimits{}
	for _, r := range ServiceAccountTiers {
		sc.Limits.JetStreamTieredLimits["R"+strconv.Itoa(r)] = jwt.JetStreamLimits{
			MemoryStorage: ServiceAccountMemStorage,
			DiskStorage:   ServiceAccountDiskStorage,
			Streams:       jwt.NoLimit,
			Consumer:      jwt.NoLimit,
		}
	}
	svcJWT, err := sc.Encode(k.operatorSigning)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: sign the service account: %w", err)
	}
	public(ServiceAccountJWTFile, decorate(svcJWT))
	secret(ServiceAccountKeyFile, seedFile(k.svcAccount))
	secret(ServiceAccountSigningFile, seedFile(k.svcSigning))

	for _, u := range []struct {
		file, name          string
		kp, account, signer nkeys.KeyPair
		perms               jwt.Permissions
	}{
		{ProvisionerCredsFile, "provisioner", k.provisioner, k.sysAccount, k.sysSigning, ProvisionerPermissions(opts.SubjectPrefix)},
		{AdminCredsFile, "admin", k.admin, k.sysAccount, k.sysSigning, AdminPermissions(opts.SubjectPrefix)},
		{ServiceCredsFile, "service", k.service, k.svcAccount, k.svcSigning, ServicePermissions(opts.KVBucket, opts.SubjectPrefix)},
	} {
		creds, err := k.user(u.kp, u.name, u.account, u.signer, u.perms)
		if err != nil {
			return nil, err
		}
		secret(u.file, creds)
	}
	sealSeed, err := k.seal.Seed()
	if err != nil {
		return nil, fmt.Errorf("bootstrap: seal key: %w", err)
	}
	secret(SealKeyFile, append(sealSeed, '\n'))

	hostConf := ServerConf{
		Listen:        net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port)),
		ServerName:    opts.ServerName,
		OperatorJWT:   filepath.Join(dir, OperatorJWTFile),
		SystemAccount: k.pub(k.sysAccount),
		SystemJWT:     sysJWT,
		Preload:       []Preload{{k.pub(k.svcAccount), svcJWT}},
		ResolverDir:   filepath.Join(dir, ResolverDir),
		// Both kinds get JetStream: the service account exists in both,
		// and what comes after the KV store (the audit stream) needs it
		// with the file store too. Unused, it costs nothing.
		JetStreamDir: filepath.Join(dir, JetStreamDir),
		AllowDelete:  !opts.NoDelete,
		Limit:        opts.ResolverLimit,
	}
	public(ServerConfFile, hostConf.Render())

	url := "nats://" + net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port))
	cfg := config.Config{
		NATSURL:            url,
		NATSCreds:          ProvisionerCredsFile,
		OperatorJWT:        OperatorJWTFile,
		OperatorSigningKey: OperatorSigningKeyFile,
		ServiceCreds:       ServiceCredsFile,
		SealKey:            SealKeyFile,
		SubjectPrefix:      opts.SubjectPrefix,
		ResolverTimeout:    config.Duration(config.DefaultResolverTimeout),
	}
	if opts.Store == StoreFile {
		cfg.StoreDir = StoreDir
	} else {
		cfg.KVBucket = opts.KVBucket
	}
	data, err := configFile(cfg)
	if err != nil {
		return nil, err
	}
	public(ConfigFile, data)

	if opts.Store == StoreJetStream {
		routes := make([]string, ClusterSize)
		for i := range routes {
			routes[i] = "nats://" + net.JoinHostPort(ContainerNode(i+1), strconv.Itoa(ContainerClusterPort))
		}
		// The cluster port is reachable wherever the containers are (from
		// the host, for one): the routes authenticate with a password of
		// this deployment's, which makes the container configs secret.
		routePassword, err := randomPassword()
		if err != nil {
			return nil, err
		}
		for n := 1; n <= ClusterSize; n++ {
			c := hostConf
			c.Listen = net.JoinHostPort("0.0.0.0", strconv.Itoa(ContainerPort))
			c.ServerName = ContainerNode(n)
			c.OperatorJWT = ContainerDeployDir + "/" + OperatorJWTFile
			c.ResolverDir = ContainerDataDir + "/" + ResolverDir
			c.JetStreamDir = ContainerDataDir + "/" + JetStreamDir
			c.Cluster = &ClusterConf{
				Name:   ClusterName,
				Listen: net.JoinHostPort("0.0.0.0", strconv.Itoa(ContainerClusterPort)),
				Routes: routes,

				RouteUser:     ClusterRouteUser,
				RoutePassword: routePassword,
			}
			secret(ContainerConfFile(n), c.Render())
		}
		// Three replicas, set rather than chosen at start: a provisioner
		// that starts while a node is still down must not make the bucket
		// R1 for good.
		cc := cfg
		cc.NATSURL = ContainerURLs()
		cc.KVReplicas = ClusterSize
		// Set in the file, not only by docker-compose.yml's
		// --health-listen: `provisioner health --config
		// /deploy/config.container.json` (its help's example) reads it
		// here, and the image's own CMD serves without the flag.
		cc.HealthListen = ContainerHealthListen
		data, err := configFile(cc)
		if err != nil {
			return nil, err
		}
		public(ContainerConfigFile, data)
	}

	// A directory made here is 0755 (it holds public files too); one that
	// existed keeps its mode.
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	// MkdirAll's mode goes through the umask: under 077 the directory was
	// 0700, which the public files' 0644 cannot make up for, and
	// docker-compose.yml's provisioners (another uid, handed only their
	// secret files) could not read /deploy.
	if errors.Is(statErr, os.ErrNotExist) {
		if err := os.Chmod(dir, 0o755); err != nil {
			os.Remove(dir)
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, OfflineDir), 0o700); err != nil {
		if statErr != nil {
			os.Remove(dir)
		}
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	// The identity keys first and config.json last: config.json is what
	// tells a made deployment (dev goes by it), so it must not exist
	// before every key does. A write that fails takes back what was
	// written, so that init can run again.
	order := slices.Clone(files)
	slices.SortStableFunc(order, func(a, b string) int {
		rank := func(n string) int {
			switch {
			case strings.HasPrefix(n, OfflineDir+"/"):
				return 0
			case n == ConfigFile || n == ContainerConfigFile:
				return 2
			}
			return 1
		}
		return rank(a) - rank(b)
	})
	var written []string
	for _, name := range order {
		f := out[name]
		if err := safefile.WriteNew(filepath.Join(dir, name), f.data, f.perm); err != nil {
			for _, w := range slices.Backward(written) {
				os.Remove(filepath.Join(dir, w))
			}
			os.Remove(filepath.Join(dir, OfflineDir))
			if statErr != nil {
				os.Remove(dir)
			}
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
		written = append(written, name)
	}
	return &Result{
		Dir:              dir,
		Store:            opts.Store,
		KVBucket:         opts.KVBucket,
		Operator:         k.pub(k.operator),
		OperatorSigning:  k.pub(k.operatorSigning),
		SystemAccount:    k.pub(k.sysAccount),
		ServiceAccount:   k.pub(k.svcAccount),
		ProvisionerUser:  k.pub(k.provisioner),
		AdminUser:        k.pub(k.admin),
		ServiceUser:      k.pub(k.service),
		SealKey:          k.pub(k.seal),
		URL:              url,
		Files:            files,
		ServerConf:       filepath.Join(dir, ServerConfFile),
		Config:           filepath.Join(dir, ConfigFile),
		AdminCreds:       filepath.Join(dir, AdminCredsFile),
		ProvisionerCreds: filepath.Join(dir, ProvisionerCredsFile),
		ServiceCreds:     filepath.Join(dir, ServiceCredsFile),
		SealKeyFile:      filepath.Join(dir, SealKeyFile),
		Server:           hostConf,
	}, nil
}

// configFile renders a config as Init writes it, after checking that it
// loads: only the fields set, defaults left to the service.
func configFile(c config.Config) ([]byte, error) {
	check := c
	check.SetDefaults()
	if err := check.Validate(); err != nil {
		return nil, fmt.Errorf("bootstrap: the config would not load: %w", err)
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("bootstrap: config: %w", err)
	}
	return append(data, '\n'), nil
}

type fileSpec struct {
	data []byte
	perm os.FileMode
}

// ProvisionerPermissions are the least privileges of the provisioner's
// system user. It publishes only the claims API it uses (not PACK, which
// hands out every account), account lookups, the two server pings it
// reads (IDZ to count servers, VARZ for their settings) and its change
// events; replies to its requesters go through allow_responses. It
// subscribes only to the provisioning subjects, the micro discovery
// subjects, its own inbox, and the server start and stop events.
func ProvisionerPermissions(prefix string) jwt.Permissions {
	return jwt.Permissions{
		Pub: jwt.Permission{Allow: jwt.StringList{
			"$SYS.REQ.CLAIMS.UPDATE",
			"$SYS.REQ.CLAIMS.DELETE",
			"$SYS.REQ.CLAIMS.LIST",
			"$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP",
			"$SYS.REQ.SERVER.PING.IDZ",
			"$SYS.REQ.SERVER.PING.VARZ",
			prefix + ".events.>",
		}},
		Sub: jwt.Permission{Allow: jwt.StringList{
			prefix + ".>",
			"$SRV.>",
			ProvisionerInboxPrefix + ".>",
			"$SYS.SERVER.*.STATSZ",
			"$SYS.SERVER.*.SHUTDOWN",
		}},
		Resp: &jwt.ResponsePermission{MaxMsgs: 1, Expires: ResponseTTL},
	}
}

// ResponseTTL is how long the service's users may answer a request
// (allow_responses). Without one the server allows two minutes, and a
// reply later than that, to a request whose work request_timeout lets
// run longer (it may be set up to config.MaxDuration, and defaults past
// two minutes from a resolver_timeout of 29 s) or that waited behind
// max_inflight, was refused by the server: its caller, told nothing,
// waited out its timeout for a change that was made. Each request is
// answered once (max 1), which ends its permission.
const ResponseTTL = 2 * config.MaxDuration

// AdminPermissions let an admin send provisioning requests, use the micro
// discovery subjects, read the replies on its own inbox and follow the
// change events, nothing more; it may not publish events itself.
func AdminPermissions(prefix string) jwt.Permissions {
	return jwt.Permissions{
		Pub: jwt.Permission{
			Allow: jwt.StringList{prefix + ".>", "$SRV.>"},
			Deny:  jwt.StringList{prefix + ".events.>"},
		},
		Sub: jwt.Permission{Allow: jwt.StringList{AdminInboxPrefix + ".>", prefix + ".events.>"}},
	}
}

// ServicePermissions are the least privileges of the service's user in
// its own account: the JetStream API of one KV bucket (stream
// KV_<bucket>), as nats.go's jetstream package uses it to create, look up,
// read, write and watch the bucket; the audit stream (create, write, read
// with an ordered consumer); the self-service endpoints, answered through
// allow_responses, with their micro discovery; and its own inbox. It cannot
// delete or purge a stream, nor touch any other, and it may not publish to
// the self-service subjects (so no user of its account can pose as a
// tenant).
func ServicePermissions(bucket, prefix string) jwt.Permissions {
	stream := "KV_" + bucket
	audit := api.AuditStream
	return jwt.Permissions{
		Pub: jwt.Permission{Allow: jwt.StringList{
			// Account info: CreateKeyValue asks it first.
			"$JS.API.INFO",
			// CreateKeyValue, UpdateKeyValue, KeyValue and Status.
			// Created, never updated: an update could allow purges.
			"$JS.API.STREAM.CREATE." + stream,
			"$JS.API.STREAM.INFO." + stream,
			// Get: direct gets by subject (and by sequence), and the
			// stream's own get when direct gets are off.
			"$JS.API.DIRECT.GET." + stream,
			"$JS.API.DIRECT.GET." + stream + ".>",
			"$JS.API.STREAM.MSG.GET." + stream,
			// Watch (and Keys, History): an ordered push consumer, made
			// again after a gap and deleted on Stop.
			"$JS.API.CONSUMER.CREATE." + stream,
			"$JS.API.CONSUMER.CREATE." + stream + ".>",
			"$JS.API.CONSUMER.INFO." + stream + ".*",
			"$JS.API.CONSUMER.DELETE." + stream + ".*",
			// Its flow control replies, in both reply formats.
			"$JS.FC." + stream + ".>",
			"$JS.FC.*.*." + stream + ".>",
			// Put, Create, Update, Delete and Purge of keys.
			"$KV." + bucket + ".>",
			// The audit stream: made at start, written with every change,
			// paged by prov.audit with an ordered consumer.
			"$JS.API.STREAM.CREATE." + audit,
			"$JS.API.STREAM.UPDATE." + audit,
			"$JS.API.STREAM.INFO." + audit,
			"$JS.API.CONSUMER.CREATE." + audit,
			"$JS.API.CONSUMER.CREATE." + audit + ".>",
			"$JS.API.CONSUMER.INFO." + audit + ".*",
			"$JS.API.CONSUMER.DELETE." + audit + ".*",
			"$JS.API.CONSUMER.MSG.NEXT." + audit + ".*",
			prefix + ".audit.>",
		}},
		Sub: jwt.Permission{Allow: jwt.StringList{
			ServiceInboxPrefix + ".>",
			prefix + ".self.*.user.*",
			"$SRV.>",
		}},
		Resp: &jwt.ResponsePermission{MaxMsgs: 1, Expires: ResponseTTL},
	}
}

type keys struct {
	operator, operatorSigning                      nkeys.KeyPair
	sysAccount, sysSigning, svcAccount, svcSigning nkeys.KeyPair
	provisioner, admin, service, seal              nkeys.KeyPair
}

func newKeys() (*keys, error) {
	k := &keys{}
	for _, g := range []struct {
		kp   *nkeys.KeyPair
		make func() (nkeys.KeyPair, error)
	}{
		{&k.operator, nkeys.CreateOperator},
		{&k.operatorSigning, nkeys.CreateOperator},
		{&k.sysAccount, nkeys.CreateAccount},
		{&k.sysSigning, nkeys.CreateAccount},
		{&k.svcAccount, nkeys.CreateAccount},
		{&k.svcSigning, nkeys.CreateAccount},
		{&k.provisioner, nkeys.CreateUser},
		{&k.admin, nkeys.CreateUser},
		{&k.service, nkeys.CreateUser},
		{&k.seal, nkeys.CreateCurveKeys},
	} {
		kp, err := g.make()
		if err != nil {
			k.wipe()
			return nil, fmt.Errorf("bootstrap: create key: %w", err)
		}
		*g.kp = kp
	}
	return k, nil
}

func (k *keys) wipe() {
	for _, kp := range []nkeys.KeyPair{k.operator, k.operatorSigning, k.sysAccount, k.sysSigning, k.svcAccount, k.svcSigning, k.provisioner, k.admin, k.service, k.seal} {
		if kp != nil {
			kp.Wipe()
		}
	}
}

func (k *keys) pub(kp nkeys.KeyPair) string {
	p, _ := kp.PublicKey()
	return p
}

// user issues a user of account, signed by the account's signing key
// (issuer_account set, as strict signing key usage requires), and returns
// its creds file.
func (k *keys) user(kp nkeys.KeyPair, name string, account, signer nkeys.KeyPair, perms jwt.Permissions) ([]byte, error) {
	uc := jwt.NewUserClaims(k.pub(kp))
	uc.Name = name
	uc.IssuerAccount = k.pub(account)
	uc.Permissions = perms
	token, err := uc.Encode(signer)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: sign user %s: %w", name, err)
	}
	seed, _ := kp.Seed()
	return jwt.FormatUserConfig(token, seed)
}

func seedFile(kp nkeys.KeyPair) []byte {
	seed, _ := kp.Seed()
	return append(seed, '\n')
}

func decorate(token string) []byte {
	b, err := jwt.DecorateJWT(token)
	if err != nil {
		return []byte(token + "\n")
	}
	return b
}

// ServerConf is a nats-server configuration in operator mode with a full
// resolver, optionally with JetStream and a cluster.
type ServerConf struct {
	Listen        string
	ServerName    string
	OperatorJWT   string
	SystemAccount string
	SystemJWT     string
	// Preload are accounts preloaded next to the system account.
	Preload     []Preload
	ResolverDir string
	AllowDelete bool
	Limit       int
	// JetStreamDir, when set, turns JetStream on with its store there.
	JetStreamDir string
	// Cluster, when set, adds a cluster block.
	Cluster *ClusterConf
}

// Preload is an account JWT a server knows before its resolver is asked.
type Preload struct {
	Account string
	JWT     string
}

// ClusterConf is the cluster block of a ServerConf.
type ClusterConf struct {
	Name   string
	Listen string
	Routes []string
	// RouteUser and RoutePassword, when set, are the credentials every
	// route must present (cluster { authorization }), and the ones the
	// routes given by URL without credentials of their own present.
	RouteUser, RoutePassword string
}

// Render writes the configuration in nats-server's format.
func (c ServerConf) Render() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by `provisioner init`. Operator mode with a full account resolver.\n")
	fmt.Fprintf(&b, "server_name: %q\n", c.ServerName)
	fmt.Fprintf(&b, "listen: %q\n\n", c.Listen)
	fmt.Fprintf(&b, "operator: %q\n", c.OperatorJWT)
	fmt.Fprintf(&b, "system_account: %s\n\n", c.SystemAccount)
	if c.JetStreamDir != "" {
		fmt.Fprintf(&b, "# JetStream holds the provisioner's KV bucket, in the %s account.\n", ServiceAccountName)
		if c.Cluster == nil {
			fmt.Fprintf(&b, "# sync_interval: always fsyncs every write before it is acknowledged, so an\n")
			fmt.Fprintf(&b, "# account change the provisioner was told is stored survives a power loss\n")
			fmt.Fprintf(&b, "# of this, the only JetStream server (by default a server syncs every two\n")
			fmt.Fprintf(&b, "# minutes and counts on replicas).\n")
			fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  sync_interval: always\n}\n\n", c.JetStreamDir)
		} else {
			fmt.Fprintf(&b, "# The bucket has three replicas: a write is acknowledged once a majority\n")
			fmt.Fprintf(&b, "# of the servers holds it, which survives the loss of any one machine. The\n")
			fmt.Fprintf(&b, "# default sync_interval (two minutes) is kept: \"always\" would fsync every\n")
			fmt.Fprintf(&b, "# write on every server, against all three losing power at once.\n")
			fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n}\n\n", c.JetStreamDir)
		}
	}
	if c.Cluster != nil {
		fmt.Fprintf(&b, "cluster {\n  name: %q\n  listen: %q\n", c.Cluster.Name, c.Cluster.Listen)
		if c.Cluster.RouteUser != "" {
			fmt.Fprintf(&b, "  # A route is trusted with every account's messages: without these\n")
			fmt.Fprintf(&b, "  # credentials, whatever reaches the cluster port could join.\n")
			fmt.Fprintf(&b, "  authorization {\n    user: %q\n    password: %q\n  }\n", c.Cluster.RouteUser, c.Cluster.RoutePassword)
		}
		fmt.Fprintf(&b, "  routes: [\n")
		for _, r := range c.Cluster.Routes {
			if u, err := url.Parse(r); err == nil && u.User == nil && c.Cluster.RouteUser != "" {
				u.User = url.UserPassword(c.Cluster.RouteUser, c.Cluster.RoutePassword)
				r = u.String()
			}
			fmt.Fprintf(&b, "    %q\n", r)
		}
		fmt.Fprintf(&b, "  ]\n}\n\n")
	}
	fmt.Fprintf(&b, "resolver: {\n  type: full\n  dir: %q\n  allow_delete: %t\n  interval: \"2m\"\n  limit: %d\n}\n\n", c.ResolverDir, c.AllowDelete, c.Limit)
	fmt.Fprintf(&b, "# The system account must be known before the resolver can be asked.\n")
	if len(c.Preload) > 0 {
		fmt.Fprintf(&b, "# The service's own account is preloaded too, so that it works before\n# anything was pushed.\n")
	}
	fmt.Fprintf(&b, "resolver_preload: {\n  %s: %q\n", c.SystemAccount, c.SystemJWT)
	for _, p := range c.Preload {
		fmt.Fprintf(&b, "  %s: %q\n", p.Account, p.JWT)
	}
	fmt.Fprintf(&b, "}\n")
	return []byte(b.String())
}
