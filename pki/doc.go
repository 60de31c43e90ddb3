// Package pki makes, stores, checks and rotates the keys and certificates
// of a TLS server: ECDSA, RSA and Ed25519 keys, a local CA kept on disk,
// server certificates issued by it or self-signed, PEM files written
// atomically with safe permissions, and crash-safe re-issue in place.
//
// It uses go.step.sm/crypto for the mechanics and returns only standard
// library types. It imports nothing from the rest of Space Captain, so other
// Go programs can use it alone.
//
// # Entry points
//
//   - [InitLayout] makes the default layout (docs/TRUST.md, "Certificate layouts"):
//     ca.crt, ca.key, server.crt, server.key and server.next.key, or the
//     self-signed variant. sc-cert init and sc-server's first run call it.
//   - [Rotate] re-issues a certificate in place (same key by default, or
//     promoting the next key), from the local CA or self-signed.
//   - [LoadPair] reads a certificate and key and checks they belong together
//     and are valid now; [Pair.TLSCertificate] hands them to crypto/tls.
//   - [GenerateKey] and [CreateCertificate] for keys and certificates one
//     at a time; [ReadKeyFile], [WriteKeyFile], [ReadCertificatesFile],
//     [WriteCertificatesFile], [ParseKeyPEM] and [ParseCertificatesPEM] for
//     PEM.
//   - [Fingerprint] is the certificate's SHA-256 as openssl prints it. Pins,
//     which name keys rather than certificates, live in package pinning.
//   - [NewCertReloader] serves a certificate that follows its files on disk
//     (tls.Config.GetCertificate, hot reload, the next key for KEYS);
//     [NewTicketKeys] shares and rotates session-ticket keys; [NewRenewer]
//     renews a certificate on its own key before it expires.
//
// # Files
//
// Every file is written through internal/atomicfile (temporary file in the
// same directory, fsync, rename, fsync of the directory), keys with mode
// 0600 from creation and certificates 0644; nothing is replaced unless asked.
// Keys are written as PKCS#8, encrypted with PBES2 when a passphrase is
// given; the legacy SEC 1, PKCS#1 and "Proc-Type: 4,ENCRYPTED" forms are
// read. RSA keys over [MaxRSABits] are refused when loaded.
//
// # Changes to several files
//
// [InitLayout] and [Rotate] change several files at once; an interruption at
// any point must leave the complete old set or the complete new set. They
// stage each new file beside its target, write a journal (the commit point),
// rename, and remove the journal; [Recover] rolls an interrupted change back
// (before the commit point) or forward (after it), and runs first in every
// loader and rotation. The reasons for a journal rather than a symlinked
// "..data" generation directory are in [Recover]'s documentation. A lock file
// in the directory (".sc-cert.lock", github.com/gofrs/flock) serialises
// changes by several processes, such as server instances that share a
// certificate directory and renew by themselves.
package pki
