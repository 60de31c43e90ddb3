package servercmd

import (
	"crypto"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/server"
	"github.com/spacecaptain/spacecaptain/internal/trustfile"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// minCheckRSABits is the smallest RSA server key --check accepts. Clients
// refuse smaller ones: OpenSSL at its default security level 2 (Debian's,
// among others) rejects RSA keys under 2048 bits, and Go clients under
// 1024. The server itself would start with one and fail every such
// handshake; --check says so before it does.
const minCheckRSABits = 2048

// expiryNotice is how close to expiry --check mentions that a certificate
// will not be renewed: the renewer's first warning.
const expiryNotice = 30 * 24 * time.Hour

// runCheck is --check: it loads everything the server would serve with,
// through the very function a start uses (prepare), prints what it found
// to stdout (JSON with --json) and returns nil, or returns the first
// problem with what to do. It listens on nothing and writes nothing: a
// missing certificate is an error, not a first run, and a certificate
// change that a crash interrupted is reported, not completed — the start
// completes it.
func runCheck(stdout io.Writer, o *options, now func() time.Time) error {
	quiet := slog.New(slog.DiscardHandler)
	var lines [][2]string
	add := func(k, v string) { lines = append(lines, [2]string{k, v}) }
	add("config", o.settings.describe())
	add("listen", o.listen)
	if o.metricsListen != "" {
		add("metrics", o.metricsListen+" (/metrics, /healthz, /readyz)")
	} else {
		add("metrics", "off (--metrics-listen)")
	}
	add("engine", o.srv.Engine)
	add("limits", limitsLine(o))
	if len(o.srv.ProxyProtocolFrom) > 0 {
		add("proxy protocol", "required from "+prefixesValue{&o.srv.ProxyProtocolFrom}.String())
	} else {
		add("proxy protocol", "off (--proxy-protocol-from)")
	}

	srvOpts := o.srv
	srvOpts.Logger = quiet
	if o.plaintext {
		add("tls", "none: --plaintext, for comparison runs only")
	} else {
		both, err := pairPresent(o)
		if err != nil {
			return err
		}
		if !both {
			return cli.WithHint(fmt.Errorf("the certificate %s and the key %s do not exist", o.cert, o.key),
				"--check makes nothing; without it, sc-server makes the default layout there on its first run",
				"or make it now: sc-cert init --dir "+filepath.Dir(o.cert))
		}
		dir := filepath.Dir(o.cert)
		pending, err := pki.Pending(dir)
		if err != nil {
			return err
		}
		// The very functions a start uses, writing nothing.
		src, _, err := newServing(o, quiet, now, nil, true)
		if err == nil {
			_, err = newTicketKeys(o, quiet, now)
		}
		var cfg *tls.Config
		if err == nil {
			cfg, err = newTLSConfig(o.minTLS, o.groups, src.GetCertificate)
		}
		if err != nil {
			if pending {
				return pendingError(dir, o, err)
			}
			return err
		}
		if pending {
			add("warning", pendingMessage(dir, o))
		}
		st := src.rl.State()
		leaf := st.Certificate
		if err := checkKeySize(leaf, o); err != nil {
			return err
		}
		// The key signs a challenge that must verify with the
		// certificate: for a key in a token, proof that the token holds
		// the certificate's key (its public key object is no proof).
		served, _ := src.GetCertificate(nil)
		if err := pki.ProveKey(leaf, served.PrivateKey.(crypto.Signer)); err != nil {
			return cli.TokenHint(fmt.Errorf("the key %s and the certificate %s: %w", o.key, o.cert, err))
		}
		info := infoOf(st)
		left := leaf.NotAfter.Sub(now())
		keyDesc, _ := cli.DescribeKey(leaf.PublicKey)
		add("certificate", fmt.Sprintf("%s: serial %s, %s, valid until %s (%s left)", o.cert, info.Serial,
			keyDesc, leaf.NotAfter.UTC().Format(time.RFC3339), roundDays(left)))
		add("pin", info.Pin.String())
		add("key", keyLine(o.key))
		next := src.nextPinsAnnounced()
		switch {
		case !info.NextPin.IsZero():
			add("next key", fmt.Sprintf("%s: pin %s", o.nextKey, info.NextPin))
		case len(next) > 0:
			add("next key", fmt.Sprintf("kept offline: %s does not exist; KEYS announces the pin(s) of %s and --next-pin", o.nextKey, o.nextPub))
		default:
			add("next key", fmt.Sprintf("none: neither %s nor %s exists and no --next-pin is given, so KEYS announces no next pin", o.nextKey, o.nextPub))
		}
		if len(next) > 0 {
			add("next pins", strings.Join(next, " "))
		}
		line, warning := src.guard.describe()
		add("key change", line)
		if warning != "" {
			add("warning", warning)
		}
		add("revoked keys", revokedLine(o, src))
		add("renewal", renewalLine(o, leaf, left, now))
		add("ticket keys", ticketKeysLine(o))
		if o.clients.auth != pinning.ClientAuthOff {
			v, err := newClientVerifier(o, quiet, nil, nil)
			if err != nil {
				return err
			}
			if err := checkClientCA(v, leaf, o); err != nil {
				return err
			}
			add("client auth", clientCheckLine(o, v))
		} else {
			add("client auth", "off (--client-auth): clients are anonymous")
		}
		srvOpts.TLSConfig, srvOpts.Keys = cfg, src.Keys
		add("tls", "TLS 1.3 preferred, at least "+tls.VersionName(o.minTLS))
		if len(o.groups) > 0 {
			add("groups", groupsValue{&o.groups}.String())
		}
		if w := tlsOnlyGroupsWarning(o.minTLS, o.groups); w != "" {
			add("warning", w)
		}
	}
	if _, err := server.New(srvOpts); err != nil {
		return err
	}
	if o.json {
		out := struct {
			OK     bool              `json:"ok"`
			Checks map[string]string `json:"checks"`
			// Warnings are the "warning" lines, which JSON keys cannot
			// repeat.
			Warnings []string `json:"warnings"`
		}{OK: true, Checks: map[string]string{}, Warnings: []string{}}
		for _, l := range lines {
			if l[0] == "warning" {
				out.Warnings = append(out.Warnings, l[1])
				continue
			}
			out.Checks[strings.ReplaceAll(l[0], " ", "_")] = l[1]
		}
		return cli.PrintJSON(stdout, out)
	}
	fmt.Fprintln(stdout, "sc-server: configuration OK")
	for _, l := range lines {
		fmt.Fprintf(stdout, "  %-12s %s\n", l[0]+":", l[1])
	}
	return nil
}

// pendingMessage says that dir holds an interrupted certificate change.
func pendingMessage(dir string, o *options) string {
	return fmt.Sprintf("an interrupted rotation is pending in %s; it will be completed at start (or run sc-cert rotate --recover --cert %s --key %s)", dir, o.cert, o.key)
}

// pendingError is --check's error when the files do not load while a
// change is pending: the start completes the change first, so what the
// files say now is not what the start would judge.
func pendingError(dir string, o *options, err error) error {
	return cli.WithHint(fmt.Errorf("%s (the files as they are now: %w)", pendingMessage(dir, o), err),
		fmt.Sprintf("complete it now with: sc-cert rotate --recover --cert %s --key %s, then run --check again", o.cert, o.key))
}

// checkKeySize refuses an RSA key that clients would refuse.
func checkKeySize(leaf *x509.Certificate, o *options) error {
	k, ok := leaf.PublicKey.(*rsa.PublicKey)
	if !ok || k.N.BitLen() >= minCheckRSABits {
		return nil
	}
	return cli.WithHint(fmt.Errorf("the key %s is RSA %d: clients refuse RSA keys under %d bits (OpenSSL at its default security level; Go under 1024)",
		o.key, k.N.BitLen(), minCheckRSABits),
		"make a new key and certificate (ECDSA P-256 is the default and the fastest): sc-cert init --dir "+filepath.Dir(o.cert)+" --force, then give clients the new pins")
}

// renewalLine says whether and when the certificate is renewed, and warns
// when it expires within expiryNotice without being renewed.
func renewalLine(o *options, leaf *x509.Certificate, left time.Duration, now func() time.Time) string {
	soon := ""
	if left < expiryNotice {
		soon = fmt.Sprintf("; WARNING: it expires in %s", roundDays(left))
	}
	if !o.autoRenew {
		return "off (--auto-renew=false): warnings only, 30 and 7 days before expiry and at expiry" + soon
	}
	signer := "its own key (self-signed)"
	if !pki.IsSelfSigned(leaf) {
		// The renewer's issuer: --ca-key, or ca.crt and ca.key (or ca.uri)
		// beside the certificate.
		caKey := o.caKey
		if caKey == "" {
			caKey = pki.ResolveKeyPath(filepath.Join(filepath.Dir(o.cert), pki.CAKeyFile))
		}
		if ok, _ := exists(caKey); !ok && !pki.IsKeyURI(caKey) {
			return fmt.Sprintf("not possible: no CA key at %s; warnings only, 30 and 7 days before expiry and at expiry%s", caKey, soon)
		}
		signer = caKey
	}
	r, err := pki.NewRenewer(pki.RenewerOptions{CertPath: o.cert, KeyPath: o.key, IssuerKeyPath: o.caKey, Tokens: o.tokens, Disabled: true, Logger: slog.New(slog.DiscardHandler), Now: now})
	if err != nil {
		return "unknown: " + err.Error()
	}
	return fmt.Sprintf("on the same key from %s (two thirds into its lifetime), signed by %s",
		r.RenewAt(leaf).UTC().Format(time.RFC3339), signer)
}

// ticketKeysLine describes the session-ticket keys.
func ticketKeysLine(o *options) string {
	if o.ticketKeys == "" {
		return fmt.Sprintf("in memory, replaced every %v (only this process resumes its sessions)", o.ticketKeyRotation)
	}
	n := 0
	if data, _, err := trustfile.Read(o.ticketKeys, trustfile.TicketKeys); err == nil {
		if keys, err := pki.ParseTicketKeys(data); err == nil {
			n = len(keys)
		}
	}
	return fmt.Sprintf("%s: %d keys (a key that leaves the file decrypts tickets for %v more)", o.ticketKeys, n, o.ticketKeyRotation)
}

// keyLine describes the key for --check, which has proved it with a
// signature.
func keyLine(key string) string {
	switch {
	case pki.IsKeyURI(key):
		return key + " (in a PKCS#11 token; a signature made by the token verifies with the certificate)"
	case strings.HasSuffix(key, pki.KeyURIExt):
		return fmt.Sprintf("%s (%s; names a key in a PKCS#11 token; a signature made by the token verifies with the certificate)", key, fileMode(key))
	}
	return fmt.Sprintf("%s (%s; a signature made with it verifies with the certificate)", key, fileMode(key))
}

// fileMode returns a file's permission bits as chmod takes them.
func fileMode(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "mode unknown"
	}
	return fmt.Sprintf("mode %04o", fi.Mode().Perm())
}

// roundDays rounds a validity period for people: days, or hours and
// minutes under two days.
func roundDays(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	return d.Round(time.Minute).String()
}

// limitsLine describes the connection limits, for --check.
func limitsLine(o *options) string {
	conns, rate := "off", "off"
	if o.srv.SourceMaxConns > 0 {
		conns = strconv.Itoa(o.srv.SourceMaxConns)
	}
	if r := o.srv.SourceHandshakeRate; r > 0 {
		rate = strconv.FormatFloat(r, 'g', -1, 64) + "/s"
	}
	return fmt.Sprintf("%d connections; per client address %s connections, %s handshakes", o.srv.MaxConns, conns, rate)
}

// revokedLine describes the revoked-keys file and what KEYS announces of it.
func revokedLine(o *options, src *servedCert) string {
	if ok, _ := exists(o.revokedKeys); !ok {
		return fmt.Sprintf("none: %s does not exist, so KEYS announces no revoked pin", o.revokedKeys)
	}
	return fmt.Sprintf("%s: %d pin(s), announced in KEYS", o.revokedKeys, len(src.revokedPins()))
}
