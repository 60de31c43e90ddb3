// Command rotload is the load generator of the interop tests' certificate
// rotation test (rotation_test.go). It is a program of its own, built
// without the race detector, so that a `go test -race` run still makes
// several hundred full TLS handshakes per second: the detector slows
// crypto/tls about fifteen-fold in the process it instruments.
//
// It keeps a Space Captain server busy with
//   - new connections from clients that trust its local CA (-ca), TLS 1.2
//     and 1.3 alternately, each doing one ECHO;
//   - new connections from clients that trust on first use, each with a
//     known-hosts file of its own under -store-dir, which record the key
//     they saw and the next key the server announces through KEYS, as
//     sc-client does;
//   - long-lived connections (-long) that do an ECHO every -echo-every;
//
// With -udp every connection is a DTLS session instead, the CA clients'
// and the TOFU clients' trust decided by pinning.Trust.VerifyPeer;
//
// paced to -rate new connections per second in all, until its standard
// input closes (or -max passes). It reports on standard output, one JSON
// object per line:
//
//	{"ev":"ready"}                                  every client has connected once
//	{"ev":"new","serial":S,"pin":P,"at":NS}         the first handshake that presented serial S, done at NS (Unix ns)
//	{"ev":"learned","client":I,"next":P}            TOFU client I recorded P as the server's next key
//	{"ev":"fail","what":W,"who":C,"err":E}          a failed handshake, request or record
//	{"ev":"stale","serial":S}                       a handshake begun after a newer certificate had been
//	                                                seen presented an older one
//	{"ev":"summary",...}                            counts, once stopped
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

type config struct {
	addr, ca, storeDir string
	caClients          int
	tofuClients        int
	long               int
	rate               int
	echoEvery          time.Duration
	max                time.Duration
	udp                bool
}

func main() {
	var c config
	flag.StringVar(&c.addr, "addr", "", "server HOST:PORT")
	flag.StringVar(&c.ca, "ca", "", "CA certificate file the CA clients trust")
	flag.StringVar(&c.storeDir, "store-dir", "", "directory for the TOFU clients' known-hosts files")
	flag.IntVar(&c.caClients, "ca-clients", 8, "clients that trust the CA")
	flag.IntVar(&c.tofuClients, "tofu-clients", 4, "clients that trust on first use")
	flag.IntVar(&c.long, "long", 8, "long-lived connections")
	flag.IntVar(&c.rate, "rate", 300, "new connections per second, in all")
	flag.DurationVar(&c.echoEvery, "echo-every", 20*time.Millisecond, "ECHO period of each long-lived connection")
	flag.DurationVar(&c.max, "max", 5*time.Minute, "stop after this long even if standard input stays open")
	flag.BoolVar(&c.udp, "udp", false, "every connection is a DTLS 1.2 session over UDP (sc-server --dtls), trusted through pinning's VerifyPeer")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "rotload:", err)
		os.Exit(1)
	}
}

// out writes one event per line; safe for concurrent use.
type out struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (o *out) emit(v map[string]any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	_ = o.enc.Encode(v)
}

// certs tracks the order in which serials were first seen.
type certs struct {
	mu     sync.Mutex
	seq    map[string]int
	latest int
	o      *out
}

// snapshot is the newest certificate seen so far: a handshake begun now
// must present it or a newer one.
func (c *certs) snapshot() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.latest
}

func (c *certs) saw(leaf *x509.Certificate, at time.Time, begunAfter int) {
	serial := pki.SerialHex(leaf.SerialNumber)
	c.mu.Lock()
	n, ok := c.seq[serial]
	if !ok {
		c.latest++
		n = c.latest
		c.seq[serial] = n
	}
	c.mu.Unlock()
	if !ok {
		c.o.emit(map[string]any{"ev": "new", "serial": serial, "pin": pinning.PinOf(leaf).String(), "at": at.UnixNano()})
	}
	if n < begunAfter {
		c.o.emit(map[string]any{"ev": "stale", "serial": serial})
	}
}

type counters struct {
	handshakes, ca, tofu, tls12, tls13 atomic.Int64
	echoes, badAnnouncements, failures atomic.Int64
}

func run(c config) error {
	if c.addr == "" || c.ca == "" || c.storeDir == "" {
		return errors.New("-addr, -ca and -store-dir are required")
	}
	caCert, err := pki.ReadCertificateFile(c.ca)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	o := &out{enc: json.NewEncoder(os.Stdout)}
	seen := &certs{seq: map[string]int{}, o: o}
	var n counters
	fail := func(what, who string, err error) {
		n.failures.Add(1)
		o.emit(map[string]any{"ev": "fail", "what": what, "who": who, "err": err.Error(), "at": time.Now().UnixNano()})
	}

	ctx, stop := context.WithTimeout(context.Background(), c.max)
	defer stop()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()

	// Pacing: one token per new connection.
	tokens := make(chan struct{}, c.caClients+c.tofuClients)
	go func() {
		t := time.NewTicker(time.Second / time.Duration(c.rate))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				select {
				case tokens <- struct{}{}:
				default:
				}
			}
		}
	}()
	take := func() bool {
		select {
		case <-tokens:
			return true
		case <-ctx.Done():
			return false
		}
	}

	var wg, ready sync.WaitGroup
	caConfig := func(i int) *tls.Config {
		v := uint16(tls.VersionTLS13)
		if i%2 == 1 {
			v = tls.VersionTLS12
		}
		return &tls.Config{RootCAs: pool, MinVersion: v, MaxVersion: v}
	}
	countVersion := func(cs tls.ConnectionState) {
		n.handshakes.Add(1)
		if cs.Version == tls.VersionTLS12 {
			n.tls12.Add(1)
		} else {
			n.tls13.Add(1)
		}
	}
	// oneConn dials, checks the certificate's place in the rotation and
	// does one ECHO.
	// caTrust is the CA clients' trust decision over DTLS.
	caTrust, err := pinning.NewTrust(pinning.TrustOptions{Mode: pinning.ModeCA, Roots: pool, Host: c.addr})
	if err != nil {
		return err
	}
	oneConn := func(who string, cfg *tls.Config, trust *pinning.Trust) (*client.Conn, tls.ConnectionState, bool) {
		begun := seen.snapshot()
		// Not ctx: stopping the load must not cut a handshake or an ECHO
		// in flight, which the server would rightly count as failed (a
		// client that closed mid-handshake). Stopping only keeps new
		// connections from starting; each one is bounded by Timeout.
		opts := client.Options{TLSConfig: cfg, Timeout: 10 * time.Second}
		if c.udp {
			opts.TLSConfig, opts.DTLS = nil, &client.DTLSOptions{Verify: trust.VerifyPeer}
		}
		conn, err := client.Dial(context.Background(), c.addr, opts)
		if err != nil {
			fail("handshake", who, err)
			return nil, tls.ConnectionState{}, false
		}
		cs, _ := conn.ConnectionState()
		seen.saw(cs.PeerCertificates[0], time.Now(), begun)
		countVersion(cs)
		if got, err := conn.Do(context.Background(), proto.Echo, []byte(who)); err != nil || string(got) != who {
			fail("echo", who, fmt.Errorf("got %q, %v", got, err))
			conn.Close()
			return nil, cs, false
		}
		return conn, cs, true
	}

	for i := range c.caClients {
		who := "ca-" + strconv.Itoa(i)
		ready.Add(1)
		wg.Go(func() {
			first := true
			for take() {
				conn, _, ok := oneConn(who, caConfig(i), caTrust)
				if ok {
					conn.Close()
					n.ca.Add(1)
				}
				if first {
					first = false
					ready.Done()
				}
			}
			if first {
				ready.Done()
			}
		})
	}

	for i := range c.tofuClients {
		who := "tofu-" + strconv.Itoa(i)
		store, err := pinning.NewStore(pinning.StoreOptions{Path: filepath.Join(c.storeDir, who)})
		if err != nil {
			return err
		}
		trust, err := pinning.NewTrust(pinning.TrustOptions{Mode: pinning.ModeTOFU, Host: c.addr, Store: store})
		if err != nil {
			return err
		}
		ready.Add(1)
		wg.Go(func() {
			first, lastNext := true, ""
			defer func() {
				if first {
					ready.Done()
				}
			}()
			for take() {
				conn, cs, ok := oneConn(who, trust.Config(), trust)
				if !ok {
					continue
				}
				next, ok := tofuRecord(context.Background(), conn, cs, trust, who, fail, &n)
				conn.Close()
				if !ok {
					continue
				}
				n.tofu.Add(1)
				if next != "" && next != lastNext {
					lastNext = next
					o.emit(map[string]any{"ev": "learned", "client": i, "next": next})
				}
				if first && lastNext != "" {
					first = false
					ready.Done()
				}
			}
		})
	}

	var alive atomic.Int64
	for i := range c.long {
		who := "long-" + strconv.Itoa(i)
		ready.Add(1)
		wg.Go(func() {
			conn, _, ok := oneConn(who, caConfig(i), caTrust)
			ready.Done()
			if !ok {
				return
			}
			defer conn.Close()
			alive.Add(1)
			t := time.NewTicker(c.echoEvery)
			defer t.Stop()
			for k := 0; ; k++ {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				body := []byte(who + "/" + strconv.Itoa(k))
				rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				got, err := conn.Do(rctx, proto.Echo, body)
				cancel()
				if err != nil || string(got) != string(body) {
					alive.Add(-1)
					fail("long", who, fmt.Errorf("ECHO %d: got %q, %v", k, got, err))
					return
				}
				n.echoes.Add(1)
			}
		})
	}

	start := time.Now()
	go func() {
		ready.Wait()
		if ctx.Err() == nil {
			o.emit(map[string]any{"ev": "ready"})
		}
	}()
	wg.Wait()
	o.emit(map[string]any{"ev": "summary", "seconds": time.Since(start).Seconds(),
		"handshakes": n.handshakes.Load(), "ca": n.ca.Load(), "tofu": n.tofu.Load(),
		"tls12": n.tls12.Load(), "tls13": n.tls13.Load(), "echoes": n.echoes.Load(),
		"long": c.long, "long_alive": alive.Load(), "failures": n.failures.Load(),
		"bad_announcements": n.badAnnouncements.Load()})
	return nil
}

// tofuRecord does what sc-client does after a TOFU handshake: record the
// key it proved, ask for KEYS and record the announcement. It returns the
// announced next pin. An announcement whose current pin is not the key of
// this handshake (the server moved to a new key between the two) is
// skipped, as sc-client skips it: the next connection records it.
func tofuRecord(ctx context.Context, conn *client.Conn, cs tls.ConnectionState, trust *pinning.Trust, who string,
	fail func(string, string, error), n *counters) (string, bool) {
	if _, err := trust.Record(cs); err != nil {
		fail("record", who, err)
		return "", false
	}
	cur, next, err := conn.Keys(ctx)
	if err != nil {
		if ctx.Err() == nil {
			fail("keys", who, err)
		}
		return "", false
	}
	curPin, err := pinning.ParsePin(cur)
	if err != nil {
		fail("keys", who, err)
		return "", false
	}
	var nextPins []pinning.Pin
	for _, s := range next {
		p, err := pinning.ParsePin(s)
		if err != nil {
			fail("keys", who, err)
			return "", false
		}
		nextPins = append(nextPins, p)
	}
	if _, err := trust.RecordAnnounced(cs, curPin, nextPins); err != nil {
		if errors.Is(err, pinning.ErrBadAnnouncement) {
			n.badAnnouncements.Add(1)
			return "", true
		}
		fail("record", who, err)
		return "", false
	}
	if len(next) == 0 {
		return "", true
	}
	return next[0], true
}
