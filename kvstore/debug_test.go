package kvstore

import (
	"testing"
	"time"
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

func TestDebugWatch(t *testing.T) {
	d := startDeployment(t, 1)
	nc := d.connect(t, d.svcCreds)
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "b", Storage: jetstream.FileStorage})
	if err != nil { t.Fatal(err) }
	nc2 := d.connect(t, d.svcCreds)
	js2, _ := jetstream.New(nc2)
	kv2, _ := js2.KeyValue(ctx, "b")
	w, err := kv2.WatchAll(ctx)
	if err != nil { t.Fatal(err) }
	<-w.Updates()
	var max time.Duration
	for i := 0; i < 3000; i++ {
		t0 := time.Now()
		if _, err := kv.Put(ctx, "acct.x", []byte("v")); err != nil { t.Fatal(err) }
		e := <-w.Updates()
		if dd := time.Since(t0); dd > max { max = dd; t.Logf("%d: %v rev %d", i, dd, e.Revision()) }
	}
}
