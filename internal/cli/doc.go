// Package cli is the shared base of the Space Captain commands (sc-cert,
// sc-server, sc-client): how errors become "PROG: error: …" and
// "PROG: hint: …" lines and exit codes, passphrases from a file, an
// environment variable or a terminal prompt, a progress spinner that only
// a terminal sees, JSON output, and the version from the build info.
//
// Entry points: [Main] runs a root command and returns the exit code;
// [WithCode], [WithHint] and [Error] carry an exit code and hints up from a
// command; [Passphrase] reads passphrases; [StartSpinner], [PrintJSON] and
// [Version] for output.
//
// The commands themselves live in sub-packages (internal/cli/certcmd for
// sc-cert), each built by constructors a test can call with SetArgs and
// SetOut.
package cli
