package bench

import (
	"context"
	"errors"
	"fmt"
	"go/build"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/natsprov/provisioner/freeport"
)

// ErrNoServerBinary is returned when no nats-server binary can be found.
var ErrNoServerBinary = errors.New("bench: nats-server not found on PATH or in $(go env GOPATH)/bin (go install github.com/nats-io/nats-server/v2@v2.15.2, or give --server-binary)")

// FindServerBinary returns the nats-server binary on PATH, or else in the
// bin directories of $(go env GOPATH).
func FindServerBinary() (string, error) {
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p, nil
	}
	gopath := build.Default.GOPATH
	// go env also knows a GOPATH set with go env -w.
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		gopath = strings.TrimSpace(string(out)) + string(filepath.ListSeparator) + gopath
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", "nats-server")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", ErrNoServerBinary
}

// ServerProcess is the nats-server binary running as a separate process,
// as users run it, from a deployment's nats-server.conf on a free port.
type ServerProcess struct {
	Binary string
	URL    string
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{}
	err    error // what Wait returned, once exited is closed
}

// startTimeout bounds the wait for a separate server to accept clients.
const startTimeout = 15 * time.Second

// StartServerProcess starts binary with conf, listening on a free port of
// 127.0.0.1, its output going to logPath, and waits until it accepts
// clients. The caller stops it with Stop.
// Ports in avoid are not taken (the routes of a cluster being started: free
// when picked, but not free for long).
func StartServerProcess(ctx context.Context, binary, conf, logPath string, avoid ...int) (*ServerProcess, error) {
	port, err := freePort(avoid...)
	if err != nil {
		return nil, err
	}
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	// The command line's address overrides the file's listen line.
	cmd := exec.Command(binary, "-c", conf, "-a", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("bench: start %s: %w", binary, err)
	}
	p := &ServerProcess{Binary: binary, URL: fmt.Sprintf("nats://127.0.0.1:%d", port), cmd: cmd, log: log, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return p, nil
		}
		select {
		case <-p.exited:
			p.Stop()
			return nil, fmt.Errorf("bench: %s exited at start (%v): %s", binary, p.err, tail(logPath))
		case <-ctx.Done():
			p.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("bench: %s did not accept clients on %s within %s: %s", binary, addr, startTimeout, tail(logPath))
		}
	}
}

// Pid is the server's process ID.
func (p *ServerProcess) Pid() int { return p.cmd.Process.Pid }

// Stop asks the server to shut down, kills it when it has not within ten
// seconds, and waits for it.
func (p *ServerProcess) Stop() error {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	return p.log.Close()
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago and
// is not in avoid: ports picked a moment before and not yet bound (a
// cluster's route ports). It is below the kernel's ephemeral range
// (freeport.Pick): a route port picked before the first node's routes
// dialled out could otherwise be taken by one of them.
func freePort(avoid ...int) (int, error) {
	p, err := freeport.Pick("127.0.0.1", func(p int) bool { return slices.Contains(avoid, p) })
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	return p, nil
}

// tail returns the end of a log file, for errors.
func tail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	s := strings.TrimSpace(string(data))
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}
