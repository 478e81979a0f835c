// Package freeport picks TCP ports for servers that bind them a moment
// later (test clusters, bench's nats-server processes, dev's server). It
// imports nothing of the project, so that testenv, which the stores'
// tests use, may use it.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// Pick returns a TCP port on host that was free a moment ago and that skip
// (nil: none) does not refuse.
//
// It is picked below the kernel's ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range), not by listening on port 0: a
// port from that range is handed to the next outgoing connection of any
// process once it is released, so a server started on it a moment later
// could find it taken ("bind: address already in use" for a cluster node
// in CI).
func Pick(host string, skip func(port int) bool) (int, error) {
	lo, hi := Range()
	for range 1000 {
		p := lo + rand.IntN(hi-lo)
		if skip != nil && skip(p) {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		return p, nil
	}
	return 0, fmt.Errorf("find a free port: none free on %s in %d-%d", host, lo, hi-1)
}

// Range returns the ports Pick picks from, [lo, hi): 10000 up to the start
// of the ephemeral range (32768, Linux's default, where that range cannot
// be read), or 20000-30000 where it leaves too little room below it.
func Range() (lo, hi int) {
	lo, hi = 10000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if start, err := strconv.Atoi(f[0]); err == nil {
				hi = start
			}
		}
	}
	if hi-lo < 5000 {
		return 20000, 30000
	}
	return lo, hi
}
