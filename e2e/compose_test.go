package e2e

// There is no Docker engine where the tests run, so these tests read
// docker-compose.yml, the Dockerfile and .dockerignore and hold them against
// what `provisioner init` writes: every path a container is given must be
// one that init wrote or a mounted volume, the ports must agree, and the
// image must build the command and run it as a non-root user. Then the
// compose deployment is played without Docker: each mount becomes a host
// directory, nats-server starts from the container config with its paths
// mapped, and the provisioner binary runs with the compose command, its
// paths and the service's host name mapped the same way.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
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

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/natsembed"
)

// The module root, where docker-compose.yml, the Dockerfile and go.mod are.
const root = ".."

// ---- a tiny YAML reader, enough for docker-compose.yml ----

// parseYAML reads the block-style subset of YAML that docker-compose.yml
// uses: nested mappings, sequences of scalars, flow sequences of quoted
// strings, plain and quoted scalars, comments. Anything else is an error,
// so the file cannot grow beyond what the tests understand unnoticed.
func parseYAML(src string) (map[string]any, error) {
	var lines []yamlLine
	for n, raw := range strings.Split(src, "\n") {
		text := strings.TrimRight(stripComment(raw), " \r")
		if strings.TrimSpace(text) == "" {
			continue
		}
		body := strings.TrimLeft(text, " ")
		if strings.HasPrefix(body, "\t") {
			return nil, fmt.Errorf("line %d: tab in indentation", n+1)
		}
		lines = append(lines, yamlLine{indent: len(text) - len(body), text: body, num: n + 1})
	}
	if len(lines) == 0 {
		return map[string]any{}, nil
	}
	if lines[0].indent != 0 {
		return nil, fmt.Errorf("line %d: the document must start at column 0", lines[0].num)
	}
	v, i, err := parseYAMLMap(lines, 0, 0)
	if err != nil {
		return nil, err
	}
	if i != len(lines) {
		return nil, fmt.Errorf("line %d: unexpected indentation", lines[i].num)
	}
	return v, nil
}

type yamlLine struct {
	indent int
	text   string
	num    int
}

// stripComment removes a # comment that is not inside quotes.
func stripComment(s string) string {
	var quote rune
	for i, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '"' || r == '\'':
			quote = r
		case r == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t'):
			return s[:i]
		}
	}
	return s
}

func isSeqItem(s string) bool { return s == "-" || strings.HasPrefix(s, "- ") }

var yamlKey = regexp.MustCompile(`^([A-Za-z0-9_.-]+):(?: +(.*))?$`)

func parseYAMLMap(ls []yamlLine, i, indent int) (map[string]any, int, error) {
	m := map[string]any{}
	for i < len(ls) && ls[i].indent == indent && !isSeqItem(ls[i].text) {
		l := ls[i]
		sub := yamlKey.FindStringSubmatch(l.text)
		if sub == nil {
			return nil, i, fmt.Errorf("line %d: %q is not a \"key: value\" line", l.num, l.text)
		}
		key, rest := sub[1], strings.TrimSpace(sub[2])
		if _, dup := m[key]; dup {
			return nil, i, fmt.Errorf("line %d: duplicate key %q", l.num, key)
		}
		i++
		var v any
		var err error
		switch {
		case rest != "":
			v, err = yamlScalar(rest, l.num)
		case i < len(ls) && ls[i].indent > indent:
			if isSeqItem(ls[i].text) {
				v, i, err = parseYAMLSeq(ls, i, ls[i].indent)
			} else {
				v, i, err = parseYAMLMap(ls, i, ls[i].indent)
			}
		case i < len(ls) && ls[i].indent == indent && isSeqItem(ls[i].text):
			v, i, err = parseYAMLSeq(ls, i, indent)
		}
		if err != nil {
			return nil, i, err
		}
		m[key] = v
	}
	if i < len(ls) && ls[i].indent > indent {
		return nil, i, fmt.Errorf("line %d: unexpected indentation", ls[i].num)
	}
	return m, i, nil
}

func parseYAMLSeq(ls []yamlLine, i, indent int) ([]any, int, error) {
	var out []any
	for i < len(ls) && ls[i].indent == indent && isSeqItem(ls[i].text) {
		l := ls[i]
		item := strings.TrimSpace(strings.TrimPrefix(l.text, "-"))
		if item == "" || yamlKey.MatchString(item) {
			return nil, i, fmt.Errorf("line %d: only sequences of scalars are supported", l.num)
		}
		v, err := yamlScalar(item, l.num)
		if err != nil {
			return nil, i, err
		}
		out = append(out, v)
		i++
	}
	if i < len(ls) && ls[i].indent > indent {
		return nil, i, fmt.Errorf("line %d: unexpected indentation", ls[i].num)
	}
	return out, i, nil
}

func yamlScalar(s string, num int) (any, error) {
	switch {
	case strings.HasPrefix(s, "["):
		var list []string
		if err := json.Unmarshal([]byte(s), &list); err != nil {
			return nil, fmt.Errorf("line %d: only flow sequences of double-quoted strings are supported: %v", num, err)
		}
		out := make([]any, len(list))
		for i, v := range list {
			out[i] = v
		}
		return out, nil
	case strings.HasPrefix(s, `"`):
		v, err := strconv.Unquote(s)
		if err != nil {
			return nil, fmt.Errorf("line %d: bad double-quoted string %s", num, s)
		}
		return v, nil
	case strings.HasPrefix(s, "'"):
		if len(s) < 2 || !strings.HasSuffix(s, "'") {
			return nil, fmt.Errorf("line %d: bad single-quoted string %s", num, s)
		}
		return strings.ReplaceAll(s[1:len(s)-1], "''", "'"), nil
	case strings.ContainsAny(s[:1], "{&*!|>%@`"):
		return nil, fmt.Errorf("line %d: unsupported YAML %q", num, s)
	}
	return s, nil
}

func TestParseYAML(t *testing.T) {
	got, err := parseYAML(`# comment
a:
  b: "x # not a comment" # a comment
  c: ["-c", "/d"]
  d:
    - one
    - 'two'
  e:
  - three
f: g:h
empty:
`)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"a":{"b":"x # not a comment","c":["-c","/d"],"d":["one","two"],"e":["three"]},"empty":null,"f":"g:h"}`
	if b, _ := json.Marshal(got); string(b) != want {
		t.Fatalf("got %s\nwant %s", b, want)
	}
	for _, bad := range []string{"a:\n\tb: c\n", "a: {b: c}\n", "a:\n  - b: c\n", "a: b\na: c\n", "a:\n  b: c\n    d: e\n", "just text\n"} {
		if _, err := parseYAML(bad); err == nil {
			t.Errorf("parseYAML(%q) did not fail", bad)
		}
	}
}

// ---- the compose file ----

type composeFile struct {
	Services map[string]*composeService `json:"services"`
	Volumes  map[string]any             `json:"volumes"`
}

type composeService struct {
	Image     string   `json:"image"`
	Build     string   `json:"build"`
	Command   []string `json:"command"`
	Volumes   []string `json:"volumes"`
	Ports     []string `json:"ports"`
	DependsOn []string `json:"depends_on"`
	Restart   string   `json:"restart"`

	mounts []mount
}

// mount is one entry of a service's volumes.
type mount struct {
	source   string // ./deploy, or the name of a named volume
	target   string // the path in the container
	readOnly bool
	named    bool
}

func loadCompose(t *testing.T) (*composeFile, string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := parseYAML(string(data))
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	js, _ := json.Marshal(doc)
	var c composeFile
	if err := json.Unmarshal(js, &c); err != nil {
		t.Fatalf("docker-compose.yml does not have the expected shape: %v", err)
	}
	for name, s := range c.Services {
		if s == nil {
			t.Fatalf("docker-compose.yml: service %s is empty", name)
		}
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 || len(parts) > 3 {
				t.Fatalf("docker-compose.yml: service %s: volume %q is not SOURCE:TARGET[:MODE]", name, v)
			}
			m := mount{source: parts[0], target: parts[1]}
			if len(parts) == 3 {
				if parts[2] != "ro" && parts[2] != "rw" {
					t.Fatalf("docker-compose.yml: service %s: volume %q: unknown mode", name, v)
				}
				m.readOnly = parts[2] == "ro"
			}
			m.named = !strings.HasPrefix(m.source, ".") && !strings.HasPrefix(m.source, "/") && !strings.HasPrefix(m.source, "~")
			if m.named {
				if _, ok := c.Volumes[m.source]; !ok {
					t.Errorf("docker-compose.yml: service %s mounts the named volume %s, which the top-level volumes do not declare", name, m.source)
				}
			}
			if !path.IsAbs(m.target) {
				t.Errorf("docker-compose.yml: service %s: volume target %q is not absolute", name, m.target)
			}
			s.mounts = append(s.mounts, m)
		}
	}
	return &c, string(data)
}

func (c *composeFile) service(t *testing.T, name string) *composeService {
	t.Helper()
	s := c.Services[name]
	if s == nil {
		t.Fatalf("docker-compose.yml has no service %q", name)
	}
	return s
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

// flag returns the value of --name in a command.
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
// Bind mounts must name something init wrote; named volumes get a
// directory of their own.
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

func TestComposeMatchesInit(t *testing.T) {
	c, text := loadCompose(t)
	w := newWorld(t)
	natsSvc := c.service(t, "nats")
	prov := c.service(t, "provisioner")

	// Every bind mount is the init output, read-only.
	for name, s := range c.Services {
		for _, m := range s.mounts {
			if m.named {
				continue
			}
			if path.Clean(m.source) != "deploy" {
				t.Errorf("docker-compose.yml: service %s bind-mounts %s; only ./deploy, the init output, is expected", name, m.source)
			}
			if fi, err := os.Stat(filepath.Join(w.composeDir, m.source)); err != nil || !fi.IsDir() {
				t.Errorf("docker-compose.yml: service %s mounts %s, which is not the directory init writes: %v", name, m.source, err)
			}
			if m.target != bootstrap.ContainerDeployDir {
				t.Errorf("docker-compose.yml: service %s mounts %s at %s; the container config expects it at %s", name, m.source, m.target, bootstrap.ContainerDeployDir)
			}
			if !m.readOnly {
				t.Errorf("docker-compose.yml: service %s mounts %s read-write; the keys should be mounted :ro", name, m.source)
			}
		}
	}

	// nats: the image, the container config, its paths and port.
	wantImage := "nats:" + strings.TrimPrefix(goModVersion(t, "github.com/nats-io/nats-server/v2"), "v")
	if natsSvc.Image != wantImage {
		t.Errorf("docker-compose.yml: nats image is %q; pin it to %q, the nats-server version the tests run (go.mod)", natsSvc.Image, wantImage)
	}
	wantConf := bootstrap.ContainerDeployDir + "/" + bootstrap.ContainerConfFile
	if !slices.Equal(natsSvc.Command, []string{"-c", wantConf}) {
		t.Errorf("docker-compose.yml: nats command is %q, want [-c %s]", natsSvc.Command, wantConf)
	}
	confPath := w.mustExist(t, "nats", natsSvc, wantConf)
	if t.Failed() {
		t.FailNow()
	}
	sc, err := conf.ParseFile(confPath)
	if err != nil {
		t.Fatalf("%s: %v", bootstrap.ContainerConfFile, err)
	}
	op, _ := sc["operator"].(string)
	if op != bootstrap.ContainerDeployDir+"/"+bootstrap.OperatorJWTFile {
		t.Errorf("%s: operator is %q, want %s", bootstrap.ContainerConfFile, op, bootstrap.ContainerDeployDir+"/"+bootstrap.OperatorJWTFile)
	}
	w.mustExist(t, "nats", natsSvc, op)
	res, _ := sc["resolver"].(map[string]any)
	rdir, _ := res["dir"].(string)
	if m, _, ok := natsSvc.mountOf(rdir); !ok || !m.named || m.readOnly {
		t.Errorf("%s: the resolver dir %q must be on a writable named volume of the nats service (mounts: %v)", bootstrap.ContainerConfFile, rdir, natsSvc.Volumes)
	} else if m.target != bootstrap.ContainerDataDir {
		t.Errorf("docker-compose.yml: the nats data volume is mounted at %s, bootstrap.ContainerDataDir is %s", m.target, bootstrap.ContainerDataDir)
	}
	listen, _ := sc["listen"].(string)
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatalf("%s: listen %q: %v", bootstrap.ContainerConfFile, listen, err)
	}
	if host != "0.0.0.0" {
		t.Errorf("%s: listens on %s; in a container it must listen on 0.0.0.0", bootstrap.ContainerConfFile, listen)
	}
	if port, _ := strconv.Atoi(portStr); port != bootstrap.ContainerPort {
		t.Errorf("%s: listens on port %d, bootstrap.ContainerPort is %d", bootstrap.ContainerConfFile, port, bootstrap.ContainerPort)
	}
	if _, ok := publishedPorts(t, natsSvc)[bootstrap.ContainerPort]; !ok {
		t.Errorf("docker-compose.yml: nats publishes %v; container port %d (the listen port of %s) is not published", natsSvc.Ports, bootstrap.ContainerPort, bootstrap.ContainerConfFile)
	}

	// provisioner: built here, the same command as the image, its paths.
	if path.Clean(prov.Build) != "." {
		t.Errorf("docker-compose.yml: provisioner build is %q, want . (the Dockerfile beside it)", prov.Build)
	}
	if !slices.Contains(prov.DependsOn, "nats") {
		t.Errorf("docker-compose.yml: provisioner depends_on %v, want nats", prov.DependsOn)
	}
	if prov.Restart != "on-failure" {
		t.Errorf("docker-compose.yml: provisioner restart is %q, want on-failure (it exits while nats-server is not up yet)", prov.Restart)
	}
	df := loadDockerfile(t)
	if !slices.Equal(prov.Command, df.cmd) {
		t.Errorf("docker-compose.yml: provisioner command %q differs from the Dockerfile CMD %q", prov.Command, df.cmd)
	}
	if len(prov.Command) == 0 || prov.Command[0] != "serve" {
		t.Fatalf("docker-compose.yml: provisioner command %q does not run serve", prov.Command)
	}
	cfgPath, ok := flagValue(prov.Command, "config")
	if !ok || cfgPath != bootstrap.ContainerDeployDir+"/"+bootstrap.ConfigFile {
		t.Errorf("docker-compose.yml: provisioner --config is %q, want %s", cfgPath, bootstrap.ContainerDeployDir+"/"+bootstrap.ConfigFile)
	}
	hostCfg := w.mustExist(t, "provisioner", prov, cfgPath)
	natsURL, ok := flagValue(prov.Command, "nats-url")
	if !ok {
		t.Errorf("docker-compose.yml: provisioner command has no --nats-url; config.json's %s is not reachable from a container", w.init.URL)
	} else if u, err := url.Parse(natsURL); err != nil || u.Scheme != "nats" || c.Services[u.Hostname()] == nil || u.Port() != strconv.Itoa(bootstrap.ContainerPort) {
		t.Errorf("docker-compose.yml: provisioner --nats-url %q must be nats://SERVICE:%d with SERVICE one of the compose services", natsURL, bootstrap.ContainerPort)
	}
	store, ok := flagValue(prov.Command, "store-dir")
	if !ok {
		t.Errorf("docker-compose.yml: provisioner command has no --store-dir; config.json's store is inside the read-only %s", bootstrap.ContainerDeployDir)
	} else {
		if m, _, ok := prov.mountOf(store); !ok || !m.named || m.readOnly {
			t.Errorf("docker-compose.yml: the provisioner store %s must be on a writable named volume (mounts: %v)", store, prov.Volumes)
		}
		if store != df.storeDir {
			t.Errorf("docker-compose.yml: the provisioner store is %s, but the Dockerfile makes %s for it", store, df.storeDir)
		}
	}

	// The files config.json names, resolved in the container, exist; the
	// secret ones among them are named in the chown advice.
	cfg, err := config.Load(hostCfg)
	if err != nil {
		t.Fatal(err)
	}
	hostDeploy := filepath.Dir(hostCfg)
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
	for _, f := range []string{cfg.NATSCreds, cfg.OperatorJWT, cfg.OperatorSigningKey} {
		rel, err := filepath.Rel(hostDeploy, f)
		if err != nil || strings.HasPrefix(rel, "..") {
			t.Errorf("config.json names %s, outside the deploy dir", f)
			continue
		}
		fi, err := os.Stat(f)
		if err != nil {
			t.Errorf("config.json names %s, which init did not write: %v", rel, err)
			continue
		}
		if fi.Mode().Perm()&0o004 == 0 && !slices.Contains(strings.Fields(chown[3]), "deploy/"+filepath.ToSlash(rel)) {
			t.Errorf("docker-compose.yml: %s is mode %v, so the provisioner (uid %s) cannot read it, and the chown in the comment does not name it", rel, fi.Mode().Perm(), df.user)
		}
	}
}

// ---- the Dockerfile ----

type dockerfile struct {
	stages   [][]instruction
	cmd      []string
	user     string // uid:gid of the final stage
	storeDir string // the directory copied --chown'ed to the user
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
	if d.storeDir == "" {
		t.Errorf("Dockerfile: no directory is copied --chown'ed to the user for the store")
	} else if c := copied[d.storeDir]; !strings.Contains(c, "--chown="+d.user) {
		t.Errorf("Dockerfile: the store dir %s is not owned by the USER %s: COPY %s", d.storeDir, d.user, c)
	}
	if len(d.cmd) == 0 || d.cmd[0] != "serve" {
		t.Errorf("Dockerfile: CMD %q does not run serve", d.cmd)
	}
	if v, _ := flagValue(d.cmd, "store-dir"); v != d.storeDir {
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
	for _, want := range []string{"deploy", "provisioner-dev", "**/*.creds", "**/*.nk", ".git"} {
		if !slices.Contains(pats, want) {
			t.Errorf(".dockerignore does not exclude %s (it has %v)", want, pats)
		}
	}
}

// TestComposeWithoutDocker plays docker-compose.yml on the host: nats-server
// from the container config and the provisioner binary from the compose
// command, each container path mapped to the directory its mount stands
// for, and the nats service's name to the server's address. A request then
// makes an account, which must land in the volumes.
func TestComposeWithoutDocker(t *testing.T) {
	c, _ := loadCompose(t)
	w := newWorld(t)
	natsSvc := c.service(t, "nats")
	prov := c.service(t, "provisioner")
	if len(natsSvc.Command) != 2 || natsSvc.Command[0] != "-c" {
		t.Fatalf("docker-compose.yml: nats command %q is not -c CONF", natsSvc.Command)
	}

	// nats-server, its config's container paths mapped.
	confPath := w.mustExist(t, "nats", natsSvc, natsSvc.Command[1])
	if t.Failed() {
		t.FailNow()
	}
	sc, err := conf.ParseFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	mapped := string(text)
	res, _ := sc["resolver"].(map[string]any)
	resolverDir, _ := res["dir"].(string)
	hostResolverDir, _ := w.hostPath(t, "nats", natsSvc, resolverDir)
	for _, p := range []string{sc["operator"].(string), resolverDir} {
		hp, _ := w.hostPath(t, "nats", natsSvc, p)
		mapped = strings.ReplaceAll(mapped, strconv.Quote(p), strconv.Quote(hp))
	}
	mappedConf := filepath.Join(t.TempDir(), "nats-server.mapped.conf")
	if err := os.WriteFile(mappedConf, []byte(mapped), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := natsembed.Start(mappedConf, natsembed.Options{Port: -1})
	if err != nil {
		t.Fatalf("nats-server does not start from %s (paths mapped): %v", bootstrap.ContainerConfFile, err)
	}
	t.Cleanup(srv.Stop)
	port := srv.Addr().(*net.TCPAddr).Port

	// The provisioner, with the compose command mapped.
	args := slices.Clone(prov.Command)
	for i, a := range args {
		switch {
		case i > 0 && args[i-1] == "--nats-url":
			u, err := url.Parse(a)
			if err != nil || c.Services[u.Hostname()] == nil {
				t.Fatalf("docker-compose.yml: --nats-url %q does not name a compose service", a)
			}
			u.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			args[i] = u.String()
		case strings.HasPrefix(a, "/"):
			args[i], _ = w.hostPath(t, "provisioner", prov, a)
		}
	}
	storeDir, _ := flagValue(prov.Command, "store-dir")
	hostStore, _ := w.hostPath(t, "provisioner", prov, storeDir)
	bin := provisionerBinary(t)
	serve := start(t, t.Context(), "provisioner "+strings.Join(args, " "), os.Environ(), bin, args...)

	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port), nats.UserCredentials(w.init.AdminCreds))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := nc.Request("prov.account.list", nil, time.Second)
		if err == nil && m.Header.Get("Nats-Service-Error-Code") == "" {
			break
		}
		if serve.exited() {
			t.Fatalf("the provisioner with the compose command exited: %v\n%s", serve.err, serve.out.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("the provisioner with the compose command does not answer: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	m, err := nc.Request("prov.account.create", []byte(`{"name":"compose"}`), 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code := m.Header.Get("Nats-Service-Error-Code"); code != "" {
		t.Fatalf("account.create: %s %s", code, m.Data)
	}
	var rep struct {
		Account struct {
			PublicKey string `json:"public_key"`
		} `json:"account"`
	}
	if err := json.Unmarshal(m.Data, &rep); err != nil || rep.Account.PublicKey == "" {
		t.Fatalf("account.create reply: %v: %s", err, m.Data)
	}
	if _, err := os.Stat(filepath.Join(hostResolverDir, rep.Account.PublicKey+".jwt")); err != nil {
		t.Errorf("the account JWT is not in the resolver dir on the nats data volume: %v", err)
	}
	if ents, _ := os.ReadDir(hostStore); len(ents) == 0 {
		t.Errorf("the provisioner wrote nothing into its store volume %s", hostStore)
	}
	// Nothing was written into the read-only deploy mount.
	for _, f := range []string{bootstrap.StoreDir, bootstrap.ResolverDir} {
		if _, err := os.Stat(filepath.Join(w.init.Dir, f)); err == nil {
			t.Errorf("%s appeared in the deploy dir, which the containers mount read-only", f)
		}
	}
	if err := serve.stop(5 * time.Second); err != nil {
		t.Fatalf("the provisioner after SIGTERM: %v\n%s", err, serve.out.String())
	}
}
