package clientcmd

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// trustPlan is how one connection decides trust: the pinning.Trust, and
// for trust on first use whether the host was unknown before.
type trustPlan struct {
	trust *pinning.Trust
	store *pinning.Store // ModeTOFU only
}

// newTrust builds the trust decision the flags ask for. For an unknown
// host under --tofu prompt it asks first (see promptFirstUse).
func (o *options) newTrust(ctx context.Context, st *streams) (*trustPlan, error) {
	opts := pinning.TrustOptions{
		Host:       o.server,
		ServerName: o.serverName,
		Now:        st.env.Now,
		Warn: func(err error) {
			st.warnf("%v", err)
			for _, h := range cli.TrustHints(err) {
				st.warnf("%s", h)
			}
		},
	}
	for _, r := range o.revoked {
		p, err := pinning.ParsePin(r)
		if err != nil {
			return nil, cli.Usagef("--revoked-pin %q: %v", r, err)
		}
		opts.Revoked = append(opts.Revoked, p)
	}
	switch {
	case o.insecure:
		opts.Mode = pinning.ModeInsecure
	case o.ca != "" || len(o.pins) > 0:
		opts.Mode = pinning.ModePin
		if o.ca != "" {
			roots, err := readRoots(o.ca)
			if err != nil {
				return nil, err
			}
			opts.Roots = roots
			opts.Mode = pinning.ModeCA
		}
		if len(o.pins) > 0 {
			set, err := pinning.ParseSet(o.pins...)
			if err != nil {
				return nil, cli.Usagef("--pin: %v", err)
			}
			for _, r := range opts.Revoked {
				if set.Contains(r) {
					return nil, cli.Usagef("--pin %v is also given to --revoked-pin: a key can't be both trusted and revoked", r)
				}
			}
			opts.Pins = set
			if o.ca != "" {
				opts.Mode = pinning.ModeCAPin
			}
		}
	default:
		return o.newTOFUTrust(ctx, st, opts)
	}
	t, err := pinning.NewTrust(opts)
	if err != nil {
		return nil, err
	}
	return &trustPlan{trust: t}, nil
}

func (o *options) newTOFUTrust(ctx context.Context, st *streams, opts pinning.TrustOptions) (*trustPlan, error) {
	store, err := pinning.NewStore(pinning.StoreOptions{Path: o.knownHosts, Now: st.env.Now})
	if err != nil {
		return nil, err
	}
	opts.Mode, opts.Store = pinning.ModeTOFU, store
	policy := o.tofu
	if policy == "" {
		policy = "auto"
		if st.isTerminal {
			policy = "prompt"
		}
	}
	switch policy {
	case "prompt":
		opts.TOFU = pinning.TOFUPrompt
	case "off":
		opts.TOFU = pinning.TOFUOff
	}
	if policy == "prompt" && !st.isTerminal {
		return nil, cli.Usagef("--tofu prompt needs a terminal on standard input to ask on; use --tofu auto to record unknown servers, or add the pin first with sc-cert pin add")
	}
	e, found, err := store.Lookup(o.server)
	if err != nil {
		// A damaged line for this host fails closed, with its line number
		// and the command that forgets it.
		return nil, err
	}
	// A host known only by its revoked marks (forgotten after a
	// revocation) is a first use again, for every key but those.
	found = found && len(e.Pins) > 0
	plan := &trustPlan{store: store}
	if found && policy == "prompt" {
		// Known now; should another process forget the host before the
		// handshake, it is not asked about in the middle of it.
		opts.Prompt = func(host string, _ pinning.Pin, _ *x509.Certificate) (bool, error) {
			st.warnf("%s was removed from %s while connecting; not trusting it", host, store.Path())
			return false, nil
		}
	}
	if !found && policy == "prompt" {
		approved, err := o.promptFirstUse(ctx, st, store)
		if err != nil {
			return nil, err
		}
		// The prompt inside the handshake is answered from the approval:
		// the key must be the one the person saw.
		opts.Prompt = func(host string, pin pinning.Pin, _ *x509.Certificate) (bool, error) {
			if !pin.Equal(approved) {
				st.warnf("%s now presents the key %v, not the %v you accepted; refusing", host, pin, approved)
				return false, nil
			}
			return true, nil
		}
	}
	t, err := pinning.NewTrust(opts)
	if err != nil {
		return nil, err
	}
	plan.trust = t
	return plan, nil
}

// promptFirstUse shows an unknown server's key and asks whether to trust
// it, before the real connection: the question waits for the person as
// long as it takes, which a prompt inside the handshake cannot (the
// server's handshake timeout runs meanwhile). The key is fetched with a
// completed handshake, so the server has shown it holds it; the real
// connection then checks it presents the same key, and only after that
// handshake is the key recorded.
func (o *options) promptFirstUse(ctx context.Context, st *streams, store *pinning.Store) (pinning.Pin, error) {
	certs, err := o.fetchChain(ctx)
	if err != nil {
		return pinning.Pin{}, err
	}
	leaf := certs[0]
	pin := pinning.PinOf(leaf)
	w := st.stderr
	fmt.Fprintf(w, "The server %s is not in the known hosts file %s.\n", o.server, store.Path())
	fmt.Fprintf(w, "It presented a key with the pin\n    %v\n", pin)
	fmt.Fprintf(w, "in a certificate for %s, issued by %s, valid until %s.\n",
		describeSubject(leaf), leaf.Issuer.String(), leaf.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "Compare the pin with the one the server's operator gave you (sc-server prints it\n")
	fmt.Fprintf(w, "on its first run; sc-cert fingerprint certs/server.crt shows it).\n")
	fmt.Fprintf(w, "Trust this key and record it? [y/N] ")
	// A signal at the question ends the command at once (exit 130); the
	// line it waited for is abandoned.
	answer, err := cli.ReadLine(ctx, st.stdin)
	if ctx.Err() != nil {
		fmt.Fprintln(w)
		return pinning.Pin{}, ctx.Err()
	}
	if err != nil && err != io.EOF {
		return pinning.Pin{}, fmt.Errorf("reading the answer: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return pin, nil
	}
	if err == io.EOF {
		fmt.Fprintln(w)
	}
	return pinning.Pin{}, &pinning.UnknownHostError{Host: o.server, Got: pin, Path: store.Path(), Declined: true}
}

// describeSubject names a certificate for a person: its subject and its
// DNS and IP names.
func describeSubject(c *x509.Certificate) string {
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	s := c.Subject.String()
	if s == "" {
		s = "(empty subject)"
	}
	if len(names) > 0 {
		s += " (" + strings.Join(names, ", ") + ")"
	}
	return s
}

// readRoots reads the --ca file into a pool.
func readRoots(path string) (*x509.CertPool, error) {
	certs, err := pki.ReadCertificatesFile(path)
	if err != nil {
		return nil, cli.WithHint(fmt.Errorf("reading --ca: %w", err), "give the CA certificate the server's certificate was issued by, e.g. certs/ca.crt")
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}
