package keystore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// BenchmarkPutAccount measures a durable account write from 8 concurrent
// callers (group commit), next to its floor: one 2 KiB write and fdatasync
// per call into a preallocated file, the cheapest durable write there is.
func BenchmarkPutAccount(b *testing.B) {
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
	b.Run("store-put", func(b *testing.B) {
		s, err := Open(b.TempDir(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		accts := make([]Account, 0, 1024)
		for i := range cap(accts) {
			accts = append(accts, testAccount(b, fmt.Sprint("a", i)))
		}
		var n atomic.Int64
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				a := accts[n.Add(1)%int64(len(accts))]
				if err := s.PutAccount(context.Background(), a); err != nil {
					b.Error(err)
				}
			}
		})
	})
}

// BenchmarkAddUser measures recording an issued user, which waits for no
// fsync.
func BenchmarkAddUser(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	a := testAccount(b, "a")
	if err := s.PutAccount(context.Background(), a); err != nil {
		b.Fatal(err)
	}
	u := testUser(b, "u", 1)
	i := 0
	for b.Loop() {
		i++
		u.Name = fmt.Sprint("u", i)
		u.PublicKey = fmt.Sprint("U", i)
		if err := s.AddUser(context.Background(), a.PublicKey, u); err != nil {
			b.Fatal(err)
		}
	}
}
