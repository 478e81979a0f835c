package filestore

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/provision"
)

// BenchmarkAccountWrite measures a durable account write from 8 concurrent
// callers (group commit), next to its floor: one 2 KiB write and fdatasync
// per call into a preallocated file, the cheapest durable write there is.
// A commit takes two flushes, one after the other: the records, then the
// header that counts them. Concurrent callers share them, and while more
// callers wait the header of one batch goes with the records of the next;
// with 32 callers the cost per call drops below the floor's.
func BenchmarkAccountWrite(b *testing.B) {
	b.Run("floor-write-fdatasync", func(b *testing.B) {
		f, err := os.OpenFile(filepath.Join(b.TempDir(), "f"), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		f.WriteAt(make([]byte, 64<<20), 0)
		f.Sync()
		buf := make([]byte, 2048)
		var off atomic.Int64
		b.SetParallelism(4) // 8 goroutines on 2 cores
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				o := off.Add(2048) % (64 << 20)
				f.WriteAt(buf, o)
				if err := datasync(f); err != nil {
					b.Error(err)
				}
			}
		})
	})
	for _, c := range []struct {
		sealed  bool
		callers int
	}{{false, 8}, {true, 8}, {false, 32}} {
		name := fmt.Sprint("store-update-", c.callers)
		opts := Options{}
		if c.sealed {
			name += "-sealed"
			opts.Seal = newSealKey(b)
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			s, err := Open(b.TempDir(), opts)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			const n = 64
			accts := make([]provision.Account, n)
			revs := make([]uint64, n)
			for i := range n {
				accts[i] = newAccount(b, fmt.Sprint("a", i))
				if revs[i], err = s.CreateAccount(ctx, accts[i]); err != nil {
					b.Fatal(err)
				}
			}
			var next atomic.Int64
			b.SetParallelism(max(1, c.callers/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(1)-1) % n
				a, rev := accts[i], revs[i]
				for pb.Next() {
					var err error
					if rev, err = s.UpdateAccount(ctx, a, rev); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkAddUser measures recording an issued user from 8 concurrent
// callers: lazily, which waits for no flush, and durably.
func BenchmarkAddUser(b *testing.B) {
	for _, durable := range []bool{false, true} {
		b.Run(fmt.Sprint("durable=", durable), func(b *testing.B) {
			ctx := context.Background()
			s, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			a := newAccount(b, "a")
			if _, err := s.CreateAccount(ctx, a); err != nil {
				b.Fatal(err)
			}
			var next atomic.Uint64
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					u := provision.User{PublicKey: userKey(b, next.Add(1)), Account: a.PublicKey, Name: "u", IssuedAt: 1}
					if err := s.AddUser(ctx, u, durable); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// userKey makes the i-th of distinct valid user public keys, cheaply.
func userKey(b *testing.B, i uint64) string {
	var raw [32]byte
	binary.BigEndian.PutUint64(raw[:], i)
	k, err := nkeys.Encode(nkeys.PrefixByteUser, raw[:])
	if err != nil {
		b.Fatal(err)
	}
	return string(k)
}

// BenchmarkOpen measures loading a store of 1000 accounts with 10 users
// each: every account's seeds and JWT are checked.
func BenchmarkOpen(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		a := newAccount(b, fmt.Sprint("a", i))
		if _, err := s.CreateAccount(ctx, a); err != nil {
			b.Fatal(err)
		}
		for j := range 10 {
			if err := s.AddUser(ctx, newUser(b, a.PublicKey, fmt.Sprint("u", j), 1), false); err != nil {
				b.Fatal(err)
			}
		}
	}
	s.Close()
	for b.Loop() {
		s, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}
