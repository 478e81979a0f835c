package service_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/service"
)

// TestStatusOfTwoInstances: issue #8 has prov.status give
// "store":"jetstream", the instance and its role, and one instance
// reconcile at a time. Two instances on one bucket answer prov.status by
// the queue group: both are seen, each names itself, and once the
// reconcile lease is taken exactly one says "leader", the other
// "follower".
func TestStatusOfTwoInstances(t *testing.T) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	env.Config.ReconcileInterval = config.Duration(time.Second)
	for _, name := range []string{"inst-a", "inst-b"} {
		cfg := *env.Config
		cfg.Instance = name
		svc, err := service.Start(context.Background(), &cfg, provtest.Logger(t))
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(func() { svc.Stop() })
	}
	admin := env.Admin(t)
	var roles map[string]string
	deadline := time.Now().Add(15 * time.Second)
	for {
		roles = map[string]string{}
		bad := ""
		// 40 requests spread by the queue group reach both instances but
		// once in 2^39.
		for range 40 {
			r := provtest.Request(t, admin, env.Config.SubjectPrefix+".status", `{}`)
			if r.Code != 0 {
				t.Fatalf("prov.status: %d %q", r.Code, r.Description)
			}
			inst, _ := r.Body["instance"].(string)
			role, _ := r.Body["role"].(string)
			if store, _ := r.Body["store"].(string); store != "jetstream" {
				t.Fatalf("prov.status of %s: store %q, want jetstream", inst, store)
			}
			if role != "leader" && role != "follower" {
				t.Fatalf("prov.status of %s: role %q, want leader or follower", inst, role)
			}
			if prev, ok := roles[inst]; ok && prev != role {
				bad = "an instance changed its role within one round"
			}
			roles[inst] = role
		}
		instances := make([]string, 0, len(roles))
		leaders := 0
		for inst, role := range roles {
			instances = append(instances, inst)
			if role == "leader" {
				leaders++
			}
		}
		slices.Sort(instances)
		if !slices.Equal(instances, []string{"inst-a", "inst-b"}) {
			t.Fatalf("prov.status answered by %v, want inst-a and inst-b", instances)
		}
		if bad == "" && leaders == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("prov.status roles %v (%s); want one leader and one follower", roles, bad)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The roles hold: a round after a few reconcile passes still has one
	// leader. An instance says "leader" only until 2.5 intervals after
	// its pass's TryLease, so a holder whose pass loop stalls that long
	// (loaded, -race) reads "follower" for a moment: a round with no
	// leader is asked again, for a while; one with two fails at once.
	time.Sleep(2500 * time.Millisecond)
	deadline = time.Now().Add(10 * time.Second)
	for {
		leaders := map[string]bool{}
		for range 40 {
			r := provtest.Request(t, admin, env.Config.SubjectPrefix+".status", `{}`)
			if r.Body["role"] == "leader" {
				leaders[r.Body["instance"].(string)] = true
			}
		}
		if len(leaders) == 1 {
			return
		}
		if len(leaders) > 1 || time.Now().After(deadline) {
			t.Fatalf("after a few reconcile passes the leaders are %v, want one", leaders)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
