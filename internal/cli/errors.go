package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes every command shares. Commands define their own from
// [ExitFirstCustom] up and list them in their root command's Long help.
const (
	ExitOK          = 0
	ExitFailure     = 1   // any error without a more specific code
	ExitUsage       = 2   // bad flags or arguments
	ExitFirstCustom = 3   // first code free for a command's own failures
	ExitInterrupted = 130 // SIGINT or SIGTERM (128 + 2, as shells report it)
)

// Error is an error with an exit code and hints for the person at the
// terminal. Commands return it (through [WithCode] and [WithHint]) and
// [Report] prints it.
type Error struct {
	// Code is the process exit code; 0 means [ExitFailure].
	Code int
	// Err is the error itself.
	Err error
	// Hints are printed after the error, one "PROG: hint: …" line each;
	// empty ones are skipped.
	Hints []string
}

func (e *Error) Error() string { return e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// WithCode returns err carrying an exit code and hints; nil stays nil. An
// *Error already in err's chain keeps its hints, which come first.
func WithCode(code int, err error, hints ...string) error {
	if err == nil {
		return nil
	}
	var prev *Error
	if errors.As(err, &prev) {
		hints = append(append([]string(nil), prev.Hints...), hints...)
	}
	return &Error{Code: code, Err: err, Hints: hints}
}

// WithHint returns err with hints added, keeping any exit code it carries;
// nil stays nil.
func WithHint(err error, hints ...string) error {
	if err == nil {
		return nil
	}
	return WithCode(ExitCode(err), err, hints...)
}

// Usagef returns a usage error ([ExitUsage]) naming the flags at fault.
func Usagef(format string, args ...any) error {
	return &Error{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

// ExitCode returns the exit code for err: 0 for nil, the code of the
// outermost [*Error] in its chain, [ExitInterrupted] for a cancelled
// context, else [ExitFailure].
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var e *Error
	if errors.As(err, &e) && e.Code != 0 {
		return e.Code
	}
	if errors.Is(err, context.Canceled) {
		return ExitInterrupted
	}
	return ExitFailure
}

// Report prints err to w as "PROG: error: MESSAGE" and one
// "PROG: hint: HINT" line per hint, and returns the exit code. Nothing is
// printed for a nil error.
func Report(w io.Writer, prog string, err error) int {
	if err == nil {
		return ExitOK
	}
	msg := err.Error()
	if errors.Is(err, context.Canceled) {
		msg = "interrupted"
	}
	fmt.Fprintf(w, "%s: error: %s\n", prog, msg)
	var e *Error
	if errors.As(err, &e) {
		for _, h := range e.Hints {
			if h == "" {
				continue
			}
			for _, line := range strings.Split(h, "\n") {
				fmt.Fprintf(w, "%s: hint: %s\n", prog, line)
			}
		}
	}
	return ExitCode(err)
}

// Main runs root with ctx and returns the exit code, after printing any
// error with [Report] under root's name. It is all a main function needs
// besides signal.NotifyContext and os.Exit. Root must set SilenceErrors
// and SilenceUsage, which [SetupRoot] does.
func Main(ctx context.Context, root *cobra.Command) int {
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil && ExitCode(err) == ExitFailure && isCobraUsageError(err) {
		err = &Error{Code: ExitUsage, Err: err, Hints: []string{fmt.Sprintf("run '%s --help' for usage", cmd.CommandPath())}}
	}
	var ce *Error
	if err != nil && !errors.As(err, &ce) {
		// An error of package pinning no command classified: its own
		// message names no command, the hint does.
		if hints := TrustHints(err); hints != nil {
			err = WithHint(err, hints...)
		}
	}
	return Report(root.ErrOrStderr(), root.Name(), err)
}

// isCobraUsageError recognises the errors cobra returns, untyped, for
// required and mutually exclusive flags, argument counts and unknown
// commands — after parsing, where SetFlagErrorFunc does not reach.
func isCobraUsageError(err error) bool {
	msg := err.Error()
	for _, prefix := range []string{
		"required flag(s) ",
		"if any flags in the group ",
		"at least one of the flags in the group ",
		"unknown command ",
		"accepts ",
		"requires at least ",
		"invalid argument ",
	} {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	return false
}

// SetupRoot applies the conventions every root command shares: errors are
// printed once by [Main] (SilenceErrors, SilenceUsage), flag errors become
// usage errors ([ExitUsage]) with a hint pointing at --help, and --version
// prints [Version].
func SetupRoot(root *cobra.Command) {
	root.SilenceErrors = true
	root.SilenceUsage = true
	root.Version = Version()
	root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &Error{Code: ExitUsage, Err: err, Hints: []string{fmt.Sprintf("run '%s --help' for usage", c.CommandPath())}}
	})
}

// ExactArgs is cobra.ExactArgs with a usage error and a hint.
func ExactArgs(n int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return &Error{Code: ExitUsage, Err: fmt.Errorf("%s: want %s, got %d argument(s)", c.CommandPath(), what, len(args)),
				Hints: []string{fmt.Sprintf("run '%s --help' for usage", c.CommandPath())}}
		}
		return nil
	}
}
