// Package pinning decides whether to trust a TLS server by the public key it
// presents: SPKI pins in the curl/HPKP form, pin sets with backups, a
// trust-on-first-use store in the style of OpenSSH's known_hosts, and
// verifiers that plug into [crypto/tls.Config].
//
// Entry points: [Pin], [ParsePin] and [PinOf] for pins; [FetchChain] to look
// at a server's certificates without trusting it.
//
// Pins are checked in tls.Config.VerifyConnection, which crypto/tls also calls
// on resumed sessions (VerifyPeerCertificate is not). This is the only package
// of the project that sets InsecureSkipVerify, and only together with its own
// VerifyConnection.
package pinning
