// Package testutil holds what the tests of several packages share, so that
// each does not carry its own copy: [MustCert], a throwaway self-signed
// certificate for a TLS server on the loopback interface.
//
// It imports nothing of this module: the server core, the DTLS server,
// the client and the metrics are tested without package pki, which is the
// project's way to make real certificates (and is tested on its own).
// Only tests import it.
package testutil
