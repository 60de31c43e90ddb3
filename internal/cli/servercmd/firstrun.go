package servercmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// ensureCerts makes the default layout when neither the certificate nor
// the key exists, as sc-cert init does, and returns what it made; nil when
// both exist. Only one of them existing is refused: serving a fresh pair
// then would throw away a key clients may have pinned.
func ensureCerts(ctx context.Context, o *options, now func() time.Time) (*pki.InitResult, error) {
	both, err := pairPresent(o)
	if err != nil || both {
		return nil, err
	}
	dir := filepath.Dir(o.cert)
	layout := pki.DefaultLayout(dir)
	if filepath.Clean(o.cert) != filepath.Clean(layout.ServerCert) || filepath.Clean(o.key) != filepath.Clean(layout.ServerKey) ||
		filepath.Clean(o.nextKey) != filepath.Clean(layout.NextKey) {
		return nil, cli.WithHint(fmt.Errorf("the certificate %s and the key %s do not exist", o.cert, o.key),
			"sc-server makes certificates only in the default layout (DIR/server.crt, DIR/server.key, DIR/server.next.key)",
			"make them with: sc-cert init --dir "+dir+" (then name the files it prints), or sc-cert create --cert "+o.cert+" --key "+o.key)
	}
	res, err := pki.InitLayout(ctx, pki.InitOptions{Dir: dir, KeyType: pki.KeyECDSAP256, Now: now})
	if errors.Is(err, fs.ErrExist) {
		return nil, cli.WithHint(fmt.Errorf("making the default certificate layout in %s: %w", dir, err),
			"the directory holds part of a layout (e.g. ca.crt) but not server.crt and server.key: restore them, or start over with sc-cert init --dir "+dir+" --force")
	}
	if err != nil {
		return nil, fmt.Errorf("making the default certificate layout in %s: %w", dir, err)
	}
	return res, nil
}

// pairPresent reports whether the certificate and the key both exist
// (true) or neither does (false). Only one of them existing is an error:
// serving a fresh pair then would throw away a key clients may have
// pinned.
func pairPresent(o *options) (bool, error) {
	certOK, err := exists(o.cert)
	if err != nil {
		return false, err
	}
	keyOK, err := exists(o.key)
	if err != nil {
		return false, err
	}
	// A key URI names a key in a token, not a file: whether the token
	// holds it is learnt by opening it.
	keyOK = keyOK || pki.IsKeyURI(o.key)
	switch {
	case certOK && keyOK:
		return true, nil
	case certOK:
		return false, cli.WithHint(fmt.Errorf("the certificate %s exists but its key %s does not", o.cert, o.key),
			"name the key with --key FILE",
			"to start over, move "+o.cert+" away and run sc-server again (or sc-cert init --force)")
	case keyOK && pki.IsKeyURI(o.key):
		// Whether the token holds the key is not known yet: say only
		// what is missing. The URI holds ';' and must be quoted.
		uri := pki.RedactKeyURI(o.key)
		return false, cli.WithHint(fmt.Errorf("the certificate %s of the token key %s does not exist", o.cert, uri),
			"name the certificate with --cert FILE",
			"to issue a certificate for the token's key (keeping its pin): sc-cert create --key '"+uri+"' --cert "+o.cert)
	case keyOK:
		return false, cli.WithHint(fmt.Errorf("the key %s exists but its certificate %s does not", o.key, o.cert),
			"name the certificate with --cert FILE",
			"to issue a certificate for this key (keeping its pin): sc-cert create --key "+o.key+" --cert "+o.cert)
	}
	return false, nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, err
}

// printCreated tells the person who started the server on a fresh
// directory what was made, which pins clients should use, and how to
// connect.
func printCreated(w io.Writer, res *pki.InitResult, addr net.Addr) {
	l := res.Layout
	pin := pinning.PinOf(res.Server).String()
	next, _ := pinning.PinOfPublicKey(res.NextKey)
	fmt.Fprintf(w, "sc-server: no certificate yet: made the default layout in %s (a local CA issues the server certificate):\n", l.Dir)
	for _, f := range [][2]string{
		{l.CACert, "local CA certificate: give it to CA-file clients"},
		{l.CAKey, "local CA key (0600): renews the server certificate"},
		{l.ServerCert, "server certificate, valid until " + res.Server.NotAfter.UTC().Format(time.RFC3339)},
		{l.ServerKey, "server key (0600)"},
		{l.NextKey, "next server key (0600), for the next key rollover"},
	} {
		fmt.Fprintf(w, "  %-24s %s\n", f[0], f[1])
	}
	fmt.Fprintf(w, "\nPin clients should use (the server key):\n  %s\n", pin)
	fmt.Fprintf(w, "Pin of the next key (hand it out too, so clients survive the rollover):\n  %s\n", next)
	server := clientServerFlag(addr)
	fmt.Fprintf(w, "\nConnect with:\n")
	fmt.Fprintf(w, "  sc-client echo hello%s --ca %s\n", server, l.CACert)
	fmt.Fprintf(w, "  sc-client echo hello%s --pin '%s' --pin '%s'\n\n", server, pin, next)
}

// clientServerFlag returns the --server flag sc-client needs to reach addr,
// or "" for its default, 127.0.0.1:4242.
func clientServerFlag(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	if host == "127.0.0.1" && port == strconv.Itoa(4242) {
		return ""
	}
	return " --server " + strings.TrimSpace(net.JoinHostPort(host, port))
}
