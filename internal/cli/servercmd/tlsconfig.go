package servercmd

import (
	"crypto/tls"
	"fmt"
)

// cipherSuites are the TLS 1.2 suites the server accepts: ECDHE key
// exchange (forward secrecy; no static-RSA key exchange) with AEAD ciphers
// only. Go's default TLS 1.2 list still includes CBC-SHA1 suites (testssl
// flags them as obsolete, LUCKY13 "potentially vulnerable"; NOTES.md), so
// the list is explicit. Mbed TLS 2.28, the original clients' stack, speaks
// ECDHE-ECDSA-AES128-GCM-SHA256 among these. TLS 1.3 suites are not
// configurable in crypto/tls and are all AEAD.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// newTLSConfig returns the server's TLS configuration: TLS 1.3 preferred
// (crypto/tls picks the highest version both sides speak), TLS 1.2 allowed
// unless minVersion is 1.3, the certificate only through getCertificate,
// and session resumption on (tickets, whose keys crypto/tls rotates itself
// until someone calls SetSessionTicketKeys on the returned config — the one
// change allowed on it once the server runs).
//
// Certificates stays empty: crypto/tls hands Certificates[0] to clients
// that send no SNI (those that dial an IP address) without calling
// GetCertificate, so they would never see a reloaded certificate.
func newTLSConfig(minVersion uint16, getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)) (*tls.Config, error) {
	if minVersion != tls.VersionTLS12 && minVersion != tls.VersionTLS13 {
		return nil, fmt.Errorf("minimum TLS version %s: want TLS 1.2 or 1.3", tls.VersionName(minVersion))
	}
	return &tls.Config{
		MinVersion:     minVersion,
		MaxVersion:     tls.VersionTLS13,
		CipherSuites:   cipherSuites,
		GetCertificate: getCertificate,
		// Pipelined replies gathered into one write should leave as one
		// record: without this, crypto/tls cuts the first 128 KB after
		// idle into records of one TCP segment (internal/server relies on
		// the caller setting it).
		DynamicRecordSizingDisabled: true,
	}, nil
}
