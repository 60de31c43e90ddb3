package clientcmd

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/pinning"
)

// shortError replaces a long message by a short one on the error line,
// keeping the cause for errors.As (and the JSON error): the full story was
// printed above it, as ssh prints its banner and then "Host key
// verification failed."
type shortError struct {
	msg   string
	cause error
}

func (e *shortError) Error() string { return e.msg }
func (e *shortError) Unwrap() error { return e.cause }

// finish turns a command's error into what sc-client reports: the exit
// code, the warning banner for a changed key, hints, and with --json a
// JSON error on stdout. It returns the error for cli.Main to print once.
func finish(st *streams, o *options, err error) error {
	if err == nil {
		return nil
	}
	err = classify(st, o, err)
	if o.json {
		_ = cli.PrintJSON(st.stdout, jsonError(err))
	}
	return err
}

func classify(st *streams, o *options, err error) error {
	var (
		ke  *pinning.KeyError
		ue  *pinning.UnknownHostError
		le  *pinning.LineError
		cve *tls.CertificateVerificationError
		hn  x509.HostnameError
		ua  x509.UnknownAuthorityError
		se  *client.ServerError
		pe  *proto.ProtocolError
	)
	var re *pinning.RevokedKeyError
	switch {
	case errors.As(err, &re):
		fmt.Fprint(st.stderr, cli.RevokedWarning(re))
		msg := fmt.Sprintf("host key verification failed: %s presented the key %v, which was revoked %s", re.Host, re.Pin, revokedBy(re))
		return cli.WithCode(ExitKeyMismatch, &shortError{msg, err})
	case errors.As(err, &ke) && ke.WantsCertificateFingerprint():
		// A pin mistaken, not a key changed: no attack banner.
		msg := fmt.Sprintf("a pin trusted for %s is the certificate's fingerprint, not a key pin; use %v (sc-cert fingerprint --format pin)", ke.Host, ke.Got)
		hint := "give --pin " + ke.Got.String() + " (a pin names the key, and survives re-issues of the certificate)"
		if ke.Path != "" {
			hint = fmt.Sprintf("the known hosts file %s, line %d, holds it: %s, then sc-cert pin add %s '%v'", ke.Path, ke.Line, cli.ForgetCommand(ke.Path, ke.Host), ke.Host, ke.Got)
		}
		return cli.WithCode(ExitKeyMismatch, &shortError{msg, err}, hint)
	case errors.As(err, &ke):
		fmt.Fprint(st.stderr, cli.KeyWarning(ke))
		msg := fmt.Sprintf("host key verification failed: %s presented key %v, which is not the trusted one", ke.Host, ke.Got)
		return cli.WithCode(ExitKeyMismatch, &shortError{msg, err})
	case errors.As(err, &ue):
		if ue.Declined {
			return cli.WithCode(ExitUnknownHost, err, "nothing was recorded; to trust the key after checking it out of band: "+cli.AddCommand(ue.Path, ue.Host, ue.Got))
		}
		return cli.WithCode(ExitUnknownHost, err, append(cli.TrustHints(err), "or connect once with --tofu auto (or prompt) to trust it on first use")...)
	case errors.As(err, &le):
		return cli.WithHint(err, cli.TrustHints(err)...)
	case errors.As(err, &cve), errors.As(err, &hn), errors.As(err, &ua):
		return cli.WithCode(ExitUntrusted, err,
			"check that --ca is the CA that issued the server's certificate (e.g. certs/ca.crt beside it), and that the certificate names the host of --server (sc-cert inspect HOST:PORT shows both)")
	case errors.As(err, &se):
		return cli.WithCode(ExitServerError, err)
	case errors.As(err, &pe) && pe.Kind != proto.KindTruncated:
		return cli.WithCode(ExitServerError, err)
	case isBadCertificateAlert(err):
		// The server refused the client's identity, or its lack of one
		// (sc-server --client-auth).
		return cli.WithHint(err, "the server refused this client's identity, or wants one: make one with sc-client identity new and give its pin (sc-client identity show) to the operator, or present another with --identity FILE")
	case o.plaintext && (errors.Is(err, io.EOF) || errors.As(err, &pe) || errors.Is(err, syscall.ECONNRESET)):
		// A TLS server answers plaintext with an alert, which reads as a
		// bad frame, or hangs up.
		return cli.WithHint(err, "is the server speaking TLS? --plaintext talks only to an sc-server started with --plaintext; drop it to use TLS")
	case errors.Is(err, io.EOF) || errors.As(err, &pe):
		return cli.WithHint(err, "the server closed the connection; its log may say why (a request over its --max-message closes it)")
	}
	return err
}

// errorJSON is the --json form of an error.
type errorJSON struct {
	Error struct {
		Message string `json:"message"`
		Code    int    `json:"code"`
		// Kind is a stable word for scripts: key_mismatch, revoked_key, unknown_host,
		// known_hosts_line, untrusted_certificate, server_error, error.
		Kind          string    `json:"kind"`
		Host          string    `json:"host,omitempty"`
		PinOffered    string    `json:"pin_offered,omitempty"`
		TrustedPins   []pinJSON `json:"trusted_pins,omitempty"`
		KnownHosts    string    `json:"known_hosts,omitempty"`
		Line          int       `json:"line,omitempty"`
		ForgetCommand string    `json:"forget_command,omitempty"`
		AddCommand    string    `json:"add_command,omitempty"`
		Hints         []string  `json:"hints,omitempty"`
	} `json:"error"`
}

type pinJSON struct {
	Pin  string `json:"pin"`
	Role string `json:"role"`
}

func jsonError(err error) errorJSON {
	var j errorJSON
	e := &j.Error
	e.Code = cli.ExitCode(err)
	e.Kind = "error"
	var (
		ke *pinning.KeyError
		ue *pinning.UnknownHostError
		le *pinning.LineError
		ce *cli.Error
		se *client.ServerError
	)
	var re *pinning.RevokedKeyError
	switch {
	case errors.As(err, &re):
		e.Kind, e.Host, e.PinOffered, e.KnownHosts, e.Line = "revoked_key", re.Host, re.Pin.String(), re.Path, re.Line
		e.Message = re.Error()
	case errors.As(err, &ke):
		e.Kind, e.Host, e.PinOffered = "key_mismatch", ke.Host, ke.Got.String()
		e.KnownHosts, e.Line = ke.Path, ke.Line
		if ke.Path != "" {
			e.ForgetCommand = cli.ForgetCommand(ke.Path, ke.Host)
		}
		for _, w := range ke.Want {
			role := "backup"
			if w.Current {
				role = "current"
			}
			e.TrustedPins = append(e.TrustedPins, pinJSON{w.Pin.String(), role})
		}
		// The one-line form of the whole story, not the short line.
		e.Message = ke.Error()
	case errors.As(err, &ue):
		e.Kind, e.Host, e.PinOffered, e.KnownHosts, e.AddCommand = "unknown_host", ue.Host, ue.Got.String(), ue.Path, cli.AddCommand(ue.Path, ue.Host, ue.Got)
	case errors.As(err, &le):
		e.Kind, e.Host, e.KnownHosts, e.Line = "known_hosts_line", le.Host, le.Path, le.Line
	case e.Code == ExitUntrusted:
		e.Kind = "untrusted_certificate"
	case errors.As(err, &se) || e.Code == ExitServerError:
		e.Kind = "server_error"
	}
	if e.Message == "" {
		e.Message = err.Error()
	}
	if errors.As(err, &ce) {
		e.Hints = ce.Hints
	}
	return j
}

// isBadCertificateAlert reports whether err is the server's TLS alert
// bad_certificate or certificate_required: crypto/tls reports an alert the
// peer sent as a *net.OpError whose Op is "remote error".
func isBadCertificateAlert(err error) bool {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" {
		return false
	}
	msg := op.Err.Error()
	return strings.Contains(msg, "bad certificate") || strings.Contains(msg, "certificate required")
}

// revokedBy says who revoked a key, for the short error line.
func revokedBy(re *pinning.RevokedKeyError) string {
	switch {
	case re.Path == "":
		return "by --revoked-pin"
	case re.Origin == pinning.OriginAnnounced:
		return "by the server's operator"
	}
	return "in " + re.Path
}
