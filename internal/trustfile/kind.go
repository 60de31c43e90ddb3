package trustfile

import "time"

// Check is a set of optional checks a [Kind] asks [Read] to make.
type Check uint8

// The optional checks.
const (
	// CheckPrivate refuses a file that group or others may access (see
	// the package documentation for the one exception).
	CheckPrivate Check = 1 << iota
	// CheckOwner refuses a file owned by a user other than the process's
	// or root, or that it or a directory on its path is writable by group
	// or others.
	CheckOwner
)

// Size caps, by what a file holds.
const (
	// MaxPEMSize caps certificates and keys: a chain of a few certificates
	// or one key is a few kilobytes; 1 MiB leaves room for any honest one.
	MaxPEMSize = 1 << 20

	// MaxListSize caps the allow and revoke lists: 100,000 entries of a
	// host and a pin each (about 100 bytes a line) with room to spare.
	MaxListSize = 32 << 20

	// MaxKnownHostsSize caps the known hosts store.
	MaxKnownHostsSize = 16 << 20

	// MaxSmallSize caps files of a few lines: ticket keys (at most 16
	// lines of 64 hex digits), PINs and passphrases.
	MaxSmallSize = 64 << 10

	// MaxModuleSize caps shared libraries looked at with [Stat]: PKCS#11
	// modules are a few megabytes.
	MaxModuleSize = 1 << 30
)

// DefaultPipeTimeout is the [Kind.PipeTimeout] of the kinds that accept a
// pipe: long enough for a command in a shell's process substitution
// (<(pass show game/key)) to write, short enough that a FIFO nobody
// writes is an error a person sees.
const DefaultPipeTimeout = 10 * time.Second

// Kind describes one kind of file: its name in errors, its size cap and
// the checks it needs. The zero value has no cap and is refused by
// [Read]; use the variables below or build one from them.
type Kind struct {
	// Name says what the file is in errors: "certificate", "private key".
	Name string
	// MaxSize is the largest file accepted, in bytes.
	MaxSize int64
	// Checks are the optional checks made.
	Checks Check
	// PipeTimeout, when not zero, accepts a pipe at the path as well as a
	// regular file: a FIFO, or /dev/fd/N, the pipe a shell's process
	// substitution <(…) or a pipeline into /dev/stdin passes. [Read]
	// reads it until its writer closes it, at most MaxSize bytes, and
	// gives up with [ErrPipeTimeout] after PipeTimeout: a FIFO nobody
	// writes never hangs the reader. Zero refuses pipes, like every other
	// file that is not regular.
	PipeTimeout time.Duration
}

// With returns k with the checks c added.
func (k Kind) With(c Check) Kind { k.Checks |= c; return k }

// Without returns k with the checks c removed: for looking at a file
// (sc-cert inspect) rather than trusting it.
func (k Kind) Without(c Check) Kind { k.Checks &^= c; return k }

// The kinds of file the toolkit reads.
var (
	Certificate   = Kind{Name: "certificate", MaxSize: MaxPEMSize}
	CACertificate = Kind{Name: "CA certificate", MaxSize: MaxPEMSize}
	PrivateKey    = Kind{Name: "private key", MaxSize: MaxPEMSize, Checks: CheckPrivate | CheckOwner}
	NextKey       = Kind{Name: "next key", MaxSize: MaxPEMSize, Checks: CheckPrivate | CheckOwner}
	CAKey         = Kind{Name: "CA key", MaxSize: MaxPEMSize, Checks: CheckPrivate | CheckOwner}
	TicketKeys    = Kind{Name: "ticket-key file", MaxSize: MaxSmallSize, Checks: CheckPrivate | CheckOwner}
	// PinFile is a PEM file read for the pin of the key in it.
	PinFile    = Kind{Name: "pin file", MaxSize: MaxPEMSize}
	KnownHosts = Kind{Name: "known hosts file", MaxSize: MaxKnownHostsSize, Checks: CheckOwner}
	// Journal is the commit record of a multi-file change, and the files
	// it stages.
	Journal = Kind{Name: "journal", MaxSize: MaxPEMSize}
	// Passphrase is a file holding a key's passphrase on its first line,
	// or a pipe giving it (--key-password-file <(…)).
	Passphrase = Kind{Name: "passphrase file", MaxSize: MaxSmallSize, PipeTimeout: DefaultPipeTimeout}
	// ClientHosts is sc-client's per-host settings file, which says how
	// each server is trusted; ServerConfig is sc-server's configuration
	// file, which names the files it trusts.
	ClientHosts  = Kind{Name: "hosts file", MaxSize: MaxPEMSize, Checks: CheckOwner}
	ServerConfig = Kind{Name: "configuration file", MaxSize: MaxPEMSize, Checks: CheckOwner}
	// PublicNextKey is the public half of a next key kept offline
	// (server.next.pub): it decides which key clients accept next.
	PublicNextKey = Kind{Name: "public next key", MaxSize: MaxPEMSize, Checks: CheckOwner}
	// RevokedKeys is sc-server's list of revoked server-key pins
	// (revoked.pins), announced to clients; KeyState is where sc-server
	// remembers the key it served and the next keys it announced, which
	// decides which key changes pass without an alarm.
	RevokedKeys = Kind{Name: "revoked keys file", MaxSize: MaxListSize, Checks: CheckOwner}
	KeyState    = Kind{Name: "key state file", MaxSize: MaxSmallSize, Checks: CheckOwner}

	// Kinds for files still to come: their readers need only use them.
	AllowList  = Kind{Name: "allow list", MaxSize: MaxListSize, Checks: CheckOwner}
	RevokeList = Kind{Name: "revoke list", MaxSize: MaxListSize, Checks: CheckOwner}
	TokenPIN   = Kind{Name: "token PIN file", MaxSize: MaxSmallSize, Checks: CheckPrivate | CheckOwner}

	// PKCS11Module is a PKCS#11 module a key URI names: a shared library
	// the process loads and runs, so it gets the owner checks of a file
	// that decides trust. It is only looked at ([Stat]), never read.
	PKCS11Module = Kind{Name: "PKCS#11 module", MaxSize: MaxModuleSize, Checks: CheckOwner}
)
