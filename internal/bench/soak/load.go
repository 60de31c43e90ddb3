package soak

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/bench"
	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// player is a client that trusts the server on first use, with a
// known-hosts file of its own. Its connections are made one at a time, as
// one player's would be: two handshakes of one player racing across a key
// change could see the second refuse the old key the first just retired,
// which is about the test, not the server.
type player struct {
	trust *pinning.Trust
	mu    sync.Mutex
	next  atomic.Value // string: the next pin it recorded last
}

// windows holds the clients' figures of the current sampling window.
type windows struct {
	mu                           sync.Mutex
	hb, pp, nw                   *bench.Histogram
	errors, reconnects, lockouts int64
}

func newWindows() *windows {
	return &windows{hb: bench.NewHistogram(), pp: bench.NewHistogram(), nw: bench.NewHistogram()}
}

func (w *windows) record(h func(*windows) *bench.Histogram, d time.Duration) {
	w.mu.Lock()
	h(w).Record(d)
	w.mu.Unlock()
}

// load is the clients of a run.
type load struct {
	o       Options
	addr    string
	players []*player
	ca      [2]*pinning.Trust // TLS 1.3 and TLS 1.2
	body    []byte

	win atomic.Pointer[windows]
	tot struct {
		handshakes, heartbeats, pingPongs, newConns         atomic.Int64
		errors, lockouts, reconnects, learned, badAnnounced atomic.Int64
	}
	held atomic.Int64

	errMu      sync.Mutex
	errSamples []string
	start      time.Time
}

// maxErrorSamples bounds the distinct error messages a summary keeps.
const maxErrorSamples = 10

func newLoad(o Options, addr, caFile, storeDir string) (*load, error) {
	l := &load{o: o, addr: addr, body: []byte("heartbeat-0123456789abcdef")}
	l.win.Store(newWindows())
	caCert, err := pki.ReadCertificateFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	for i, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t, err := pinning.NewTrust(pinning.TrustOptions{Mode: pinning.ModeCA, Roots: pool, Host: addr,
			Config: &tls.Config{MinVersion: v, MaxVersion: v}})
		if err != nil {
			return nil, err
		}
		l.ca[i] = t
	}
	for i := range o.Players {
		store, err := pinning.NewStore(pinning.StoreOptions{Path: filepath.Join(storeDir, fmt.Sprintf("player-%03d", i))})
		if err != nil {
			return nil, err
		}
		t, err := pinning.NewTrust(pinning.TrustOptions{Mode: pinning.ModeTOFU, Host: addr, Store: store})
		if err != nil {
			return nil, err
		}
		p := &player{trust: t}
		p.next.Store("")
		l.players = append(l.players, p)
	}
	return l, nil
}

// fail counts a client failure, a lockout if the server's key was refused.
func (l *load) fail(what string, err error) {
	l.tot.errors.Add(1)
	var ke *pinning.KeyError
	lockout := errors.As(err, &ke)
	if lockout {
		l.tot.lockouts.Add(1)
	}
	w := l.win.Load()
	w.mu.Lock()
	w.errors++
	if lockout {
		w.lockouts++
	}
	w.mu.Unlock()
	msg := fmt.Sprintf("%.1fs %s: %v", time.Since(l.start).Seconds(), what, err)
	l.errMu.Lock()
	defer l.errMu.Unlock()
	if len(l.errSamples) < maxErrorSamples {
		l.errSamples = append(l.errSamples, msg)
	}
}

// connect opens connection number who as its client would: every CAEvery-th
// trusts the CA (TLS 1.3 and 1.2 in turn), the others are players, who
// record the key they proved and then, through KEYS, the key the server
// announces as its next.
func (l *load) connect(who int) (*client.Conn, error) {
	if who%l.o.CAEvery == 0 {
		c, err := client.Dial(context.Background(), l.addr, client.Options{TLSConfig: l.ca[(who/l.o.CAEvery)%2].Config(), Timeout: l.o.Timeout})
		if err == nil {
			l.tot.handshakes.Add(1)
		}
		return c, err
	}
	p := l.players[who%len(l.players)]
	p.mu.Lock()
	defer p.mu.Unlock()
	c, err := client.Dial(context.Background(), l.addr, client.Options{TLSConfig: p.trust.Config(), Timeout: l.o.Timeout})
	if err != nil {
		return nil, err
	}
	l.tot.handshakes.Add(1)
	if err := l.learn(p, c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// learn does what sc-client does after a trust-on-first-use handshake:
// record the key, ask KEYS, record the announcement. An announcement whose
// current key is not this handshake's (the server moved to its next key in
// between) is skipped, as sc-client skips it.
func (l *load) learn(p *player, c *client.Conn) error {
	cs, _ := c.ConnectionState()
	if _, err := p.trust.Record(cs); err != nil {
		return fmt.Errorf("recording the key: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.o.Timeout)
	defer cancel()
	cur, next, err := c.Keys(ctx)
	if err != nil {
		return fmt.Errorf("KEYS: %w", err)
	}
	curPin, err := pinning.ParsePin(cur)
	if err != nil {
		return fmt.Errorf("KEYS: %w", err)
	}
	var nextPins []pinning.Pin
	for _, s := range next {
		np, err := pinning.ParsePin(s)
		if err != nil {
			return fmt.Errorf("KEYS: %w", err)
		}
		nextPins = append(nextPins, np)
	}
	if _, err := p.trust.RecordAnnounced(cs, curPin, nextPins); err != nil {
		if errors.Is(err, pinning.ErrBadAnnouncement) {
			l.tot.badAnnounced.Add(1)
			return nil
		}
		return fmt.Errorf("recording the announced keys: %w", err)
	}
	if len(next) > 0 && p.next.Load().(string) != next[0] {
		p.next.Store(next[0])
		l.tot.learned.Add(1)
	}
	return nil
}

// echo does one ECHO of body on c, bounded by the timeout, and checks the
// reply.
func (l *load) echo(c *client.Conn, body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), l.o.Timeout)
	defer cancel()
	got, err := c.Do(ctx, proto.Echo, body)
	if err != nil {
		return err
	}
	if string(got) != string(body) {
		return fmt.Errorf("ECHO of %d bytes came back as %d bytes %.20q", len(body), len(got), got)
	}
	return nil
}

// allLearned reports whether every player has recorded pin as the next
// key, and the first one that has not.
func (l *load) allLearned(pin string) (bool, int) {
	for i, p := range l.players {
		if p.next.Load().(string) != pin {
			return false, i
		}
	}
	return true, -1
}

// stopped reports whether stop is closed.
func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// wait waits d, and reports false if stop closed first.
func wait(stop <-chan struct{}, d time.Duration) bool {
	if d <= 0 {
		return !stopped(stop)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}

// held runs held connection i: it opens it (under the dial semaphore),
// waits for every held connection to be open, then sends a heartbeat ECHO
// every Heartbeat, its first at a point of the period spread evenly over
// the connections. A failed connection is reopened, with a backoff, and
// counted as a reconnect. Stopping never cuts an operation in flight (the
// server would count it as failed): each ends by itself within Timeout.
func (l *load) heldConn(i int, sem chan struct{}, opened *sync.WaitGroup, ready, stop <-chan struct{}) {
	var c *client.Conn
	sem <- struct{}{}
	c, err := l.connect(i)
	<-sem
	if err == nil {
		if err = l.echo(c, l.body); err != nil {
			c.Close()
			c = nil
		}
	}
	if err != nil {
		l.fail("opening held connection "+strconv.Itoa(i), err)
		c = nil
	} else {
		l.held.Add(1)
	}
	opened.Done()
	defer func() {
		if c != nil {
			c.Close()
			l.held.Add(-1)
		}
	}()
	select {
	case <-ready:
	case <-stop:
		return
	}
	phase := time.Duration(goldenFraction(i) * float64(l.o.Heartbeat))
	if !wait(stop, phase) {
		return
	}
	t := time.NewTicker(l.o.Heartbeat)
	defer t.Stop()
	pause := time.Duration(0)
	for {
		if c == nil {
			nc, err := l.connect(i)
			if err != nil {
				l.fail("reopening held connection "+strconv.Itoa(i), err)
				pause = min(max(2*pause, 100*time.Millisecond), 5*time.Second)
				if !wait(stop, pause) {
					return
				}
				continue
			}
			c, pause = nc, 0
			l.held.Add(1)
			l.tot.reconnects.Add(1)
			w := l.win.Load()
			w.mu.Lock()
			w.reconnects++
			w.mu.Unlock()
		}
		t0 := time.Now()
		if err := l.echo(c, l.body); err != nil {
			l.fail("heartbeat on held connection "+strconv.Itoa(i), err)
			c.Close()
			c = nil
			l.held.Add(-1)
			continue
		}
		l.win.Load().record(func(w *windows) *bench.Histogram { return w.hb }, time.Since(t0))
		l.tot.heartbeats.Add(1)
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// pingPong runs ping-pong connection i: an ECHO of 64 bytes, its reply,
// then the next, paced to PingPongRate a second. It trusts the CA.
func (l *load) pingPong(i int, stop <-chan struct{}) {
	body := make([]byte, 64)
	for k := range body {
		body[k] = byte('a' + (i+k)%26)
	}
	var c *client.Conn
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	t := time.NewTicker(time.Duration(float64(time.Second) / l.o.PingPongRate))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if c == nil {
			nc, err := l.connect(0) // connection 0 trusts the CA
			if err != nil {
				l.fail("opening ping-pong connection "+strconv.Itoa(i), err)
				if !wait(stop, time.Second) {
					return
				}
				continue
			}
			c = nc
		}
		t0 := time.Now()
		if err := l.echo(c, body); err != nil {
			l.fail("ping-pong ECHO on connection "+strconv.Itoa(i), err)
			c.Close()
			c = nil
			continue
		}
		l.win.Load().record(func(w *windows) *bench.Histogram { return w.pp }, time.Since(t0))
		l.tot.pingPongs.Add(1)
	}
}

// maxNewInFlight bounds the new connections in progress at once: past it a
// new connection is not started and counts as a failure (the server is not
// keeping up).
const maxNewInFlight = 200

// newConns opens NewRate connections a second, each doing one ECHO and
// closing, numbered on from first so that they cycle through the players
// and the CA clients.
func (l *load) newConns(first int, stop <-chan struct{}, wg *sync.WaitGroup) {
	inFlight := make(chan struct{}, maxNewInFlight)
	t := time.NewTicker(time.Duration(float64(time.Second) / l.o.NewRate))
	defer t.Stop()
	for who := first; ; who++ {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		select {
		case inFlight <- struct{}{}:
		default:
			l.fail("new connection", fmt.Errorf("%d new connections still in progress", maxNewInFlight))
			continue
		}
		wg.Go(func() {
			defer func() { <-inFlight }()
			t0 := time.Now()
			c, err := l.connect(who)
			if err == nil {
				err = l.echo(c, l.body)
				c.Close()
			}
			if err != nil {
				l.fail("new connection "+strconv.Itoa(who), err)
				return
			}
			l.win.Load().record(func(w *windows) *bench.Histogram { return w.nw }, time.Since(t0))
			l.tot.newConns.Add(1)
		})
	}
}

// goldenFraction spreads connection i's heartbeat over the period: the
// fractional parts of i×φ are evenly spread for any number of connections.
func goldenFraction(i int) float64 {
	const phi = 0.6180339887498949
	f := float64(i) * phi
	return f - float64(int64(f))
}

// servedSerial dials the server trusting the CA and returns the serial of
// the certificate it presents.
func (l *load) servedSerial() (string, error) {
	c, err := client.Dial(context.Background(), l.addr, client.Options{TLSConfig: l.ca[0].Config(), Timeout: l.o.Timeout})
	if err != nil {
		return "", err
	}
	defer c.Close()
	l.tot.handshakes.Add(1)
	if err := l.echo(c, []byte("probe")); err != nil {
		return "", err
	}
	cs, _ := c.ConnectionState()
	return pki.SerialHex(cs.PeerCertificates[0].SerialNumber), nil
}
