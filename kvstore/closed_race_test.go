package kvstore

import (
	"sync"
	"testing"
	"time"
)

// TestReadsPastTheMirrorDuringClose: AccountLatest and LatestJWT (the
// reads after every push) run while the watchdog finds the bucket gone
// (lose) and while the service stops (Close). They read the store's lost
// and closed state without its lock: a data race with both, which go test
// -race reports (in about one round in three; hence the rounds).
func TestReadsPastTheMirrorDuringClose(t *testing.T) {
	d, _, opts := single(t)
	ctx := bg(t)
	for round := range 8 {
		s := openStore(t, d.connect(t, d.svcCreds), opts)
		a := newAccount(t, "closing")
		a.Name = a.Name + string(rune('a'+round))
		if _, err := s.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for {
					_, err1 := s.AccountLatest(ctx, a.PublicKey)
					_, err2 := s.LatestJWT(ctx, a.PublicKey)
					if err1 != nil && err2 != nil {
						return
					}
				}
			})
		}
		time.Sleep(20 * time.Millisecond)
		if round%2 == 0 {
			s.lose("deleted (test)")
		}
		s.Close()
		wg.Wait()
	}
}
