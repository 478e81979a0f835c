package e2e

// There is no Docker engine where the tests run, so these tests read
// docker-compose.yml, the Dockerfile and .dockerignore and hold them against
// what `provisioner init` writes: every path a container is given must be
// one that init wrote or a mounted volume, the names, routes and ports must
// agree, and the image must build the command and run it as a non-root
// user. Then the compose deployment is played without Docker: each mount
// becomes a host directory, the three nats-servers start from their
// container configs with paths, host names and ports mapped, and form a
// JetStream cluster that holds the service's bucket with three replicas.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/provtest"
)

// The module root, where docker-compose.yml, the Dockerfile and go.mod are.
const root = ".."

// ---- the compose file ----

// composeFile is the part of the compose format docker-compose.yml may
// use. It is decoded with unknown keys refused, so that the file cannot
// grow beyond what these tests understand unnoticed; top-level keys
// starting with "x-" (extensions, which hold YAML anchors) are allowed.
type composeFile struct {
	Services   map[string]*composeService `yaml:"services"`
	Volumes    map[string]*struct{}       `yaml:"volumes"`
	Extensions map[string]any             `yaml:",inline"`
}

type composeService struct {
	Image     string   `yaml:"image"`
	Build     string   `yaml:"build"`
	Command   []string `yaml:"command"`
	Volumes   []string `yaml:"volumes"`
	Ports     []string `yaml:"ports"`
	DependsOn []string `yaml:"depends_on"`
	Restart   string   `yaml:"restart"`
	// StopGracePeriod is how long Docker waits after SIGTERM before it
	// kills the container.
	StopGracePeriod string `yaml:"stop_grace_period"`
	// Healthcheck runs a command in the container; exit 0 is healthy.
	Healthcheck *struct {
		Test        []string `yaml:"test"`
		Interval    string   `yaml:"interval"`
		Timeout     string   `yaml:"timeout"`
		Retries     int      `yaml:"retries"`
		StartPeriod string   `yaml:"start_period"`
	} `yaml:"healthcheck"`

	mounts []mount
}

// mount is one entry of a service's volumes.
type mount struct {
	source   string // ./deploy, or the name of a named volume
	target   string // the path in the container
	readOnly bool
	named    bool
}

func parseCompose(data []byte) (*composeFile, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c composeFile
	if err := dec.Decode(&c); err != nil {
		return nil, err
	}
	for k := range c.Extensions {
		if !strings.HasPrefix(k, "x-") {
			return nil, fmt.Errorf("unknown top-level key %q", k)
		}
	}
	for name, s := range c.Services {
		if s == nil {
			return nil, fmt.Errorf("service %s is empty", name)
		}
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 || len(parts) > 3 {
				return nil, fmt.Errorf("service %s: volume %q is not SOURCE:TARGET[:MODE]", name, v)
			}
			m := mount{source: parts[0], target: parts[1]}
			if len(parts) == 3 {
				if parts[2] != "ro" && parts[2] != "rw" {
					return nil, fmt.Errorf("service %s: volume %q: unknown mode", name, v)
				}
				m.readOnly = parts[2] == "ro"
			}
			m.named = !strings.HasPrefix(m.source, ".") && !strings.HasPrefix(m.source, "/") && !strings.HasPrefix(m.source, "~")
			if m.named {
				if _, ok := c.Volumes[m.source]; !ok {
					return nil, fmt.Errorf("service %s mounts the named volume %s, which the top-level volumes do not declare", name, m.source)
				}
			}
			if !path.IsAbs(m.target) {
				return nil, fmt.Errorf("service %s: volume target %q is not absolute", name, m.target)
			}
			s.mounts = append(s.mounts, m)
		}
	}
	return &c, nil
}

// The parser takes the compose features docker-compose.yml uses (anchors
// and merge keys among them) and refuses keys it does not know.
func TestParseCompose(t *testing.T) {
	c, err := parseCompose([]byte(`
x-common: &common
  build: .
  volumes: ["./deploy:/deploy:ro"]
services:
  a:
    <<: *common
    command: ["serve"]
  b:
    image: nats:1
    volumes:
      - data:/data
    ports: ["4222:4222"]
volumes:
  data:
`))
	if err != nil {
		t.Fatal(err)
	}
	if a := c.Services["a"]; a.Build != "." || !slices.Equal(a.Command, []string{"serve"}) || len(a.mounts) != 1 || !a.mounts[0].readOnly || a.mounts[0].named {
		t.Errorf("service a: %+v", a)
	}
	if b := c.Services["b"]; len(b.mounts) != 1 || !b.mounts[0].named || b.mounts[0].target != "/data" {
		t.Errorf("service b: %+v", b)
	}
	for _, bad := range []string{
		"services:\n  a:\n    environment: {X: 1}\n",
		"servics:\n  a:\n    image: x\n",
		"services:\n  a:\n    volumes: [\"data:/data\"]\n",
		"services:\n  a:\n    volumes: [\"./x:relative\"]\n",
		"services:\n  a:\n",
		"services:\n  a:\n\tb: c\n",
	} {
		if _, err := parseCompose([]byte(bad)); err == nil {
			t.Errorf("parseCompose(%q) did not fail", bad)
		}
	}
}

func loadCompose(t *testing.T) (*composeFile, string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseCompose(data)
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c, string(data)
}

// natsServices returns the nats services, in node order, and the
// provisioner services, sorted; every service is one or the other.
func (c *composeFile) split(t *testing.T) (natsSvcs []string, provs []string) {
	t.Helper()
	for name, s := range c.Services {
		switch {
		case strings.HasPrefix(s.Image, "nats:"):
			natsSvcs = append(natsSvcs, name)
		case s.Build != "":
			provs = append(provs, name)
		default:
			t.Errorf("docker-compose.yml: service %s is neither nats (image nats:...) nor a provisioner (build)", name)
		}
	}
	slices.Sort(natsSvcs)
	slices.Sort(provs)
	return natsSvcs, provs
}

// mountOf returns the mount a container path is under (the longest match).
func (s *composeService) mountOf(p string) (mount, string, bool) {
	var best mount
	var rel string
	found := false
	for _, m := range s.mounts {
		if p == m.target || strings.HasPrefix(p, strings.TrimSuffix(m.target, "/")+"/") {
			if !found || len(m.target) > len(best.target) {
				best, found = m, true
				rel = strings.TrimPrefix(strings.TrimPrefix(p, m.target), "/")
			}
		}
	}
	return best, rel, found
}

// flagValue returns the value of --name in a command.
func flagValue(cmd []string, name string) (string, bool) {
	for i, a := range cmd {
		if a == "--"+name && i+1 < len(cmd) {
			return cmd[i+1], true
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// world is the compose deployment played on the host: the init output where
// docker compose would find ./deploy, and a directory per named volume.
type world struct {
	composeDir string
	init       *bootstrap.Result
}

// newWorld runs bootstrap.Init as `provisioner init --dir deploy` would,
// next to a stand-in of the compose file's directory.
func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{composeDir: t.TempDir()}
	res, err := bootstrap.Init(bootstrap.Options{Dir: filepath.Join(w.composeDir, "deploy")})
	if err != nil {
		t.Fatal(err)
	}
	w.init = res
	return w
}

// hostPath maps a container path of a service to where it is on the host.
// Named volumes get a directory of their own.
func (w *world) hostPath(t *testing.T, svc string, s *composeService, p string) (string, mount) {
	t.Helper()
	m, rel, ok := s.mountOf(p)
	if !ok {
		t.Fatalf("docker-compose.yml: service %s uses %s, which no volume of it mounts", svc, p)
	}
	if m.named {
		dir := filepath.Join(w.composeDir, "volumes", m.source)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return filepath.Join(dir, filepath.FromSlash(rel)), m
	}
	src := filepath.Join(w.composeDir, filepath.FromSlash(m.source))
	return filepath.Join(src, filepath.FromSlash(rel)), m
}

// mustExist fails unless the container path maps to a file that init wrote.
func (w *world) mustExist(t *testing.T, svc string, s *composeService, p string) string {
	t.Helper()
	hp, m := w.hostPath(t, svc, s, p)
	if m.named {
		t.Errorf("docker-compose.yml: service %s: %s must come from the init output, but it is on the named volume %s", svc, p, m.source)
		return hp
	}
	if _, err := os.Stat(hp); err != nil {
		t.Errorf("docker-compose.yml: service %s: %s maps to %s, which `provisioner init --dir deploy` did not write: %v", svc, p, hp, err)
	}
	return hp
}

func publishedPorts(t *testing.T, s *composeService) map[int]int {
	t.Helper()
	out := map[int]int{} // container port -> host port
	for _, p := range s.Ports {
		parts := strings.Split(strings.TrimSuffix(p, "/tcp"), ":")
		if len(parts) < 2 {
			t.Fatalf("docker-compose.yml: port %q should publish HOST:CONTAINER explicitly", p)
		}
		host, err1 := strconv.Atoi(parts[len(parts)-2])
		ctr, err2 := strconv.Atoi(parts[len(parts)-1])
		if err1 != nil || err2 != nil {
			t.Fatalf("docker-compose.yml: port %q is not HOST:CONTAINER", p)
		}
		out[ctr] = host
	}
	return out
}

func goModVersion(t *testing.T, module string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == module {
			return f[1]
		}
		if len(f) >= 3 && f[0] == "require" && f[1] == module {
			return f[2]
		}
	}
	t.Fatalf("go.mod does not require %s", module)
	return ""
}

// confStrings returns the values of a parsed nats-server config by dotted
// key, such as "jetstream.store_dir".
func confString(m map[string]any, key string) string {
	var v any = m
	for _, k := range strings.Split(key, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = mm[k]
	}
	s, _ := v.(string)
	return s
}

func TestComposeMatchesInit(t *testing.T) {
	c, text := loadCompose(t)
	w := newWorld(t)
	natsSvcs, provs := c.split(t)

	// A provisioner's stop during an outage waits for the requests in
	// flight, a pass's change, the audit queue, the user records and the
	// lease release, and closes its connections: the README promises it
	// fits in 30 s, and tells a container to give it more. A grace period
	// of 20 s (this check's bound before) killed such a stop.
	for _, name := range provs {
		grace, err := time.ParseDuration(c.Services[name].StopGracePeriod)
		if err != nil || grace <= 30*time.Second {
			t.Errorf("docker-compose.yml: service %s has stop_grace_period %q (%v); want more than 30s, the README's bound on a stop", name, c.Services[name].StopGracePeriod, err)
		}
	}

	// Every bind mount is the init output, or a file of it, read-only,
	// where the container configs expect it; the nats nodes get no key,
	// seal key or creds file (nothing they run reads them).
	for name, s := range c.Services {
		for _, m := range s.mounts {
			if m.named {
				continue
			}
			rel, ok := strings.CutPrefix(path.Clean(m.source), "deploy")
			if !ok || (rel != "" && !strings.HasPrefix(rel, "/")) {
				t.Errorf("docker-compose.yml: service %s bind-mounts %s; only ./deploy, the init output, or files of it are expected", name, m.source)
				continue
			}
			if _, err := os.Stat(filepath.Join(w.composeDir, m.source)); err != nil {
				t.Errorf("docker-compose.yml: service %s mounts %s, which init does not write: %v", name, m.source, err)
			}
			if m.target != bootstrap.ContainerDeployDir+rel {
				t.Errorf("docker-compose.yml: service %s mounts %s at %s; the container configs expect it at %s", name, m.source, m.target, bootstrap.ContainerDeployDir+rel)
			}
			if !m.readOnly {
				t.Errorf("docker-compose.yml: service %s mounts %s read-write; the keys should be mounted :ro", name, m.source)
			}
			if strings.HasPrefix(name, "n") && (rel == "" || strings.HasSuffix(rel, ".nk") || strings.HasSuffix(rel, ".xk") || strings.HasSuffix(rel, ".creds")) {
				t.Errorf("docker-compose.yml: nats node %s mounts %s, which holds secrets it does not need", name, m.source)
			}
		}
	}

	// The nats cluster: one service per node, named as the configs name
	// the node (the routes use those names as host names), each with its
	// own config and its own data volume, and its client port published.
	var wantNodes []string
	for n := 1; n <= bootstrap.ClusterSize; n++ {
		wantNodes = append(wantNodes, bootstrap.ContainerNode(n))
	}
	if !slices.Equal(natsSvcs, wantNodes) {
		t.Fatalf("docker-compose.yml: nats services %v, want %v (the cluster init writes configs for)", natsSvcs, wantNodes)
	}
	wantImage := "nats:" + strings.TrimPrefix(goModVersion(t, "github.com/nats-io/nats-server/v2"), "v")
	dataVolumes := map[string]string{}
	hostPorts := map[int]string{}
	for n, name := range natsSvcs {
		s := c.Services[name]
		if s.Image != wantImage {
			t.Errorf("docker-compose.yml: %s image is %q; pin it to %q, the nats-server version the tests run (go.mod)", name, s.Image, wantImage)
		}
		wantConf := bootstrap.ContainerDeployDir + "/" + bootstrap.ContainerConfFile(n+1)
		if !slices.Equal(s.Command, []string{"-c", wantConf}) {
			t.Errorf("docker-compose.yml: %s command is %q, want [-c %s]", name, s.Command, wantConf)
			continue
		}
		confPath := w.mustExist(t, name, s, wantConf)
		sc, err := conf.ParseFile(confPath)
		if err != nil {
			t.Fatalf("%s: %v", bootstrap.ContainerConfFile(n+1), err)
		}
		if got := confString(sc, "server_name"); got != name {
			t.Errorf("%s: server_name %q, but its compose service (and host name) is %s", filepath.Base(confPath), got, name)
		}
		w.mustExist(t, name, s, confString(sc, "operator"))
		for _, key := range []string{"resolver.dir", "jetstream.store_dir"} {
			dir := confString(sc, key)
			m, _, ok := s.mountOf(dir)
			switch {
			case !ok || !m.named || m.readOnly:
				t.Errorf("%s: %s %q must be on a writable named volume of %s (mounts: %v)", filepath.Base(confPath), key, dir, name, s.Volumes)
			case m.target != bootstrap.ContainerDataDir:
				t.Errorf("docker-compose.yml: the data volume of %s is mounted at %s, bootstrap.ContainerDataDir is %s", name, m.target, bootstrap.ContainerDataDir)
			default:
				if other, dup := dataVolumes[m.source]; dup && other != name {
					t.Errorf("docker-compose.yml: %s and %s share the volume %s; each node needs its own store", other, name, m.source)
				}
				dataVolumes[m.source] = name
			}
		}
		host, port, err := net.SplitHostPort(confString(sc, "listen"))
		if err != nil || host != "0.0.0.0" || port != strconv.Itoa(bootstrap.ContainerPort) {
			t.Errorf("%s: listen %q; in a container it must listen on 0.0.0.0:%d", filepath.Base(confPath), confString(sc, "listen"), bootstrap.ContainerPort)
		}
		cl, _ := sc["cluster"].(map[string]any)
		routes, _ := cl["routes"].([]any)
		var routeHosts []string
		for _, r := range routes {
			u, err := url.Parse(fmt.Sprint(r))
			if err != nil || c.Services[u.Hostname()] == nil || u.Port() != strconv.Itoa(bootstrap.ContainerClusterPort) {
				t.Errorf("%s: route %v must be nats://SERVICE:%d with SERVICE a compose service", filepath.Base(confPath), r, bootstrap.ContainerClusterPort)
				continue
			}
			routeHosts = append(routeHosts, u.Hostname())
		}
		if !slices.Equal(routeHosts, natsSvcs) {
			t.Errorf("%s: routes go to %v, want every node %v", filepath.Base(confPath), routeHosts, natsSvcs)
		}
		if confString(sc, "cluster.listen") != net.JoinHostPort("0.0.0.0", strconv.Itoa(bootstrap.ContainerClusterPort)) {
			t.Errorf("%s: cluster listen %q", filepath.Base(confPath), confString(sc, "cluster.listen"))
		}
		hp, ok := publishedPorts(t, s)[bootstrap.ContainerPort]
		if !ok {
			t.Errorf("docker-compose.yml: %s does not publish its client port %d", name, bootstrap.ContainerPort)
		} else if other, dup := hostPorts[hp]; dup {
			t.Errorf("docker-compose.yml: %s and %s both publish host port %d", other, name, hp)
		} else {
			hostPorts[hp] = name
		}
		if _, ok := publishedPorts(t, s)[bootstrap.ContainerClusterPort]; ok {
			t.Errorf("docker-compose.yml: %s publishes the route port %d; it should stay on the compose network", name, bootstrap.ContainerClusterPort)
		}
	}

	// The provisioners: two, the same, built here, connected to every node,
	// with the container config and nothing of their own to write.
	if len(provs) != 2 {
		t.Fatalf("docker-compose.yml: provisioner services %v, want two", provs)
	}
	first := c.Services[provs[0]]
	df := loadDockerfile(t)
	for _, name := range provs {
		s := c.Services[name]
		if path.Clean(s.Build) != "." {
			t.Errorf("docker-compose.yml: %s build is %q, want . (the Dockerfile beside it)", name, s.Build)
		}
		if !slices.Equal(s.Command, first.Command) || !slices.Equal(s.Volumes, first.Volumes) || s.Restart != first.Restart || !slices.Equal(s.DependsOn, first.DependsOn) {
			t.Errorf("docker-compose.yml: %s and %s differ; instances must run the same command with the same config", provs[0], name)
		}
		if d := slices.Sorted(slices.Values(s.DependsOn)); !slices.Equal(d, natsSvcs) {
			t.Errorf("docker-compose.yml: %s depends_on %v, want every nats node %v", name, s.DependsOn, natsSvcs)
		}
		if s.Restart != "on-failure" {
			t.Errorf("docker-compose.yml: %s restart is %q, want on-failure (it exits while the cluster is not up yet)", name, s.Restart)
		}
		for _, m := range s.mounts {
			if m.named || !m.readOnly {
				t.Errorf("docker-compose.yml: %s mounts %s:%s writable; with the KV store a provisioner keeps nothing", name, m.source, m.target)
			}
		}
		if len(s.Ports) > 0 {
			t.Errorf("docker-compose.yml: %s publishes %v; it only connects out", name, s.Ports)
		}
	}
	cmd := first.Command
	if len(cmd) == 0 || cmd[0] != "serve" {
		t.Fatalf("docker-compose.yml: provisioner command %q does not run serve", cmd)
	}
	if _, ok := flagValue(cmd, "store-dir"); ok {
		t.Errorf("docker-compose.yml: provisioner command %q has --store-dir; the instances share the KV store", cmd)
	}
	cfgPath, _ := flagValue(cmd, "config")
	if cfgPath != bootstrap.ContainerDeployDir+"/"+bootstrap.ContainerConfigFile {
		t.Errorf("docker-compose.yml: provisioner --config is %q, want %s", cfgPath, bootstrap.ContainerDeployDir+"/"+bootstrap.ContainerConfigFile)
	}
	if dcfg, _ := flagValue(df.cmd, "config"); dcfg != cfgPath {
		t.Errorf("docker-compose.yml: provisioner --config %s differs from the Dockerfile CMD's %s", cfgPath, dcfg)
	}
	// The healthcheck asks the endpoint serve listens on, in the
	// container, with the image's own binary (distroless has no shell or
	// HTTP client); TestComposeProvisionersWithoutDocker runs it.
	listen, ok := flagValue(cmd, "health-listen")
	if !ok {
		t.Errorf("docker-compose.yml: provisioner command %q has no --health-listen; its healthcheck asks that endpoint", cmd)
	} else if host, _, err := net.SplitHostPort(listen); err != nil || host != "127.0.0.1" {
		t.Errorf("docker-compose.yml: --health-listen %q, want 127.0.0.1:PORT (the healthcheck runs in the container; nothing outside needs it)", listen)
	}
	for _, name := range provs {
		hc := c.Services[name].Healthcheck
		want := slices.Concat([]string{"CMD"}, df.entrypoint, []string{"health", "--url", "http://" + listen + api.HealthPath})
		if hc == nil || !slices.Equal(hc.Test, want) {
			t.Errorf("docker-compose.yml: %s healthcheck %+v, want test %q", name, hc, want)
		}
	}
	hostCfg := w.mustExist(t, provs[0], first, cfgPath)
	if t.Failed() {
		t.FailNow()
	}
	cfg, err := config.Load(hostCfg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StoreKind() != config.StoreJetStream || cfg.KVReplicas != bootstrap.ClusterSize {
		t.Errorf("%s: store %s, kv_replicas %d; want jetstream with %d replicas", bootstrap.ContainerConfigFile, cfg.StoreKind(), cfg.KVReplicas, bootstrap.ClusterSize)
	}
	natsURL, ok := flagValue(cmd, "nats-url")
	if !ok {
		t.Errorf("docker-compose.yml: provisioner command has no --nats-url")
	} else {
		if natsURL != cfg.NATSURL {
			t.Errorf("docker-compose.yml: --nats-url %q differs from %s's nats_url %q", natsURL, bootstrap.ContainerConfigFile, cfg.NATSURL)
		}
		var hosts []string
		for _, raw := range strings.Split(natsURL, ",") {
			u, err := url.Parse(raw)
			if err != nil || u.Scheme != "nats" || c.Services[u.Hostname()] == nil || u.Port() != strconv.Itoa(bootstrap.ContainerPort) {
				t.Errorf("docker-compose.yml: --nats-url %q must list nats://SERVICE:%d with SERVICE a compose service", raw, bootstrap.ContainerPort)
				continue
			}
			hosts = append(hosts, u.Hostname())
		}
		if !slices.Equal(hosts, natsSvcs) {
			t.Errorf("docker-compose.yml: --nats-url names %v, want every node %v", hosts, natsSvcs)
		}
	}

	// The header: the first steps, runnable; the files the provisioners
	// read that are 0600 are named in the chown.
	if !strings.Contains(text, "provisioner init --dir deploy") {
		t.Errorf("docker-compose.yml: the comment should say to run `provisioner init --dir deploy` first")
	}
	chown := regexp.MustCompile(`chown (\d+):(\d+) (.*)`).FindStringSubmatch(text)
	if chown == nil {
		t.Fatalf("docker-compose.yml: the comment should give the chown of the provisioner's secret files")
	}
	if chown[1]+":"+chown[2] != df.user {
		t.Errorf("docker-compose.yml: the comment chowns to %s:%s, the image runs as %s", chown[1], chown[2], df.user)
	}
	hostDeploy := filepath.Dir(hostCfg)
	for _, f := range []string{cfg.NATSCreds, cfg.ServiceCreds, cfg.OperatorJWT, cfg.OperatorSigningKey, cfg.SealKey} {
		rel, err := filepath.Rel(hostDeploy, f)
		if err != nil || strings.HasPrefix(rel, "..") {
			t.Errorf("%s names %s, outside the deploy dir", bootstrap.ContainerConfigFile, f)
			continue
		}
		fi, err := os.Stat(f)
		if err != nil {
			t.Errorf("%s names %s, which init did not write: %v", bootstrap.ContainerConfigFile, rel, err)
			continue
		}
		if fi.Mode().Perm()&0o004 == 0 && !slices.Contains(strings.Fields(chown[3]), "deploy/"+filepath.ToSlash(rel)) {
			t.Errorf("docker-compose.yml: %s is mode %v, so the provisioner (uid %s) cannot read it, and the chown in the comment does not name it", rel, fi.Mode().Perm(), df.user)
		}
	}
	try := regexp.MustCompile(`nats --server (\S+) --creds (\S+) (.*)request`).FindStringSubmatch(text)
	if try == nil {
		t.Fatalf("docker-compose.yml: the comment should show a nats request to try")
	}
	if !strings.Contains(try[3], "--inbox-prefix "+bootstrap.AdminInboxPrefix) {
		t.Errorf("docker-compose.yml: the nats line lacks --inbox-prefix %s; admin.creds cannot read replies on _INBOX.", bootstrap.AdminInboxPrefix)
	}
	if try[2] != "deploy/"+bootstrap.AdminCredsFile {
		t.Errorf("docker-compose.yml: the nats line uses %s, want deploy/%s", try[2], bootstrap.AdminCredsFile)
	}
	if u, err := url.Parse(try[1]); err != nil || u.Hostname() != "127.0.0.1" || hostPorts[mustAtoi(u.Port())] == "" {
		t.Errorf("docker-compose.yml: the nats line connects to %s, which no nats service publishes (%v)", try[1], hostPorts)
	}
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// ---- the Dockerfile ----

type dockerfile struct {
	stages     [][]instruction
	entrypoint []string
	cmd        []string
	user       string // uid:gid of the final stage
	storeDir   string // the directory copied --chown'ed to the user
}

type instruction struct {
	op   string
	args string
}

func loadDockerfile(t *testing.T) *dockerfile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var ins []instruction
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || (l == "" && cur.Len() == 0) {
			continue
		}
		if s, ok := strings.CutSuffix(l, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(l)
		op, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		ins = append(ins, instruction{strings.ToUpper(op), strings.TrimSpace(args)})
		cur.Reset()
	}
	d := &dockerfile{}
	for _, in := range ins {
		if in.op == "FROM" {
			d.stages = append(d.stages, nil)
		}
		if len(d.stages) == 0 {
			if in.op != "ARG" {
				t.Fatalf("Dockerfile: %s before the first FROM", in.op)
			}
			continue
		}
		d.stages[len(d.stages)-1] = append(d.stages[len(d.stages)-1], in)
	}
	if len(d.stages) == 0 {
		t.Fatal("Dockerfile has no FROM")
	}
	for _, in := range d.stages[len(d.stages)-1] {
		switch in.op {
		case "CMD":
			if err := json.Unmarshal([]byte(in.args), &d.cmd); err != nil {
				t.Fatalf("Dockerfile: CMD %s is not the JSON (exec) form: %v", in.args, err)
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.args), &d.entrypoint); err != nil {
				t.Fatalf("Dockerfile: ENTRYPOINT %s is not the JSON (exec) form: %v", in.args, err)
			}
		case "USER":
			d.user = in.args
		case "COPY":
			if strings.Contains(in.args, "--chown=") {
				f := strings.Fields(in.args)
				d.storeDir = f[len(f)-1]
			}
		}
	}
	return d
}

func TestDockerfile(t *testing.T) {
	d := loadDockerfile(t)
	if len(d.stages) < 2 {
		t.Fatalf("Dockerfile has %d stage(s); it must be multi-stage (build, then a minimal runtime)", len(d.stages))
	}
	from := func(stage []instruction) []string { return strings.Fields(stage[0].args) }

	// The build stage: the Go of go.mod, static, ./cmd/provisioner.
	build := d.stages[0]
	bf := from(build)
	goVer := goModVersion(t, "go")
	if mm := strings.Join(strings.SplitN(goVer, ".", 3)[:2], "."); bf[0] != "golang:"+mm {
		t.Errorf("Dockerfile: the build stage is FROM %s, want golang:%s (go.mod says go %s)", bf[0], mm, goVer)
	}
	if len(bf) != 3 || !strings.EqualFold(bf[1], "AS") {
		t.Fatalf("Dockerfile: the build stage must be named: FROM %s", build[0].args)
	}
	stageName := bf[2]
	var buildCmd, env string
	for _, in := range build {
		switch in.op {
		case "RUN":
			if strings.Contains(in.args, "go build") {
				buildCmd = in.args
			}
		case "ENV":
			env += " " + in.args
		}
	}
	if buildCmd == "" {
		t.Fatal("Dockerfile: the build stage runs no go build")
	}
	if !regexp.MustCompile(`go build .*\./cmd/provisioner(\s|$)`).MatchString(buildCmd) {
		t.Errorf("Dockerfile: %q does not build ./cmd/provisioner", buildCmd)
	}
	if !strings.Contains(buildCmd+env, "CGO_ENABLED=0") {
		t.Errorf("Dockerfile: the build is not CGO_ENABLED=0; the binary must be static for distroless/static")
	}
	if !strings.Contains(buildCmd, "-trimpath") {
		t.Errorf("Dockerfile: go build without -trimpath")
	}
	out := regexp.MustCompile(`-o\s+(\S+)`).FindStringSubmatch(buildCmd)
	if out == nil {
		t.Fatalf("Dockerfile: %q has no -o", buildCmd)
	}

	// The runtime stage: distroless, non-root, the binary as entrypoint.
	final := d.stages[len(d.stages)-1]
	if img := from(final)[0]; !strings.HasPrefix(img, "gcr.io/distroless/static") || !strings.HasSuffix(img, ":nonroot") {
		t.Errorf("Dockerfile: the final stage is FROM %s, want gcr.io/distroless/static-...:nonroot", img)
	}
	uid, _, _ := strings.Cut(d.user, ":")
	if n, err := strconv.Atoi(uid); d.user == "" || uid == "root" || (err == nil && n == 0) || err != nil {
		t.Errorf("Dockerfile: the final stage runs as USER %q; it must be a numeric non-root uid[:gid]", d.user)
	}
	var entry []string
	copied := map[string]string{} // destination -> instruction
	for _, in := range final {
		switch in.op {
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.args), &entry); err != nil {
				t.Errorf("Dockerfile: ENTRYPOINT %s is not the JSON (exec) form", in.args)
			}
		case "COPY":
			f := strings.Fields(in.args)
			copied[f[len(f)-1]] = in.args
		}
	}
	if len(entry) != 1 {
		t.Fatalf("Dockerfile: ENTRYPOINT %q should be the binary alone", entry)
	}
	if c, ok := copied[entry[0]]; !ok || !strings.Contains(c, "--from="+stageName) || !strings.Contains(c, " "+out[1]+" ") {
		t.Errorf("Dockerfile: the ENTRYPOINT %s is not the binary the build stage writes to %s (COPY %s)", entry[0], out[1], c)
	}
	// A file store deployment mounts a volume at the store dir; it must
	// start out owned by the user.
	if d.storeDir == "" {
		t.Errorf("Dockerfile: no directory is copied --chown'ed to the user for the file store")
	} else if c := copied[d.storeDir]; !strings.Contains(c, "--chown="+d.user) {
		t.Errorf("Dockerfile: the store dir %s is not owned by the USER %s: COPY %s", d.storeDir, d.user, c)
	}
	if len(d.cmd) == 0 || d.cmd[0] != "serve" {
		t.Errorf("Dockerfile: CMD %q does not run serve", d.cmd)
	}
	if v, _ := flagValue(d.cmd, "config"); v != bootstrap.ContainerDeployDir+"/"+bootstrap.ContainerConfigFile {
		t.Errorf("Dockerfile: CMD --config is %q, want %s", v, bootstrap.ContainerDeployDir+"/"+bootstrap.ContainerConfigFile)
	}
	if v, ok := flagValue(d.cmd, "store-dir"); ok && v != d.storeDir {
		t.Errorf("Dockerfile: CMD --store-dir is %q, the image makes %s for the store", v, d.storeDir)
	}
}

func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatalf("a .dockerignore must keep the deploy dir's keys out of the build context: %v", err)
	}
	var pats []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			pats = append(pats, strings.TrimSuffix(strings.TrimPrefix(l, "/"), "/"))
		}
	}
	for _, want := range []string{"deploy", "provisioner-dev", "**/*.creds", "**/*.nk", "**/*.xk", ".git"} {
		if !slices.Contains(pats, want) {
			t.Errorf(".dockerignore does not exclude %s (it has %v)", want, pats)
		}
	}
	// Every secret file init writes matches one of them.
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Files {
		fi, err := os.Stat(filepath.Join(res.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o044 != 0 {
			continue
		}
		ignored := false
		for _, p := range pats {
			if ok, _ := path.Match(strings.TrimPrefix(p, "**/"), path.Base(f)); ok || strings.HasPrefix(f, bootstrap.OfflineDir) {
				ignored = true
			}
		}
		if !ignored {
			t.Errorf(".dockerignore lets the secret file %s into a build context", f)
		}
	}
}

// cluster is the compose file's nats cluster played on the host.
type cluster struct {
	w       *world
	c       *composeFile
	servers map[string]*natsembed.Server // by service name
	ports   map[string]int               // "n1:4222" -> host port
	confs   map[string]string            // mapped config per service
}

// mapAddr maps a SERVICE:PORT address of the compose network to the host.
func (cl *cluster) mapAddr(t *testing.T, host string, port int) string {
	t.Helper()
	key := host + ":" + strconv.Itoa(port)
	p, ok := cl.ports[key]
	if !ok {
		p = provtest.FreePort(t)
		cl.ports[key] = p
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
}

// mapURLs maps comma-separated nats://SERVICE:PORT URLs to the host.
func (cl *cluster) mapURLs(t *testing.T, urls string) string {
	t.Helper()
	var out []string
	for _, raw := range strings.Split(urls, ",") {
		u, err := url.Parse(raw)
		if err != nil || cl.c.Services[u.Hostname()] == nil {
			t.Fatalf("%q does not name a compose service", raw)
		}
		u.Host = cl.mapAddr(t, u.Hostname(), mustAtoi(u.Port()))
		out = append(out, u.String())
	}
	return strings.Join(out, ",")
}

// startCluster starts the nats services of docker-compose.yml from their
// container configs, with every container path mapped to the directory
// its mount stands for, every address of the compose network to a port of
// 127.0.0.1, and the listen addresses to the same ports.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	return startClusterTry(t, 1)
}

// startClusterTry is startCluster's try number try: the ports mapped are
// free when chosen, but another test's connection may take one before its
// node listens on it ("address already in use"), and then every port is
// chosen again, three tries at most.
func startClusterTry(t *testing.T, try int) *cluster {
	t.Helper()
	c, _ := loadCompose(t)
	cl := &cluster{w: newWorld(t), c: c, servers: map[string]*natsembed.Server{}, ports: map[string]int{}, confs: map[string]string{}}
	natsSvcs, _ := c.split(t)
	quoted := regexp.MustCompile(`"[^"]*"`)
	for _, name := range natsSvcs {
		s := c.Services[name]
		if len(s.Command) != 2 || s.Command[0] != "-c" {
			t.Fatalf("docker-compose.yml: %s command %q is not -c CONF", name, s.Command)
		}
		confPath := cl.w.mustExist(t, name, s, s.Command[1])
		if t.Failed() {
			t.FailNow()
		}
		text, err := os.ReadFile(confPath)
		if err != nil {
			t.Fatal(err)
		}
		mapped := quoted.ReplaceAllStringFunc(string(text), func(q string) string {
			v, _ := strconv.Unquote(q)
			switch {
			case strings.HasPrefix(v, "/"):
				hp, _ := cl.w.hostPath(t, name, s, v)
				return strconv.Quote(hp)
			case strings.HasPrefix(v, "0.0.0.0:"):
				// This node's own listen address.
				return strconv.Quote(cl.mapAddr(t, name, mustAtoi(strings.TrimPrefix(v, "0.0.0.0:"))))
			case strings.HasPrefix(v, "nats://"):
				return strconv.Quote(cl.mapURLs(t, v))
			}
			return q
		})
		p := filepath.Join(t.TempDir(), name+".conf")
		if err := os.WriteFile(p, []byte(mapped), 0o600); err != nil {
			t.Fatal(err)
		}
		cl.confs[name] = p
	}
	for _, name := range natsSvcs {
		srv, err := natsembed.Start(cl.confs[name], natsembed.Options{})
		if err != nil && strings.Contains(err.Error(), "address already in use") && try < 3 {
			t.Logf("%s: a port chosen for the played cluster was taken meanwhile (%v); choosing again", name, err)
			for _, started := range cl.servers {
				started.Stop()
			}
			return startClusterTry(t, try+1)
		}
		if err != nil {
			t.Fatalf("%s does not start from its container config (paths mapped): %v", name, err)
		}
		cl.servers[name] = srv
		t.Cleanup(srv.Stop)
	}
	return cl
}

// waitJetStream waits until the played cluster's JetStream answers the
// service user at url: its meta leader is elected.
func (cl *cluster) waitJetStream(t *testing.T, url string) {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserCredentials(cl.w.init.ServiceCreds), nats.CustomInboxPrefix(bootstrap.ServiceInboxPrefix))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the played cluster's JetStream does not answer within 60s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestComposeClusterWithoutDocker plays the compose file's nats cluster on
// the host: the three nodes form a JetStream cluster, the service user
// makes its bucket there with the replicas config.container.json asks for,
// and the bucket takes writes with a node down.
func TestComposeClusterWithoutDocker(t *testing.T) {
	cl := startCluster(t)
	_, provs := cl.c.split(t)
	prov := cl.c.Services[provs[0]]
	cfgPath, _ := flagValue(prov.Command, "config")
	hostCfg, _ := cl.w.hostPath(t, provs[0], prov, cfgPath)
	cfg, err := config.Load(hostCfg)
	if err != nil {
		t.Fatal(err)
	}
	natsURL, _ := flagValue(prov.Command, "nats-url")
	urls := cl.mapURLs(t, natsURL)

	nc, err := nats.Connect(urls, nats.UserCredentials(cfg.ServiceCreds), nats.CustomInboxPrefix(bootstrap.ServiceInboxPrefix), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The cluster elects its JetStream leader after the routes are up.
	var kv jetstream.KeyValue
	for {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		kv, err = js.CreateKeyValue(c, jetstream.KeyValueConfig{Bucket: cfg.KVBucket, Replicas: cfg.Replicas(0)})
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the played cluster does not take the bucket %s with %d replicas: %v", cfg.KVBucket, cfg.Replicas(0), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info := st.(*jetstream.KeyValueBucketStatus).StreamInfo()
	if info.Config.Replicas != bootstrap.ClusterSize || info.Cluster == nil || len(info.Cluster.Replicas) != bootstrap.ClusterSize-1 {
		t.Fatalf("the bucket has %d replicas (cluster %+v), want %d", info.Config.Replicas, info.Cluster, bootstrap.ClusterSize)
	}
	if _, err := kv.Put(ctx, "before", []byte("1")); err != nil {
		t.Fatal(err)
	}

	// A node down, the stream leader's at worst: writes go on once the
	// other two elect a new leader.
	leader := info.Cluster.Leader
	cl.servers[leader].Stop()
	for {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := kv.Put(c, "after", []byte("2"))
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no write with %s down: %v", leader, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if e, err := kv.Get(ctx, "before"); err != nil || string(e.Value()) != "1" {
		t.Errorf("with %s down the earlier write reads %v %v", leader, e, err)
	}
}

// TestComposeProvisionersWithoutDocker runs both provisioners of the
// compose file, as the binary with the compose command mapped, against the
// played cluster: both answer, and what one makes the other sees.
func TestComposeProvisionersWithoutDocker(t *testing.T) {
	cl := startCluster(t)
	_, provs := cl.c.split(t)
	bin := provisionerBinary(t)
	healthURL := map[string]string{}
	// healthy runs the healthcheck of service name, its endpoint mapped as
	// run mapped it, and reports whether it exits 0.
	healthy := func(name string) (bool, string) {
		t.Helper()
		test := cl.c.Services[name].Healthcheck.Test
		args := slices.Clone(test[2:]) // CMD /provisioner ...
		for i := range args {
			if i > 0 && args[i-1] == "--url" {
				args[i] = healthURL[name]
			}
		}
		out, err := exec.Command(bin, args...).CombinedOutput()
		return err == nil, string(out)
	}
	// run starts the provisioner service name as compose would.
	run := func(name string) *proc {
		s := cl.c.Services[name]
		args := slices.Clone(s.Command)
		for i, a := range args {
			switch {
			case i > 0 && args[i-1] == "--nats-url":
				args[i] = cl.mapURLs(t, a)
			case i > 0 && args[i-1] == "--health-listen":
				// Each container has its own loopback; here they share one.
				args[i] = fmt.Sprintf("127.0.0.1:%d", provtest.FreePort(t))
				healthURL[name] = "http://" + args[i] + api.HealthPath
			case strings.HasPrefix(a, "/"):
				args[i], _ = cl.w.hostPath(t, name, s, a)
			}
		}
		return start(t, t.Context(), name, os.Environ(), bin, args...)
	}
	n1 := cl.servers[bootstrap.ContainerNode(1)]
	// Until the cluster has elected its JetStream leader a provisioner
	// exits non-zero, and compose starts it again (restart: on-failure);
	// the played cluster waits for the leader instead.
	cl.waitJetStream(t, n1.URL())
	admin, err := nats.Connect(n1.URL(), nats.UserCredentials(cl.w.init.AdminCreds), nats.CustomInboxPrefix(bootstrap.AdminInboxPrefix))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	// waitInstances waits until n instances answer $SRV.PING.
	waitInstances := func(n int, procs ...*proc) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			inbox := admin.NewInbox()
			sub, err := admin.SubscribeSync(inbox)
			if err != nil {
				t.Fatal(err)
			}
			admin.PublishRequest("$SRV.PING.provisioner", inbox, nil)
			got := 0
			for {
				if _, err := sub.NextMsg(300 * time.Millisecond); err != nil {
					break
				}
				got++
			}
			sub.Unsubscribe()
			if got == n {
				return
			}
			for _, p := range procs {
				if p.exited() {
					t.Fatalf("%s exited: %v\n%s", p.name, p.err, p.out.String())
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d provisioners answer $SRV.PING, want %d", got, n)
			}
		}
	}
	ok := func(subject, body string) {
		t.Helper()
		m, err := admin.Request(subject, []byte(body), 20*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		if code := m.Header.Get("Nats-Service-Error-Code"); code != "" {
			t.Fatalf("%s: %s %s", subject, code, m.Data)
		}
	}

	a, b := run(provs[0]), run(provs[1])
	waitInstances(2, a, b)
	// An instance answers $SRV.PING a moment before its start is done
	// (its health says starting until then): retried, as Docker does.
	for _, name := range provs {
		deadline := time.Now().Add(15 * time.Second)
		for {
			ok, out := healthy(name)
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s serves, but its healthcheck fails: %s", name, out)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// Made through the one, read through the other, both ways.
	if err := a.stop(5 * time.Second); err != nil {
		t.Fatalf("%s after SIGTERM: %v", provs[0], err)
	}
	waitInstances(1, b)
	ok("prov.account.create", `{"name":"by-b"}`)
	a = run(provs[0])
	waitInstances(2, a, b)
	if err := b.stop(5 * time.Second); err != nil {
		t.Fatalf("%s after SIGTERM: %v", provs[1], err)
	}
	waitInstances(1, a)
	ok("prov.account.get", `{"account":"by-b"}`)
	ok("prov.account.create", `{"name":"by-a"}`)
	b = run(provs[1])
	waitInstances(2, a, b)
	if err := a.stop(5 * time.Second); err != nil {
		t.Fatalf("%s after SIGTERM: %v", provs[0], err)
	}
	waitInstances(1, b)
	if ok, out := healthy(provs[0]); ok {
		t.Errorf("%s is stopped, but its healthcheck passes: %s", provs[0], out)
	}
	ok("prov.account.get", `{"account":"by-a"}`)
	if err := b.stop(5 * time.Second); err != nil {
		t.Fatalf("%s after SIGTERM: %v", provs[1], err)
	}
}
