package keypair

import "github.com/nats-io/nkeys"

// Pool keeps freshly generated key pairs of one kind ready, so that a burst
// of creates does not pay for key generation on the request path: a
// background goroutine refills it while requests wait on the network. Keys
// are taken once and never reused. Create a Pool with NewPool and stop it
// with Close, which wipes the keys it still holds.
type Pool struct {
	prefix nkeys.PrefixByte
	ready  chan *KeyPair
	stop   chan struct{}
	done   chan struct{}
}

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
