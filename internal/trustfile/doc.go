// Package trustfile reads the files the toolkit trusts — certificates,
// private keys, CA files, session-ticket keys, pin files, the known hosts
// store, and the allow lists, revoke lists, public next keys and token PIN
// files still to come — through one hardened reader, so that a hostile or
// broken path cannot hang, exhaust or fool the process that reads it.
//
// [Read] opens without blocking (O_NONBLOCK where the platform has it, so
// that a FIFO at the path returns at once instead of waiting for a
// writer), checks with fstat that it opened a regular file (a FIFO, a
// device such as /dev/zero, a socket or a directory is refused), refuses a
// file larger than its [Kind] allows before reading a byte of it, and reads
// at most that much. A Kind may ask for two more checks, as OpenSSH's
// StrictModes does:
//
//   - [CheckPrivate]: group and others have no access, except that a file
//     owned by root may be readable by its group when the process is not
//     root (how Kubernetes mounts a secret for a pod with an fsGroup).
//   - [CheckOwner]: the file is owned by the process's user or by root —
//     no other user could have planted it — and neither it nor any
//     directory on its path, up to the directory it was named in, is
//     writable by group or others, unless that directory is owned by root
//     and sticky (only a file's owner can replace it there: /tmp, and the
//     tmpfs Kubernetes mounts a secret volume on). A process running as
//     root accepts only files and directories owned by root: root can read
//     anything, but the question is who could have written it.
//
// The owner and mode checks apply on Unix; Windows has ACLs instead of
// these mode bits, and only the regular-file and size checks apply there.
//
// The package imports nothing else of this module, so that pki and
// pinning, which may not import each other, can both use it.
package trustfile
