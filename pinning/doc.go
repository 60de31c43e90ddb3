// Package pinning decides whether to trust a TLS server by the public key it
// presents: SPKI pins in the curl/HPKP form, pin sets with backups, a
// trust-on-first-use store in the style of OpenSSH's known_hosts, and
// verifiers that plug into [crypto/tls.Config].
//
// Entry points:
//
//   - [Pin], [ParsePin] and [PinOf] for pins; [Set] and [ParseSet] for a
//     current pin with backups.
//   - [NewTrust] for a client's trust decision in one of the modes [ModeCA],
//     [ModePin], [ModeCAPin], [ModeTOFU] and [ModeInsecure];
//     [Trust.DialContext] (or [Trust.Dial]) connects, handshakes and
//     records what the handshake proved in one call; for another
//     transport (net/http, say) [Trust.Config] gives the tls.Config, and
//     after a completed handshake [Trust.Record] records what it proved.
//     [Trust.RecordAnnounced] records the next keys a server announces
//     inside the session (the reply to the Space Captain protocol's KEYS
//     message; see the DialContext example), and
//     [Trust.RecordAnnouncement] the revocations it announces too.
//   - [NewStore] for the known-hosts file: [Store.Lookup], [Store.List],
//     [Store.Add], [Store.Forget], [Store.Revoke] and [Store.Unrevoke] are
//     what sc-cert pin list/add/forget/revoke/unrevoke do.
//   - [FetchChain] to look at a server's certificates without trusting it.
//   - [NewClientVerifier] for the other direction: a server admitting its
//     clients by an allow list of key pins ([ParseAllowList]) and a client
//     CA, refusing those a revoke list names ([ParseRevokeList]), with
//     the lists followed on disk; [EditAllowList] and [EditRevokeList] are
//     what sc-cert clients allow/revoke do.
//
// Failures that callers act on are typed: [*KeyError] (the server's key is
// not a trusted one; it carries the host, the pins wanted and got, and the
// known-hosts line),
// [*UnknownHostError], [*LineError] (an unreadable line of the store),
// [*RevokedKeyError] (a key revoked for the host) and [*ValidityError].
//
// # Where the check runs
//
// Pins are checked in tls.Config.VerifyConnection, which crypto/tls also
// calls on resumed sessions (VerifyPeerCertificate is not: Go issue 31641),
// so a session cached under one pin set is checked again under the current
// one. This is the only package of the project that sets
// InsecureSkipVerify, from one predicate and only together with its own
// VerifyConnection: in [ModePin] and [ModeTOFU], where the pin and not a CA
// is the trust anchor, in [ModeInsecure], and in [FetchChain]. [ModeCA] and
// [ModeCAPin] keep crypto/tls's chain and name verification.
//
// Nothing is written to the store during a handshake: VerifyConnection only
// reads it, and the client calls [Trust.Record] once the handshake has
// completed, because only then has the server proved that it holds the key
// (its signature and Finished message have been checked).
//
// # The known hosts file
//
// The store is a UTF-8 text file, by default space-captain/known_hosts in
// the user's configuration directory ([DefaultStorePath]). Blank lines and
// lines starting with "#" are comments. Every other line is one server:
//
//	HOST:PORT FIELD...  [# comment]
//
//	127.0.0.1:4242 current=sha256//q5i…=;first=2026-11-26T10:00:00Z;last=2026-11-27T09:12:44Z;via=first-use backup=sha256//Xk2…=;first=2026-11-26T10:00:00Z;via=announced
//
// HOST:PORT is canonical: a lower-case host name without a trailing dot or
// a normalized IP address (IPv6 in brackets), and a decimal port. Fields
// are separated by spaces or tabs. A pin field is current=PIN or
// backup=PIN, followed by ";"-separated attributes: first= (when the pin was
// recorded) and last= (when a verified handshake last presented it), both
// RFC 3339 UTC with whole seconds, and via= (how it was learned: first-use,
// announced, or added by a person); a backup recorded while another key was
// current has after= that key's pin ([PinRecord.After]). A revoked=PIN
// field (first=, via=) marks a pin revoked for the host ([RevokedRecord]):
// it is never accepted, even if the line also lists it. A line has at least
// one pin or one revoked mark, and at most one current pin; any pin not
// revoked is accepted. A line with only revoked marks (a host forgotten
// after a revocation) has no pin field, which versions before revocation
// read as broken: they fail closed for the host rather than trust it on
// first use. Other NAME=VALUE fields and
// attributes are kept as they are, so a newer version can add some; only a
// line that changes is rewritten, and then its unknown fields follow its
// pins.
//
// A line that breaks these rules, or a second line for the same host, is
// reported as a [*LineError] with its line number. Its host fails closed: it
// is neither trusted nor treated as unknown until the line is fixed or the
// host is forgotten. The rest of the file keeps working and is never
// erased. A line whose HOST:PORT cannot be read might be any host's, so
// while it is there no unknown host is trusted on first use.
//
// # Key rollover
//
// A server announces its next key inside a session authenticated by its
// current one; [Trust.RecordAnnounced] records it as a backup (RFC 7583's
// pre-publication, OpenSSH's UpdateHostKeys). When the server moves to that
// key, the handshake is accepted because any pin matches, and
// [Trust.Record] makes the key current, keeping the former current key as
// a backup: the handshake proves the new key, not that the old one is gone
// (a server may roll back, or a fleet may be half rolled over). The server's
// next announcement, made with the new key, is authoritative, as an HPKP
// header (RFC 7469) replaces the pins noted before: learned pins it no
// longer lists, the old key among them, are dropped. Pins added by a
// person stay until that person forgets the host.
//
// # Revocation
//
// A server may also announce keys its operator revoked.
// [Trust.RecordAnnouncement] honours "revoked P" only when P is on file for
// the host, P is not the key just verified, and the verified key is P's
// successor: recorded while P was current ([PinRecord.After]), or added by
// a person after P. A key may never revoke its own successor, or a
// machine in the middle holding a stolen old key could lock clients out of
// the real server. A revoked pin is never learned again; [Store.Forget]
// keeps the marks, so trust on first use never accepts the key either.
package pinning
