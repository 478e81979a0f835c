package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/events"
)

// TestServiceAccountRoomAtEveryReplicaCount checks that the JetStream
// limits `provisioner init` gives the service account hold what README
// promises at the replica count the deployment uses: beside the audit
// stream at its full size (events.AuditMaxBytes), the bucket has the rest
// of bootstrap.ServiceAccountDiskStorage, on the single server (R1) and on
// the 3-node cluster of the container confs (R3), and no more. The server
// counts what a stream may hold (its max_bytes reservation, and its usage)
// the same way, so a stream reserving that room stands for a bucket
// filled to it. Flat limits counted every R3 byte three times: the audit
// stream's 1 GiB took 3 GiB of the 4, and the bucket got 341 MiB.
func TestServiceAccountRoomAtEveryReplicaCount(t *testing.T) {
	for _, nodes := range []int{1, 3} {
		t.Run("R"+string(rune('0'+nodes)), func(t *testing.T) {
			e := newHAEnv(t, haOptions{nodes: nodes})
			nc := e.connect(filepath.Join(e.d.dir, "service.creds"), bootstrap.ServiceInboxPrefix)
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			// A cluster just formed may not place replicas yet. The
			// first create, which must succeed, also waits out "no
			// suitable peers" (a peer not known yet: CI); once it is
			// placed on three, every peer is known, and the refusal
			// of a bucket past the room is not waited on.
			create := func(cfg jetstream.StreamConfig, first bool) error {
				for {
					_, err := js.CreateStream(ctx, cfg)
					if err == nil || ctx.Err() != nil || (!strings.Contains(err.Error(), "peer offline") && !strings.Contains(err.Error(), "503") && !strings.Contains(err.Error(), "miscellaneous") &&
						!(first && strings.Contains(err.Error(), "no suitable peers"))) {
						return err
					}
					time.Sleep(250 * time.Millisecond)
				}
			}
			if err := create(jetstream.StreamConfig{
				Name:     events.StreamName,
				Subjects: []string{config.DefaultSubjectPrefix + ".audit.>"},
				Storage:  jetstream.FileStorage,
				Replicas: nodes,
				MaxBytes: events.AuditMaxBytes,
			}, true); err != nil {
				t.Fatalf("the audit stream at R%d with max_bytes %d: %v", nodes, events.AuditMaxBytes, err)
			}
			bucket := jetstream.StreamConfig{
				Name:     "KV_" + config.DefaultKVBucket,
				Subjects: []string{"$KV." + config.DefaultKVBucket + ".>"},
				Storage:  jetstream.FileStorage,
				Replicas: nodes,
				MaxBytes: bootstrap.ServiceAccountDiskStorage - events.AuditMaxBytes + 1,
			}
			// One byte past the room is refused: the limit still bounds
			// what the streams can take of the servers' disks.
			if err := create(bucket, false); err == nil {
				t.Fatalf("a bucket one byte past the room (%d bytes) beside the audit stream at R%d was allowed", bucket.MaxBytes, nodes)
			}
			bucket.MaxBytes--
			if err := create(bucket, false); err != nil {
				t.Fatalf("a bucket of %d MiB (the %d GiB of the service account less the audit stream's %d MiB) beside the audit stream at R%d: %v",
					bucket.MaxBytes>>20, bootstrap.ServiceAccountDiskStorage>>30, events.AuditMaxBytes>>20, nodes, err)
			}
		})
	}
}
