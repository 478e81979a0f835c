package provtest

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// SlowLink listens on a local port and forwards each connection to
// target, each byte delay after it arrived, both ways: a route across a
// long link (or to a busy server), whose server answers every request that
// much later than the others. It returns the address to connect to; it
// stops when the test ends.
func SlowLink(t testing.TB, target string, delay time.Duration) string {
	t.Helper()
	return forward(t, target, func(dst, src net.Conn) {
		type chunk struct {
			at   time.Time
			data []byte
		}
		q := make(chan chunk, 4096)
		go func() {
			defer close(q)
			buf := make([]byte, 64<<10)
			for {
				n, err := src.Read(buf)
				if n > 0 {
					q <- chunk{time.Now(), append([]byte(nil), buf[:n]...)}
				}
				if err != nil {
					return
				}
			}
		}()
		for c := range q {
			time.Sleep(time.Until(c.at.Add(delay)))
			if _, err := dst.Write(c.data); err != nil {
				break
			}
		}
		dst.Close()
		src.Close()
		_, _ = io.Copy(io.Discard, src)
	})
}

// StallLink forwards each connection to target, both ways, until paused:
// then it holds what comes (a link that stalls, the connection still
// open) until resumed. It returns the address to connect to and the
// function that pauses (true) or resumes (false) it; it stops when the
// test ends.
func StallLink(t testing.TB, target string) (string, func(bool)) {
	t.Helper()
	var mu sync.Mutex
	resumed := make(chan struct{})
	close(resumed)
	gate := func() <-chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		return resumed
	}
	pause := func(on bool) {
		mu.Lock()
		defer mu.Unlock()
		select {
		case <-resumed:
			if on {
				resumed = make(chan struct{})
			}
		default:
			if !on {
				close(resumed)
			}
		}
	}
	addr := forward(t, target, func(dst, src net.Conn) {
		defer dst.Close()
		defer src.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				<-gate()
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	t.Cleanup(func() { pause(false) })
	return addr, pause
}

// forward listens on a local port and forwards each connection to target
// through pipe, one each way. It returns the address to connect to; it
// stops when the test ends.
func forward(t testing.TB, target string, pipe func(dst, src net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			t.Cleanup(func() { in.Close(); out.Close() })
			go pipe(out, in)
			go pipe(in, out)
		}
	}()
	return ln.Addr().String()
}
