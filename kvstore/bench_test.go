package kvstore

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natsprov/provisioner/provision"
)

// BenchmarkWrites measures the store's writes on one server (R1) and on a
// cluster of three (R3), from GOMAXPROCS*4 goroutines at once:
//
//	go test -run XXX -bench Writes -benchtime 2000x ./kvstore
func BenchmarkWrites(b *testing.B) {
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("R%d", n), func(b *testing.B) {
			d := startDeployment(b, n)
			key, _ := newSealKey(b)
			s := openStore(b, d.connect(b, d.svcCreds), Options{Seal: key})
			ctx := context.Background()
			var seq atomic.Int64
			b.Run("CreateAccount", func(b *testing.B) {
				accounts := make([]provision.Account, b.N)
				for i := range accounts {
					accounts[i] = newAccount(b, fmt.Sprintf("create-%d-%d", n, seq.Add(1)))
				}
				var next atomic.Int64
				b.SetParallelism(4)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := s.CreateAccount(ctx, accounts[next.Add(1)-1]); err != nil {
							b.Error(err)
						}
					}
				})
			})
			b.Run("UpdateAccount", func(b *testing.B) {
				jwts := make(chan string, 1)
				_ = jwts
				b.SetParallelism(4)
				var mu sync.Mutex
				b.RunParallel(func(pb *testing.PB) {
					mu.Lock()
					a := newAccount(b, fmt.Sprintf("update-%d", seq.Add(1)))
					mu.Unlock()
					rev, err := s.CreateAccount(ctx, a)
					if err != nil {
						b.Error(err)
						return
					}
					tokens := [2]string{a.JWT, accountJWTAt(b, a.PublicKey, a.Name, time.Now().Unix()+1)}
					for i := 0; pb.Next(); i++ {
						a.JWT = tokens[i%2]
						if rev, err = s.UpdateAccount(ctx, a, rev); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
			for _, durable := range []bool{true, false} {
				b.Run(fmt.Sprintf("AddUser/durable=%v", durable), func(b *testing.B) {
					a := newAccount(b, fmt.Sprintf("users-%d", seq.Add(1)))
					if _, err := s.CreateAccount(ctx, a); err != nil {
						b.Fatal(err)
					}
					users := make([]provision.User, b.N)
					for i := range users {
						users[i] = newUser(b, a.PublicKey, "u")
					}
					var next atomic.Int64
					b.SetParallelism(4)
					b.ResetTimer()
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if err := s.AddUser(ctx, users[next.Add(1)-1], durable); err != nil {
								b.Error(err)
							}
						}
					})
					// Asynchronous writes count once acknowledged.
					for {
						s.amu.Lock()
						n := len(s.pending)
						s.amu.Unlock()
						if n == 0 {
							break
						}
						time.Sleep(time.Millisecond)
					}
				})
			}
		})
	}
}

// BenchmarkScale measures reads, and Open, at 10,000 accounts:
//
//	go test -run XXX -bench Scale -benchtime 1x ./kvstore
func BenchmarkScale(b *testing.B) {
	const accounts = 10_000
	d := startDeployment(b, 1)
	key, _ := newSealKey(b)
	opts := Options{Seal: key}
	s := openStore(b, d.connect(b, d.svcCreds), opts)
	ctx := context.Background()
	var wg sync.WaitGroup
	work := make(chan int)
	var last provision.Account
	var mu sync.Mutex
	for range 16 {
		wg.Go(func() {
			for i := range work {
				a := newAccount(b, fmt.Sprintf("acct-%05d", i))
				if _, err := s.CreateAccount(ctx, a); err != nil {
					b.Error(err)
				}
				mu.Lock()
				last = a
				mu.Unlock()
			}
		})
	}
	start := time.Now()
	for i := range accounts {
		work <- i
	}
	close(work)
	wg.Wait()
	b.Logf("created %d accounts in %v", accounts, time.Since(start).Round(time.Millisecond))

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	start = time.Now()
	s2 := openStore(b, d.connect(b, d.svcCreds), opts)
	b.Logf("Open with %d accounts: %v (GOMAXPROCS %d)", accounts, time.Since(start).Round(time.Millisecond), runtime.GOMAXPROCS(0))
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	b.Logf("heap of one mirror of %d accounts: %.1f MiB", accounts, float64(after.HeapInuse-before.HeapInuse)/(1<<20))

	var report []string
	measure := func(name string, n int, f func()) {
		start := time.Now()
		for range n {
			f()
		}
		report = append(report, fmt.Sprintf("%s %v", name, (time.Since(start)/time.Duration(n)).Round(100*time.Nanosecond)))
	}
	defer func() { b.Logf("per call at %d accounts: %s", accounts, strings.Join(report, ", ")) }()
	measure("Accounts (10,000)", 20, func() {
		if all, err := s2.Accounts(ctx); err != nil || len(all) != accounts {
			b.Fatal(len(all), err)
		}
	})
	measure("Account", 100_000, func() {
		if _, err := s2.Account(ctx, last.PublicKey); err != nil {
			b.Fatal(err)
		}
	})
	measure("AccountByName", 100_000, func() {
		if _, err := s2.AccountByName(ctx, last.Name); err != nil {
			b.Fatal(err)
		}
	})
}
