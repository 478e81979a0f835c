// Package natsembed runs the real nats-server in-process, from a
// configuration file such as the one `provisioner init` writes. The dev and
// bench commands and the tests use it; production runs the nats-server
// binary with the same file.
package natsembed

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/natsprov/provisioner/freeport"
)

// Options override parts of the configuration file. Everything else, the
// resolver's limit and allow_delete among it, comes from the file.
type Options struct {
	// Port overrides the client port when not 0; -1 picks a free one.
	Port int
	// Logs turns the server's own logging on (to stderr).
	Logs bool
	// JetStreamDir overrides the store_dir of the file's jetstream block,
	// so that several servers can start from one file. It turns nothing
	// on: a file without a jetstream block runs without JetStream.
	JetStreamDir string
}

// Server is a running embedded nats-server.
type Server struct {
	*server.Server
}

// Start starts a server from a nats-server configuration file and waits
// until it accepts clients and its resolver is up. What stops the server
// from starting (JetStream that cannot use its store dir, say) is only
// logged by it: Start returns that message as its error, and fails when the
// file turns JetStream on and it is not.
func Start(confFile string, o Options) (*Server, error) {
	opts, err := server.ProcessConfigFile(confFile)
	if err != nil {
		return nil, fmt.Errorf("natsembed: %s: %w", confFile, err)
	}
	if o.Port != 0 {
		opts.Port = o.Port
	}
	if o.JetStreamDir != "" && opts.JetStream {
		opts.StoreDir = o.JetStreamDir
	}
	if opts.Port == -1 {
		opts.Port = server.RANDOM_PORT
	}
	opts.NoSigs = true
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: %w", err)
	}
	fatal := &fatalLog{}
	if o.Logs {
		s.ConfigureLogger()
	} else {
		s.SetLoggerV2(fatal, false, false, false)
	}
	go s.Start()
	fail := func(err error) (*Server, error) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, err
	}
	for deadline := time.Now().Add(10 * time.Second); !s.ReadyForConnections(50 * time.Millisecond); {
		if msg := fatal.message(); msg != "" {
			return fail(fmt.Errorf("natsembed: %s: %s", confFile, msg))
		}
		if time.Now().After(deadline) {
			return fail(errors.New("natsembed: server did not start within 10s"))
		}
	}
	if opts.JetStream && !s.JetStreamEnabled() {
		return fail(fmt.Errorf("natsembed: %s turns JetStream on, but it did not start (store_dir %s)", confFile, opts.StoreDir))
	}
	return &Server{s}, nil
}

// fatalLog keeps the server's fatal message, the reason it stops starting,
// and drops the rest of its log.
type fatalLog struct {
	mu  sync.Mutex
	msg string
}

func (l *fatalLog) message() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.msg
}

func (l *fatalLog) Fatalf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.msg == "" {
		l.msg = fmt.Sprintf(format, v...)
	}
}

func (*fatalLog) Noticef(string, ...any) {}
func (*fatalLog) Warnf(string, ...any)   {}
func (*fatalLog) Errorf(string, ...any)  {}
func (*fatalLog) Debugf(string, ...any)  {}
func (*fatalLog) Tracef(string, ...any)  {}

// URL returns the client URL.
func (s *Server) URL() string { return s.ClientURL() }

// Stop shuts the server down and waits for it.
func (s *Server) Stop() {
	s.Shutdown()
	s.WaitForShutdown()
}

// Listen returns the host and client port the server of a configuration
// file listens on (nats-server's defaults, 0.0.0.0 and 4222, for what the
// file leaves out), or "" and 0 when the file cannot be read (Start says
// why).
func Listen(confFile string) (host string, port int) {
	opts, err := server.ProcessConfigFile(confFile)
	if err != nil {
		return "", 0
	}
	host, port = opts.Host, opts.Port
	if host == "" {
		host = server.DEFAULT_HOST
	}
	if port == 0 {
		port = server.DEFAULT_PORT
	}
	return host, port
}

// FreePort returns a TCP port on host that was free when asked, below
// the kernel's ephemeral range (freeport.Pick): the port a server started
// at once can listen on, and one that dev writes into config.json for
// later runs, which an outgoing connection is not handed meanwhile.
func FreePort(host string) (int, error) {
	p, err := freeport.Pick(host, nil)
	if err != nil {
		return 0, fmt.Errorf("natsembed: %w", err)
	}
	return p, nil
}

// PortFree reports whether a TCP port on host can be listened on.
func PortFree(host string, port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
