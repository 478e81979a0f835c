package provtest

import (
	"io"
	"net"
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	pipe := func(dst, src net.Conn) {
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
	}
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
