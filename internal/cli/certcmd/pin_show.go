package certcmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/internal/trustfile"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
	"github.com/spf13/cobra"
)

type pinShowOptions struct {
	*pinFlags
	next       bool
	nextKey    string
	serverName string
	timeout    time.Duration
	json       bool
	pass       *cli.Passphrase
	tokenPIN   *cli.TokenPIN
	tokens     *pki.Tokens
}

func newPinShowCmd(env *Env, f *pinFlags) *cobra.Command {
	o := &pinShowOptions{pinFlags: f, pass: env.passphrase(), tokenPIN: env.tokenPIN()}
	cmd := &cobra.Command{
		Use:   "show FILE|DIR|HOST:PORT [--next]",
		Short: "Show the pins to hand to clients: a server's current key and, with --next, its next one",
		Long: `show prints the pin of a server's key, in the form curl --pinnedpubkey and
sc-client --pin take, and with --next the pin of the key it will move to at
the next planned rollover (sc-cert rotate --promote-next). A pin-mode client
given both, current first, keeps working across that rollover.

The argument is one of:

  DIR        a certificate directory of the default layout (sc-cert init):
             the pin of server.crt; --next adds server.next.key's
  FILE       a certificate (the leaf of a chain), a private key or a public
             key; --next adds the next key beside it: server.next.key beside
             a certificate, server.next.key for server.key (or --next-key)
  HOST:PORT  a running server (read as HOST:PORT when no file of that name
             exists): the pin of the key it presents; --next asks it for
             its next pins (KEYS) over the same connection

For a server in the known hosts file (--known-hosts) the connection is
verified against the pins on file, so the next pins it announces are
authenticated by its current key, and a server presenting another key is
refused (exit 6). For a server not in the file the pins are fetched over a
connection nobody authenticated: they prove nothing, and the output says
so. Compare them with sc-cert pin show run on the server itself before
handing them out. Nothing is ever written to the known hosts file.`,
		Example: `  sc-cert pin show certs/                  # the current pin
  sc-cert pin show certs/ --next           # current and next: hand both to pin-mode clients
  sc-cert pin show certs/server.crt --next --json
  sc-cert pin show certs/server.next.key
  sc-cert pin show game.example:4242 --next
  curl --pinnedpubkey "$(sc-cert pin show certs/ --next --json | jq -r .pins)" ...`,
		Args: cli.ExactArgs(1, "one FILE, DIR or HOST:PORT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.pass.Prompt, o.pass.Context = cmd.ErrOrStderr(), cmd.Context()
			return runPinShow(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), env, args[0], o)
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&o.next, "next", false, "also show the next key's pin, to hand out ahead of the rollover")
	fs.StringVar(&o.nextKey, "next-key", "", "the next key `FILE`, with --next and a FILE or DIR (default: server.next.key beside FILE, or in DIR)")
	fs.StringVar(&o.serverName, "server-name", "", "TLS server `NAME` (SNI) to ask for, with HOST:PORT (default: the host of HOST:PORT)")
	cli.PositiveDurationVar(fs, &o.timeout, "timeout", client.DefaultTimeout, "how long to wait for a server to connect and handshake, and then for its KEYS reply")
	o.pass.AddFlags(fs)
	o.tokenPIN.AddFlags(fs)
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	return cmd
}

type pinShowJSON struct {
	Source      string   `json:"source"`
	Kind        string   `json:"kind"` // layout, certificate, private key, public key, server
	Current     string   `json:"current"`
	CurrentFrom string   `json:"current_from"`
	Next        []string `json:"next,omitempty"`
	NextFrom    string   `json:"next_from,omitempty"`
	// Pins is the list to hand out, current first, in curl's form.
	Pins string `json:"pins"`
	// Verified is set for a server: whether the connection was verified
	// against the known hosts file.
	Verified   *bool  `json:"verified,omitempty"`
	VerifiedBy string `json:"verified_by,omitempty"`
	Warning    string `json:"warning,omitempty"`
}

func runPinShow(ctx context.Context, stdout, stderr io.Writer, env *Env, arg string, o *pinShowOptions) error {
	if o.nextKey != "" && !o.next {
		return cli.Usagef("--next-key needs --next")
	}
	var out *pinShowJSON
	o.tokens = openTokens(stderr, o.tokenPIN, "--next-key", o.nextKey)
	defer o.tokens.Close()
	fi, err := os.Stat(arg)
	switch {
	case err == nil:
		out, err = showFile(arg, fi, o)
	case errors.Is(err, fs.ErrNotExist):
		if _, herr := canonicalHost(arg); herr != nil {
			return cli.WithHint(fmt.Errorf("reading %q: %w", arg, fs.ErrNotExist),
				"give a certificate or key FILE, a certificate DIR (e.g. certs/), or a server as HOST:PORT (e.g. localhost:4242)")
		}
		if o.nextKey != "" {
			return cli.Usagef("--next-key is for a FILE or DIR; a server at %s announces its own next pins", arg)
		}
		out, err = showServer(ctx, stderr, env, arg, o)
	}
	if err != nil {
		return err
	}
	if o.json {
		return cli.PrintJSON(stdout, out)
	}
	printPinShow(stdout, out)
	return nil
}

// showFile reads the pins of a certificate directory or a file.
func showFile(arg string, fi fs.FileInfo, o *pinShowOptions) (*pinShowJSON, error) {
	out := &pinShowJSON{Source: arg}
	var nextPath string
	if fi.IsDir() {
		l := pki.DefaultLayout(arg)
		out.Kind, out.CurrentFrom, nextPath = "layout", l.ServerCert, pki.ResolveKeyPath(l.NextKey)
		// The certificate gives the pin without a passphrase; a directory
		// holding only the key is still a layout.
		if _, err := os.Stat(l.ServerCert); errors.Is(err, fs.ErrNotExist) {
			if _, kerr := os.Stat(l.ServerKey); kerr == nil {
				out.CurrentFrom = l.ServerKey
			} else {
				return nil, cli.WithHint(fmt.Errorf("%s holds neither %s nor %s", arg, pki.ServerCertFile, pki.ServerKeyFile),
					"give a directory made by sc-cert init or sc-server, or a certificate or key FILE")
			}
		}
	} else {
		out.CurrentFrom = arg
	}
	pin, kind, err := readPin(out.CurrentFrom, o)
	if err != nil {
		return nil, err
	}
	if out.Kind == "" {
		out.Kind = kind
		switch kind {
		case "certificate":
			nextPath = pki.ResolveKeyPath(filepath.Join(filepath.Dir(arg), pki.NextKeyFile))
		default:
			nextPath = pki.NextKeyPath(arg)
		}
	}
	out.Current, out.Pins = pin.String(), pin.String()
	if !o.next {
		return out, nil
	}
	if o.nextKey != "" {
		nextPath = o.nextKey
	} else if kind == "CA certificate" {
		// A CA's key is not rolled over with server.next.key: pairing
		// them would hand out a pin set that matches no rollover.
		return nil, cli.Usagef("%s is a CA certificate, and the next key beside it is the server's, not the CA's: give the server certificate or the directory, or name the next key with --next-key", arg)
	}
	next, _, err := readPin(nextPath, o)
	if errors.Is(err, fs.ErrNotExist) {
		certPath, keyPath := out.CurrentFrom, pki.SiblingKeyPath(out.CurrentFrom)
		if kind == "private key" {
			certPath, keyPath = strings.TrimSuffix(out.CurrentFrom, filepath.Ext(out.CurrentFrom))+".crt", out.CurrentFrom
		}
		return nil, cli.WithHint(fmt.Errorf("there is no next key to show: %w", err),
			fmt.Sprintf("sc-cert init makes server.next.key with the layout, and sc-cert rotate --promote-next --cert %s --key %s makes a fresh one; name another file with --next-key FILE", certPath, keyPath))
	}
	if err != nil {
		return nil, err
	}
	if next.Equal(pin) {
		return nil, fmt.Errorf("the next key %s has the same pin as the current one from %s: a rollover to it would change nothing", nextPath, out.CurrentFrom)
	}
	out.Next, out.NextFrom = []string{next.String()}, nextPath
	out.Pins += ";" + next.String()
	return out, nil
}

// readPin returns the pin of the key in a PEM file — a certificate (the
// first of a chain), a private key (decrypted with the passphrase if need
// be) or a public key — and which of these it was.
func readPin(path string, o *pinShowOptions) (pinning.Pin, string, error) {
	data, _, err := trustfile.Read(path, trustfile.PinFile)
	if err != nil {
		return pinning.Pin{}, "", err
	}
	switch {
	case bytes.Contains(data, []byte("PRIVATE KEY-----")) || pki.IsKeyURI(string(bytes.TrimSpace(data))):
		// A key file, or a file naming a key in a token (a .uri file).
		key, err := pki.ReadKeyFile(path, pki.KeyOptions{Passphrase: o.pass.Source(path), Tokens: o.tokens})
		if err != nil {
			return pinning.Pin{}, "", cli.TokenHint(keyHint(err, "", path))
		}
		pin, err := pinning.PinOfPublicKey(key.Signer.Public())
		if err != nil {
			return pinning.Pin{}, "", fmt.Errorf("reading %q: %w", path, err)
		}
		return pin, "private key", nil
	case bytes.Contains(data, []byte("PUBLIC KEY-----")):
		pin, err := pinning.ParsePinPEM(data)
		if err != nil {
			return pinning.Pin{}, "", fmt.Errorf("reading %q: %w", path, err)
		}
		return pin, "public key", nil
	}
	// Anything else is read as certificates, whose parser explains what
	// it found instead.
	certs, err := pki.ReadCertificatesFile(path)
	if err != nil {
		return pinning.Pin{}, "", err
	}
	if certs[0].IsCA {
		return pinning.PinOf(certs[0]), "CA certificate", nil
	}
	return pinning.PinOf(certs[0]), "certificate", nil
}

// showServer connects to a server and reports the pin of the key it
// presents and, with --next, the next pins it announces through KEYS.
func showServer(ctx context.Context, stderr io.Writer, env *Env, addr string, o *pinShowOptions) (*pinShowJSON, error) {
	store, err := o.openStore(env)
	if err != nil {
		return nil, err
	}
	// A damaged line for the host fails closed here too: showing pins as
	// if the host were unknown would hide the problem.
	entry, known, err := store.Lookup(addr)
	if err != nil {
		return nil, err
	}
	// A host with only revoked marks has no key to verify against.
	known = known && len(entry.Pins) > 0
	out := &pinShowJSON{Source: addr, Kind: "server", Verified: &known}
	opts := pinning.TrustOptions{Host: addr, ServerName: o.serverName, Now: env.Now}
	if known {
		// Trust on first use with first use off: only the pins on file are
		// accepted, and without Trust.Record nothing is written.
		opts.Mode, opts.Store, opts.TOFU = pinning.ModeTOFU, store, pinning.TOFUOff
		opts.Warn = func(err error) { fmt.Fprintf(stderr, "sc-cert: warning: %v\n", err) }
		out.VerifiedBy = fmt.Sprintf("known hosts file %s, line %d", store.Path(), entry.Line)
	} else {
		// An unauthenticated look, which the output says; the warning
		// pinning would log for every such connection is that message.
		opts.Mode = pinning.ModeInsecure
		opts.Warn = func(error) {}
		out.Warning = fmt.Sprintf("not verified: %s is not in the known hosts file %s, so these pins came over a connection nobody authenticated and prove nothing; compare them with sc-cert pin show run on the server before handing them out",
			addr, store.Path())
	}
	trust, err := pinning.NewTrust(opts)
	if err != nil {
		return nil, err
	}
	conn, err := client.Dial(ctx, addr, client.Options{TLSConfig: trust.Config(), Timeout: o.timeout})
	if err != nil {
		var ke *pinning.KeyError
		if errors.As(err, &ke) {
			return nil, cli.WithCode(ExitPinMismatch, ke, append(cli.TrustHints(ke),
				"to look at the key it presents without trusting it: sc-cert fingerprint "+addr)...)
		}
		return nil, cli.WithHint(fmt.Errorf("connecting to %s: %w", addr, err),
			fmt.Sprintf("is a Space Captain server listening on %s? (no file named %q exists, so it was read as HOST:PORT)", addr, addr))
	}
	defer conn.Close()
	cs, _ := conn.ConnectionState()
	pin := pinning.PinOf(cs.PeerCertificates[0])
	out.Current, out.CurrentFrom, out.Pins = pin.String(), "presented by "+addr, pin.String()
	if !o.next {
		return out, nil
	}
	kctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	cur, next, err := conn.Keys(kctx)
	if err != nil {
		var se *client.ServerError
		if errors.As(err, &se) {
			return nil, cli.WithHint(fmt.Errorf("%s does not announce its keys: %w", addr, err),
				"run sc-cert pin show --next on the server's certificate directory instead")
		}
		return nil, fmt.Errorf("asking %s for its keys: %w", addr, err)
	}
	if p, err := pinning.ParsePin(cur); err != nil || !p.Equal(pin) {
		return nil, fmt.Errorf("%s announced %q as its current pin but presented the key %v: %w", addr, cur, pin, pinning.ErrBadAnnouncement)
	}
	if len(next) == 0 {
		return nil, cli.WithHint(fmt.Errorf("%s announces no next key", addr),
			"an sc-server announces the pin of its next key file (server.next.key) when it exists; sc-cert init makes it")
	}
	set, err := pinning.ParseSet(append([]string{cur}, next...)...)
	if err != nil {
		return nil, fmt.Errorf("%s announced pins: %w: %w", addr, err, pinning.ErrBadAnnouncement)
	}
	out.Next, out.NextFrom, out.Pins = pinStrings(set.Backups()), "announced by "+addr+" (KEYS)", set.String()
	return out, nil
}

func printPinShow(w io.Writer, out *pinShowJSON) {
	fmt.Fprintf(w, "current %s  (%s)\n", out.Current, describeFrom(out.CurrentFrom))
	for _, n := range out.Next {
		fmt.Fprintf(w, "next    %s  (%s)\n", n, describeFrom(out.NextFrom))
	}
	switch {
	case out.Verified == nil:
	case *out.Verified:
		fmt.Fprintf(w, "verified: the server presented a key on file in the %s\n", out.VerifiedBy)
	default:
		fmt.Fprintf(w, "NOT VERIFIED: %s\n", strings.TrimPrefix(out.Warning, "not verified: "))
	}
	what := "the pin"
	if len(out.Next) > 0 {
		what = "the pins, current first"
	}
	fmt.Fprintf(w, "\nHand clients %s:\n", what)
	fmt.Fprintf(w, "  sc-client --pin '%s' ...\n", out.Pins)
	fmt.Fprintf(w, "  curl --pinnedpubkey '%s' ...\n", out.Pins)
}

func describeFrom(from string) string {
	if strings.HasPrefix(from, "presented by ") || strings.HasPrefix(from, "announced by ") {
		return from
	}
	return "from " + from
}
