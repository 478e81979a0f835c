package bench

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// A cluster node's ports came from the kernel's ephemeral range (a listen
// on port 0): released when picked, any process's next outgoing connection
// could take one before the node bound it (a cluster node of bench
// --cluster: "bind: address already in use"). They are picked below it.
func TestFreePortIsBelowTheEphemeralRange(t *testing.T) {
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
		p, err := freePort(picked...)
		if err != nil {
			t.Fatal(err)
		}
		if p >= start {
			t.Fatalf("freePort gave %d, in the ephemeral range from %d", p, start)
		}
		for _, q := range picked {
			if p == q {
				t.Fatalf("freePort gave %d, which it was told to avoid", p)
			}
		}
		picked = append(picked, p)
	}
}
