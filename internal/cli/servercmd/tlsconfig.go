package servercmd

import (
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/spacecaptain/spacecaptain/internal/cli"
)

// cipherSuites are the TLS 1.2 suites the server accepts: ECDHE key
// exchange (forward secrecy; no static-RSA key exchange) with AEAD ciphers
// only. Go's default TLS 1.2 list still includes CBC-SHA1 suites (testssl
// flags them as obsolete, LUCKY13 "potentially vulnerable"), so
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
//
// groups are the key-exchange groups in order of preference; nil keeps
// crypto/tls's default, which puts the post-quantum hybrid X25519MLKEM768
// first (about 35-40% more server CPU per full handshake than X25519 alone;
// docs/BENCHMARKS.md).
func newTLSConfig(minVersion uint16, groups []tls.CurveID, getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)) (*tls.Config, error) {
	if minVersion != tls.VersionTLS12 && minVersion != tls.VersionTLS13 {
		return nil, fmt.Errorf("minimum TLS version %s: want TLS 1.2 or 1.3", tls.VersionName(minVersion))
	}
	return &tls.Config{
		MinVersion:       minVersion,
		MaxVersion:       tls.VersionTLS13,
		CipherSuites:     cipherSuites,
		CurvePreferences: groups,
		GetCertificate:   getCertificate,
		// Pipelined replies gathered into one write should leave as one
		// record: without this, crypto/tls cuts the first 128 KB after
		// idle into records of one TCP segment (internal/server relies on
		// the caller setting it).
		DynamicRecordSizingDisabled: true,
	}, nil
}

// tlsOnlyGroupsWarning says why a group list shuts out TLS 1.2 clients, or
// returns "" when it does not: hybrids exist only in TLS 1.3, so a list of
// nothing else leaves a TLS 1.2 client (the original clients' Mbed TLS 2.x)
// no key exchange.
func tlsOnlyGroupsWarning(minVersion uint16, groups []tls.CurveID) string {
	if minVersion > tls.VersionTLS12 || len(groups) == 0 {
		return ""
	}
	for _, g := range groups {
		if !cli.IsHybridGroup(g) {
			return ""
		}
	}
	return "--groups lists only post-quantum hybrids, which TLS 1.2 cannot negotiate: TLS 1.2 clients (such as Mbed TLS 2.x) will fail to connect; add X25519 or P-256, or set --min-tls 1.3"
}

// groupsValue is a flag for a comma-separated list of key-exchange groups.
type groupsValue struct{ g *[]tls.CurveID }

func (f groupsValue) String() string {
	var names []string
	for _, g := range *f.g {
		names = append(names, cli.GroupName(g))
	}
	return strings.Join(names, ",")
}

func (f groupsValue) Set(s string) error {
	g, err := cli.ParseGroups(s)
	if err != nil {
		return err
	}
	*f.g = g
	return nil
}

func (groupsValue) Type() string { return "list" }
