package pinning

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// VerifyPeer decides whether to trust a server that presented rawCerts,
// DER certificates leaf first, as a TLS or DTLS stack hands them over
// (pion/dtls's State.PeerCertificates, crypto/tls's RawCertificates). It
// is the same decision [Trust.Config]'s VerifyConnection makes for
// crypto/tls, for a stack whose own verification is off: in [ModeCA] and
// [ModeCAPin] it verifies the chain itself against the roots and
// [TrustOptions.ServerName] (or Host's host part) at the Trust's time,
// failing with a *tls.CertificateVerificationError as crypto/tls does;
// then it checks pins and the store as for TLS, with the same errors
// ([*KeyError], [*UnknownHostError], [*ValidityError]). Call it from the
// stack's verification hook on every handshake, resumed ones included.
//
// Like VerifyConnection, it only reads the store: after the handshake has
// completed, call [Trust.Record] (or [Trust.RecordAnnounced]) with a
// tls.ConnectionState holding the parsed certificates and
// HandshakeComplete set. VerifyPeer is safe for concurrent use.
func (t *Trust) VerifyPeer(rawCerts [][]byte) error {
	if len(rawCerts) == 0 {
		return ErrNoPeerCertificate
	}
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, der := range rawCerts {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("parsing certificate %d of %d the server presented: %w", i+1, len(rawCerts), err)
		}
		certs[i] = c
	}
	var chains [][]*x509.Certificate
	if !t.mode.skipsChainVerification() {
		if t.serverName == "" {
			return errors.New("verifying the server's certificate: no server name to check it against (set TrustOptions.Host or ServerName)")
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		var err error
		chains, err = certs[0].Verify(x509.VerifyOptions{
			Roots:         t.roots,
			Intermediates: inter,
			DNSName:       t.serverName,
			CurrentTime:   t.time(),
		})
		if err != nil {
			return &tls.CertificateVerificationError{UnverifiedCertificates: certs, Err: err}
		}
	}
	return t.verifyPeer(certs, chains, t.peerName())
}

// ServerName returns the name the server's certificate is checked
// against in [ModeCA] and [ModeCAPin], and that a client sends as SNI:
// [TrustOptions.ServerName], else Host's host part, else "".
func (t *Trust) ServerName() string { return t.serverName }

// peerName names the server in messages when there is no TLS state.
func (t *Trust) peerName() string {
	switch {
	case t.host != "":
		return t.host
	case t.serverName != "":
		return t.serverName
	}
	return "the server"
}
