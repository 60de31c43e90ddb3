// Package atomicfile writes files so that a reader, or a process started after
// a crash, sees either the complete old content or the complete new content,
// never a mix.
//
// Entry points: [WriteFile] for a byte slice and [Write] for content produced
// by a function. Both write a temporary file in the target's directory, fsync
// it, then rename it into place (or hard-link it, when overwriting is not
// allowed, so that an existing file is never clobbered even by a racing
// writer) and fsync the directory where the operating system allows it.
//
// Key files are created with their final permissions from the start: the
// temporary file is never readable by anyone the final file is not.
package atomicfile
