package jsonstrict

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
)

// benchBodies are typical request bodies, each with its target type.
var benchBodies = []struct {
	name string
	body string
	typ  reflect.Type
}{
	{
		name: "account.get",
		body: `{"account":"acme"}`,
		typ:  reflect.TypeFor[api.AccountRequest](),
	},
	{
		name: "account.create",
		body: `{"name":"acme","description":"the acme team's account","limits":{"subs":1000,"data":-1,"payload":1048576,"conn":100,"leaf":10,"mem_storage":1073741824,"disk_storage":10737418240,"streams":10,"consumer":100},"default_permissions":{"pub":{"allow":["acme.>","_INBOX.>"],"deny":["acme.admin.>"]},"sub":{"allow":["acme.>","_INBOX.>"]},"resp":{"max":1,"ttl":5000000000}},"tags":["team:acme","env:prod"]}`,
		typ:  reflect.TypeFor[api.CreateAccountRequest](),
	},
	{
		name: "user.create",
		body: `{"account":"acme","name":"svc-orders","permissions":{"pub":{"allow":["acme.orders.>"]},"sub":{"allow":["_INBOX.>"]}},"limits":{"subs":100,"data":-1,"payload":65536,"src":["10.0.0.0/8","192.168.1.0/24"],"times":[{"start":"08:00:00","end":"17:00:00"}],"times_location":"Europe/Berlin"},"expires_in":"720h","allowed_connection_types":["STANDARD","WEBSOCKET"],"tags":["svc"]}`,
		typ:  reflect.TypeFor[api.CreateUserRequest](),
	},
}

// BenchmarkDecode measures Decode on typical request bodies; its floor,
// BenchmarkUnmarshal, is json.Unmarshal of the same bodies into the same
// types.
func BenchmarkDecode(b *testing.B) {
	for _, bb := range benchBodies {
		b.Run(bb.name, func(b *testing.B) {
			data := []byte(bb.body)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if err := Decode(data, reflect.New(bb.typ).Interface()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUnmarshal is the floor of BenchmarkDecode.
func BenchmarkUnmarshal(b *testing.B) {
	for _, bb := range benchBodies {
		b.Run(bb.name, func(b *testing.B) {
			data := []byte(bb.body)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if err := json.Unmarshal(data, reflect.New(bb.typ).Interface()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCheck is the walk alone: what Decode adds to json.Unmarshal.
func BenchmarkCheck(b *testing.B) {
	for _, bb := range benchBodies {
		b.Run(bb.name, func(b *testing.B) {
			data := []byte(bb.body)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if err := check(data, bb.typ); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRatio reports Decode's time over json.Unmarshal's on the same
// body and type. It runs them in alternating batches and compares the
// fastest batch of each, so that a busy machine (CI, other tests) skews
// the ratio less than it skews the separate benchmarks.
func BenchmarkRatio(b *testing.B) {
	for _, bb := range benchBodies {
		b.Run(bb.name, func(b *testing.B) {
			data := []byte(bb.body)
			const batch = 100
			bestDecode, bestUnmarshal := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
			for b.Loop() {
				start := time.Now()
				for range batch {
					_ = json.Unmarshal(data, reflect.New(bb.typ).Interface())
				}
				bestUnmarshal = min(bestUnmarshal, time.Since(start))
				start = time.Now()
				for range batch {
					_ = Decode(data, reflect.New(bb.typ).Interface())
				}
				bestDecode = min(bestDecode, time.Since(start))
			}
			b.ReportMetric(float64(bestDecode)/float64(bestUnmarshal), "decode/unmarshal")
			b.ReportMetric(float64(bestUnmarshal.Nanoseconds())/batch, "unmarshal-ns")
		})
	}
}

// BenchmarkDecodeError measures a refused body: the error path builds the
// message and checks the whole input's syntax.
func BenchmarkDecodeError(b *testing.B) {
	data := []byte(`{"name":"acme","limits":{"conn":"100","mem_storage":1073741824},"tags":["a","b"]}`)
	b.ReportAllocs()
	for b.Loop() {
		if Decode(data, &api.CreateAccountRequest{}) == nil {
			b.Fatal("no error")
		}
	}
}

// TestBenchBodies keeps the benchmark bodies valid, so the benchmarks
// measure success.
func TestBenchBodies(t *testing.T) {
	for _, bb := range benchBodies {
		compare(t, bb.typ, []byte(bb.body))
	}
}
