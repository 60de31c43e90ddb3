// Command gendocs writes the man pages and shell completion scripts of
// sc-cert, sc-server and sc-client from their cobra commands, so that what
// `man sc-server` and a shell's Tab say is what --help says.
//
// It writes, under -out (the repository's docs directory by default, when
// run by go generate):
//
//	man/                    one page per command, section 1 (man/sc-cert-init.1, …)
//	completions/bash/       sc-cert, sc-server, sc-client (for /usr/share/bash-completion/completions/)
//	completions/zsh/        _sc-cert, … (for a directory on $fpath)
//	completions/fish/       sc-cert.fish, … (for ~/.config/fish/completions/)
//	completions/powershell/ sc-cert.ps1, … (to dot-source from $PROFILE)
//
// replacing whatever those directories held, so that a removed command's
// page goes too. The output is the same on every run: the pages carry a
// fixed date (see manDate) and no "Auto generated" footer, and the
// commands are built in a neutral environment (no $HOME or
// $XDG_CONFIG_HOME), so that a default such as sc-client's known-hosts
// file reads as its generic wording rather than the generating user's
// path. It runs on Linux only: the pages describe the Linux build (the
// engines sc-server offers differ by platform).
//
// Regenerate after changing any command's help, flags or subcommands:
//
//	go generate ./...
//
// TestDocsUpToDate fails until the committed files match.
package main

//go:generate go run . -out ../../../docs
