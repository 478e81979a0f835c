package freeport

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestPickIsBelowTheEphemeralRange: ports came from the kernel's ephemeral
// range (a listen on port 0): released when picked, any process's next
// outgoing connection could take one before the server bound it (a cluster
// node in CI and of bench --cluster: "bind: address already in use"; dev's
// fallback port, written into config.json). They are picked below it, and
// not among those skip refuses.
func TestPickIsBelowTheEphemeralRange(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Skip("no ephemeral port range to read:", err)
	}
	f := strings.Fields(string(b))
	start, err := strconv.Atoi(f[0])
	if err != nil || start-10000 < 5000 {
		t.Skipf("ephemeral range %q leaves no room below it", strings.TrimSpace(string(b)))
	}
	var picked []int
	for range 20 {
		p, err := Pick("127.0.0.1", func(p int) bool { return slices.Contains(picked, p) })
		if err != nil {
			t.Fatal(err)
		}
		if p >= start {
			t.Fatalf("Pick gave %d, in the ephemeral range from %d", p, start)
		}
		for _, q := range picked {
			if p == q {
				t.Fatalf("Pick gave %d, which skip refused", p)
			}
		}
		picked = append(picked, p)
	}
}
