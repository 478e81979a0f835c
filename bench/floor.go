package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/keypair"
	"github.com/natsprov/provisioner/provision"
)

// Claims API subjects the floors use, as every full-resolver server
// answers them.
const (
	subjectClaimsUpdate = "$SYS.REQ.CLAIMS.UPDATE"
	subjectClaimsDelete = "$SYS.REQ.CLAIMS.DELETE"
)

// floorUserSubject is the user.create floor's endpoint, after the prefix.
const floorUserSubject = ".bench.floor.user.create"

// Pool sizes, the same as the service's own pools (provision.New), so
// that neither side has more keys made ahead than the other.
const (
	accountPoolSize = 256
	userPoolSize    = 1024
)

// maxFloorInflight bounds the floor endpoint's requests in flight, as the
// responder's max_inflight (default 512) bounds the service's.
const maxFloorInflight = 512

// floors hold what the floors need across operations: key pools, the
// user.create floor endpoint, and the accounts they pushed, which they
// delete again.
type floors struct {
	nc          *nats.Conn
	svc         micro.Service
	accountKeys *keypair.Pool
	userKeys    *keypair.Pool
	// issuer is the account the floor's users belong to, signer its
	// signing key pair, made once.
	issuer string
	signer *keypair.KeyPair
	sem    chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	created []string // pushed by floorCreate, not yet deleted
	change  []*changeFloor
}

// startFloors starts the key pools and the user.create floor endpoint on
// nc, the service's own connection.
func startFloors(nc *nats.Conn, prefix string) (_ *floors, err error) {
	f := &floors{nc: nc, sem: make(chan struct{}, maxFloorInflight)}
	defer func() {
		if err != nil {
			f.stop()
		}
	}()
	acct, err := keypair.Create(nkeys.PrefixByteAccount)
	if err != nil {
		return nil, err
	}
	f.issuer, _ = acct.PublicKey()
	acct.Wipe()
	if f.signer, err = keypair.Create(nkeys.PrefixByteAccount); err != nil {
		return nil, err
	}
	f.accountKeys = keypair.NewPool(nkeys.PrefixByteAccount, accountPoolSize)
	f.userKeys = keypair.NewPool(nkeys.PrefixByteUser, userPoolSize)
	if f.svc, err = micro.AddService(nc, micro.Config{Name: "bench_floor", Version: "0.0.1"}); err != nil {
		return nil, fmt.Errorf("bench: floor endpoint: %w", err)
	}
	if err := f.svc.AddEndpoint("user_create", micro.HandlerFunc(f.dispatch), micro.WithEndpointSubject(prefix+floorUserSubject)); err != nil {
		return nil, fmt.Errorf("bench: floor endpoint: %w", err)
	}
	if err := nc.Flush(); err != nil {
		return nil, fmt.Errorf("bench: floor endpoint: %w", err)
	}
	return f, nil
}

// stop stops the endpoint, waits for the requests in flight, and wipes the
// keys.
func (f *floors) stop() {
	if f.svc != nil {
		f.svc.Stop()
	}
	f.wg.Wait()
	if f.accountKeys != nil {
		f.accountKeys.Close()
	}
	if f.userKeys != nil {
		f.userKeys.Close()
	}
	if f.signer != nil {
		f.signer.Wipe()
	}
}

// dispatch hands a request to a goroutine, as the service's responder
// does, so that the endpoint can take the next one and both cores work.
func (f *floors) dispatch(req micro.Request) {
	f.sem <- struct{}{}
	f.wg.Add(1)
	go func() {
		defer func() {
			<-f.sem
			f.wg.Done()
		}()
		m := &nats.Msg{Subject: req.Reply()}
		data, err := f.issueUser(req.Data())
		if err != nil {
			m.Header = nats.Header{}
			m.Header.Set(micro.ErrorHeader, err.Error())
			m.Header.Set(micro.ErrorCodeHeader, strconv.Itoa(api.CodeInternal))
		}
		m.Data = data
		if m.Subject != "" {
			_ = f.nc.PublishMsg(m) // the requester times out; nothing else to do
		}
	}()
}

// issueUser is the work of user.create that nothing can avoid: read the
// request, take a pooled key, sign a user JWT with an account signing key,
// format the creds as the service does, and write the reply. It looks
// nothing up and stores nothing.
func (f *floors) issueUser(body []byte) ([]byte, error) {
	var req api.CreateUserRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	kp, err := f.userKeys.Get()
	if err != nil {
		return nil, err
	}
	defer kp.Wipe()
	pub, _ := kp.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = req.Name
	uc.IssuerAccount = f.issuer
	token, err := uc.Encode(f.signer)
	if err != nil {
		return nil, err
	}
	seed, _ := kp.Seed()
	return json.Marshal(api.CreateUserReply{User: api.User{
		Name: req.Name, PublicKey: pub, JWT: token, Seed: string(seed), Creds: provision.FormatCreds(token, seed),
	}})
}

// floorCreate is account.create without the service: fresh keys from a
// pool (as the service takes them), sign with the operator signing key,
// push on the floors' own connection and wait for the server's 200. It
// stores nothing; the account is deleted after the round.
func (e *Env) floorCreate(name string) error {
	f := e.floors
	ident, err := f.accountKeys.Get()
	if err != nil {
		return err
	}
	defer ident.Wipe()
	signer, err := f.accountKeys.Get()
	if err != nil {
		return err
	}
	defer signer.Wipe()
	pub, _ := ident.PublicKey()
	spub, _ := signer.PublicKey()
	c := jwt.NewAccountClaims(pub)
	c.Name = name
	c.SigningKeys.Add(spub)
	token, err := c.Encode(e.Operator.Signer)
	if err != nil {
		return err
	}
	if err := e.push(subjectClaimsUpdate, token); err != nil {
		return err
	}
	f.mu.Lock()
	f.created = append(f.created, pub)
	f.mu.Unlock()
	return nil
}

// claimsReply is a server's answer on the claims API.
type claimsReply struct {
	Server *struct {
		Name string `json:"name"`
		ID   string `json:"id"`
	} `json:"server"`
	Data *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"data"`
	Error *struct {
		Code        int    `json:"code"`
		Description string `json:"description"`
	} `json:"error"`
}

// errRefused is a claims API request the server did not carry out.
var errRefused = errors.New("bench: the server refused a floor's request")

// pushTimeout bounds the wait for the servers' answers to a floor's push.
const pushTimeout = 30 * time.Second

// push sends a claims API request on the floors' connection and waits for
// every server's answer, as the service's resolver client waits for every
// server it knows.
func (e *Env) push(subject, token string) error {
	return e.pusher.push(subject, []byte(token), pushTimeout)
}

// pusher sends claims API requests on one connection and collects the
// answers of every server on one wildcard subscription, as the service's
// resolver client does (no subscription per request).
type pusher struct {
	nc      *nats.Conn
	servers int
	inbox   string
	sub     *nats.Subscription
	seq     atomic.Uint64
	mu      sync.Mutex
	wait    map[string]chan *nats.Msg
}

// newPusher subscribes to the replies of the requests it will send on nc,
// each to wait for servers servers.
func newPusher(nc *nats.Conn, servers int) (*pusher, error) {
	p := &pusher{nc: nc, servers: servers, inbox: nc.NewInbox() + ".", wait: map[string]chan *nats.Msg{}}
	sub, err := nc.Subscribe(p.inbox+"*", func(m *nats.Msg) {
		token := m.Subject[len(p.inbox):]
		p.mu.Lock()
		ch := p.wait[token]
		p.mu.Unlock()
		if ch != nil {
			select {
			case ch <- m:
			default: // more answers than servers: not needed
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("bench: floor reply subscription: %w", err)
	}
	if err := nc.Flush(); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("bench: floor reply subscription: %w", err)
	}
	p.sub = sub
	return p, nil
}

// push publishes a claims API request and waits until p.servers distinct
// servers have answered 200. A refusal or an unreadable answer fails it,
// as does a timeout before all have answered.
func (p *pusher) push(subject string, data []byte, timeout time.Duration) error {
	token := strconv.FormatUint(p.seq.Add(1), 36)
	ch := make(chan *nats.Msg, 2*p.servers+8)
	p.mu.Lock()
	p.wait[token] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.wait, token)
		p.mu.Unlock()
	}()
	if err := p.nc.PublishRequest(subject, p.inbox+token, data); err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	answered := map[string]bool{}
	for len(answered) < p.servers {
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-timer.C:
			return fmt.Errorf("%s: %d of %d servers answered within %s: %w", subject, len(answered), p.servers, timeout, nats.ErrTimeout)
		}
		if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
			return fmt.Errorf("%s: %w", subject, nats.ErrNoResponders)
		}
		var rep claimsReply
		if err := json.Unmarshal(m.Data, &rep); err != nil {
			return fmt.Errorf("%s: %w", subject, err)
		}
		if rep.Error != nil || rep.Data == nil || rep.Data.Code != 200 {
			return fmt.Errorf("%w: %s: %s", errRefused, subject, m.Data)
		}
		id := ""
		if rep.Server != nil {
			id = rep.Server.ID
		}
		if id == "" {
			// An answer that does not say which server sent it counts
			// once, for a server not yet heard from.
			id = fmt.Sprintf("anonymous-%d", len(answered))
		}
		answered[id] = true
	}
	return nil
}

// stop ends the reply subscription.
func (p *pusher) stop() {
	if p != nil && p.sub != nil {
		p.sub.Unsubscribe()
	}
}

// deleteAccounts deletes accounts from the server, in DELETE requests of
// up to 1,000 accounts, signed by the operator signing key.
func (e *Env) deleteAccounts(pubs []string) error {
	for len(pubs) > 0 {
		n := min(len(pubs), 1000)
		gc := jwt.NewGenericClaims(e.Operator.SignerKey)
		gc.Data["accounts"] = pubs[:n]
		token, err := gc.Encode(e.Operator.Signer)
		if err != nil {
			return err
		}
		if err := e.push(subjectClaimsDelete, token); err != nil {
			return err
		}
		pubs = pubs[n:]
	}
	return nil
}

// deleteFloorAccounts deletes the accounts floorCreate pushed so far.
func (e *Env) deleteFloorAccounts(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f := e.floors
	f.mu.Lock()
	pubs := f.created
	f.created = nil
	f.mu.Unlock()
	return e.deleteAccounts(pubs)
}

// deleteChangeFloors deletes the revoke+update floors' accounts.
func (e *Env) deleteChangeFloors(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f := e.floors
	f.mu.Lock()
	var pubs []string
	for _, c := range f.change {
		if c.pushed.Load() {
			pubs = append(pubs, c.pub)
		}
	}
	f.change = nil
	f.mu.Unlock()
	return e.deleteAccounts(pubs)
}

// changeFloor is the floor of revoke+update on one account: sign and push
// a JWT of the same size as the service's account has, under a key of its
// own.
type changeFloor struct {
	pub     string
	base    atomic.Pointer[jwt.AccountClaims]
	largest atomic.Int64
	pushed  atomic.Bool
}

func (e *Env) newChangeFloor(ctx context.Context) (*changeFloor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	kp, err := keypair.Create(nkeys.PrefixByteAccount)
	if err != nil {
		return nil, err
	}
	defer kp.Wipe()
	c := &changeFloor{}
	c.pub, _ = kp.PublicKey()
	f := e.floors
	f.mu.Lock()
	f.change = append(f.change, c)
	f.mu.Unlock()
	return c, nil
}

// copyFrom takes the claims of the service's account (account.get), with
// every revocation, as the floor's claims for the next round.
func (c *changeFloor) copyFrom(e *Env, account string) error {
	data, err := request(e.Admin, e.Prefix+".account.get", fmt.Appendf(nil, `{"account":%q}`, account))
	if err != nil {
		return err
	}
	var r api.AccountReply
	if err := json.Unmarshal(data, &r); err != nil {
		return err
	}
	claims, err := decodeAccount(r.Account.JWT)
	if err != nil {
		return err
	}
	claims.Subject = c.pub
	c.base.Store(claims)
	return nil
}

// push signs the claims with the i-th change (a connection limit) and
// pushes them. The claims are shared: the copy shares their revocation
// map, which Encode only reads.
func (c *changeFloor) push(e *Env, i int) error {
	claims := *c.base.Load()
	claims.Limits.Conn = int64(1000 + i)
	token, err := claims.Encode(e.Operator.Signer)
	if err != nil {
		return err
	}
	for {
		old := c.largest.Load()
		if int64(len(token)) <= old || c.largest.CompareAndSwap(old, int64(len(token))) {
			break
		}
	}
	c.pushed.Store(true)
	return e.push(subjectClaimsUpdate, token)
}

// size is the largest JWT the floor pushed.
func (c *changeFloor) size() int { return int(c.largest.Load()) }
