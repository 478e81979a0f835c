package keypair

import (
	"sync/atomic"
	"time"

	"github.com/nats-io/nkeys"
)

// Pool keeps freshly generated key pairs of one kind ready, so that a burst
// of creates does not pay for key generation on the request path. A
// background goroutine refills it in the gaps between bursts: while keys
// are being taken it waits, since generating then would only take the CPU
// from the requests. Under a load longer than the pool, keys are made on
// the request path as without it. Keys are taken once and never reused.
// Create a Pool with NewPool and stop it with Close, which wipes the keys
// it still holds.
type Pool struct {
	prefix  nkeys.PrefixByte
	ready   chan *KeyPair
	lastGet atomic.Int64 // unix nanoseconds of the last Get
	stop    chan struct{}
	done    chan struct{}
}

// idleGap is how long no key must have been taken before the pool refills.
const idleGap = 5 * time.Millisecond

// NewPool starts a pool holding up to size key pairs of the given kind.
func NewPool(prefix nkeys.PrefixByte, size int) *Pool {
	p := &Pool{
		prefix: prefix,
		ready:  make(chan *KeyPair, size),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go p.fill()
	return p
}

func (p *Pool) fill() {
	defer close(p.done)
	for {
		if wait := idleGap - time.Since(time.Unix(0, p.lastGet.Load())); wait > 0 {
			select {
			case <-time.After(wait):
				continue
			case <-p.stop:
				return
			}
		}
		k, err := Create(p.prefix)
		if err != nil {
			// The random source failed; Get will report it to a caller.
			return
		}
		select {
		case p.ready <- k:
		case <-p.stop:
			k.Wipe()
			return
		}
	}
}

// Get returns a new key pair: a ready one, or one made now when the pool is
// empty.
func (p *Pool) Get() (*KeyPair, error) {
	p.lastGet.Store(time.Now().UnixNano())
	select {
	case k := <-p.ready:
		return k, nil
	default:
		return Create(p.prefix)
	}
}

// Close stops the refill and wipes the keys not handed out.
func (p *Pool) Close() {
	close(p.stop)
	<-p.done
	for {
		select {
		case k := <-p.ready:
			k.Wipe()
		default:
			return
		}
	}
}
