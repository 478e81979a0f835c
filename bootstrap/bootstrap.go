// Package bootstrap creates everything a deployment needs from nothing: an
// operator with a separate signing key and strict signing key usage, the
// system account, a least-privilege system user for the provisioner, an
// admin user for sending requests, a nats-server configuration with a full
// resolver, and the provisioner's config.json.
package bootstrap

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// Names of the files Init writes, relative to its directory.
const (
	OperatorJWTFile        = "operator.jwt"
	OperatorSigningKeyFile = "operator-signing.nk"
	SystemAccountJWTFile   = "system-account.jwt"
	ProvisionerCredsFile   = "provisioner.creds"
	AdminCredsFile         = "admin.creds"
	ServerConfFile         = "nats-server.conf"
	ContainerConfFile      = "nats-server.container.conf"
	ConfigFile             = "config.json"
	// OfflineDir holds the identity keys that no running process needs.
	// Move it off the machine once the deployment works.
	OfflineDir               = "OFFLINE-identity-keys"
	OperatorIdentityKeyFile  = OfflineDir + "/operator-identity.nk"
	SystemAccountKeyFile     = OfflineDir + "/system-account-identity.nk"
	SystemAccountSigningFile = OfflineDir + "/system-account-signing.nk"
	ResolverDir              = "jwt"
	StoreDir                 = "store"

	// ContainerDeployDir and ContainerDataDir are where docker-compose.yml
	// mounts the init output and the nats data volume.
	ContainerDeployDir = "/deploy"
	ContainerDataDir   = "/data"
	ContainerPort      = 4222
)

// Options tune Init. The zero value gives a deployment listening on
// 127.0.0.1:4222 that allows deletes.
type Options struct {
	// Dir receives the files. It may exist, but no file Init writes may.
	Dir string
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
		o.SubjectPrefix = "prov"
	}
	if o.ResolverLimit == 0 {
		o.ResolverLimit = 10000
	}
	if o.ServerName == "" {
		o.ServerName = "provisioner-nats"
	}
}

// Result tells what Init made.
type Result struct {
	Dir              string
	Operator         string
	OperatorSigning  string
	SystemAccount    string
	ProvisionerUser  string
	AdminUser        string
	URL              string
	Files            []string // relative to Dir
	ServerConf       string   // absolute paths
	Config           string
	AdminCreds       string
	ProvisionerCreds string
}

// Init writes a new deployment into opts.Dir. It refuses, before writing
// anything, when any file it would write exists.
func Init(opts Options) (*Result, error) {
	opts.setDefaults()
	if opts.Dir == "" {
		return nil, errors.New("bootstrap: a directory is required")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	files := []string{
		OperatorJWTFile, OperatorSigningKeyFile, SystemAccountJWTFile, ProvisionerCredsFile, AdminCredsFile,
		ServerConfFile, ContainerConfFile, ConfigFile,
		OperatorIdentityKeyFile, SystemAccountKeyFile, SystemAccountSigningFile,
	}
	for _, f := range append(files, ResolverDir, StoreDir, OfflineDir) {
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

	provCreds, err := k.user(k.provisioner, "provisioner", ProvisionerPermissions(opts.SubjectPrefix))
	if err != nil {
		return nil, err
	}
	secret(ProvisionerCredsFile, provCreds)
	adminCreds, err := k.user(k.admin, "admin", AdminPermissions(opts.SubjectPrefix))
	if err != nil {
		return nil, err
	}
	secret(AdminCredsFile, adminCreds)

	sc := ServerConf{
		Listen:        net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port)),
		ServerName:    opts.ServerName,
		OperatorJWT:   filepath.Join(dir, OperatorJWTFile),
		SystemAccount: k.pub(k.sysAccount),
		SystemJWT:     sysJWT,
		ResolverDir:   filepath.Join(dir, ResolverDir),
		AllowDelete:   !opts.NoDelete,
		Limit:         opts.ResolverLimit,
	}
	public(ServerConfFile, sc.Render())
	cc := sc
	cc.Listen = net.JoinHostPort("0.0.0.0", strconv.Itoa(ContainerPort))
	cc.OperatorJWT = ContainerDeployDir + "/" + OperatorJWTFile
	cc.ResolverDir = ContainerDataDir + "/" + ResolverDir
	public(ContainerConfFile, cc.Render())

	url := "nats://" + net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port))
	cfg, _ := json.MarshalIndent(map[string]any{
		"nats_url":             url,
		"nats_creds":           ProvisionerCredsFile,
		"operator_jwt":         OperatorJWTFile,
		"operator_signing_key": OperatorSigningKeyFile,
		"store_dir":            StoreDir,
		"subject_prefix":       opts.SubjectPrefix,
		"resolver_timeout":     "5s",
	}, "", "  ")
	public(ConfigFile, append(cfg, '\n'))

	// A directory made here is 0755 (it holds public files too); one that
	// existed keeps its mode.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if err := os.Mkdir(filepath.Join(dir, OfflineDir), 0o700); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	for _, name := range files {
		f := out[name]
		if err := writeNew(filepath.Join(dir, name), f.data, f.perm); err != nil {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
	}
	return &Result{
		Dir:              dir,
		Operator:         k.pub(k.operator),
		OperatorSigning:  k.pub(k.operatorSigning),
		SystemAccount:    k.pub(k.sysAccount),
		ProvisionerUser:  k.pub(k.provisioner),
		AdminUser:        k.pub(k.admin),
		URL:              url,
		Files:            files,
		ServerConf:       filepath.Join(dir, ServerConfFile),
		Config:           filepath.Join(dir, ConfigFile),
		AdminCreds:       filepath.Join(dir, AdminCredsFile),
		ProvisionerCreds: filepath.Join(dir, ProvisionerCredsFile),
	}, nil
}

type fileSpec struct {
	data []byte
	perm os.FileMode
}

// writeNew creates a file that must not exist, with the given mode whatever
// the umask.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ProvisionerPermissions are the least privileges of the provisioner's
// system user: publish only the claims API, account lookups and server
// pings (replies to its own requesters go through allow_responses);
// subscribe only to the provisioning subjects, the micro discovery
// subjects and its inbox.
func ProvisionerPermissions(prefix string) jwt.Permissions {
	return jwt.Permissions{
		Pub: jwt.Permission{Allow: jwt.StringList{
			"$SYS.REQ.CLAIMS.>",
			"$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP",
			"$SYS.REQ.SERVER.PING",
			"$SYS.REQ.SERVER.PING.>",
		}},
		Sub: jwt.Permission{Allow: jwt.StringList{
			prefix + ".>",
			"$SRV.>",
			"_INBOX.>",
		}},
		Resp: &jwt.ResponsePermission{MaxMsgs: 1},
	}
}

// AdminPermissions let an admin send provisioning requests and use the
// micro discovery subjects, and read the replies, nothing more.
func AdminPermissions(prefix string) jwt.Permissions {
	return jwt.Permissions{
		Pub: jwt.Permission{Allow: jwt.StringList{prefix + ".>", "$SRV.>"}},
		Sub: jwt.Permission{Allow: jwt.StringList{"_INBOX.>"}},
	}
}

type keys struct {
	operator, operatorSigning, sysAccount, sysSigning, provisioner, admin nkeys.KeyPair
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
		{&k.provisioner, nkeys.CreateUser},
		{&k.admin, nkeys.CreateUser},
	} {
		kp, err := g.make()
		if err != nil {
			return nil, fmt.Errorf("bootstrap: create key: %w", err)
		}
		*g.kp = kp
	}
	return k, nil
}

func (k *keys) wipe() {
	for _, kp := range []nkeys.KeyPair{k.operator, k.operatorSigning, k.sysAccount, k.sysSigning, k.provisioner, k.admin} {
		if kp != nil {
			kp.Wipe()
		}
	}
}

func (k *keys) pub(kp nkeys.KeyPair) string {
	p, _ := kp.PublicKey()
	return p
}

// user issues a system-account user signed by the system account's signing
// key and returns its creds file.
func (k *keys) user(kp nkeys.KeyPair, name string, perms jwt.Permissions) ([]byte, error) {
	uc := jwt.NewUserClaims(k.pub(kp))
	uc.Name = name
	uc.IssuerAccount = k.pub(k.sysAccount)
	uc.Permissions = perms
	token, err := uc.Encode(k.sysSigning)
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
// resolver.
type ServerConf struct {
	Listen        string
	ServerName    string
	OperatorJWT   string
	SystemAccount string
	SystemJWT     string
	ResolverDir   string
	AllowDelete   bool
	Limit         int
}

// Render writes the configuration in nats-server's format.
func (c ServerConf) Render() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by `provisioner init`. Operator mode with a full account resolver.\n")
	fmt.Fprintf(&b, "server_name: %q\n", c.ServerName)
	fmt.Fprintf(&b, "listen: %q\n\n", c.Listen)
	fmt.Fprintf(&b, "operator: %q\n", c.OperatorJWT)
	fmt.Fprintf(&b, "system_account: %s\n\n", c.SystemAccount)
	fmt.Fprintf(&b, "resolver: {\n  type: full\n  dir: %q\n  allow_delete: %t\n  interval: \"2m\"\n  limit: %d\n}\n\n", c.ResolverDir, c.AllowDelete, c.Limit)
	fmt.Fprintf(&b, "# The system account must be known before the resolver can be asked.\nresolver_preload: {\n  %s: %q\n}\n", c.SystemAccount, c.SystemJWT)
	return []byte(b.String())
}
