package cli

import (
	"encoding/json"
	"io"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// PrintJSON writes v to w as indented JSON and a newline: the --json output
// of every command.
func PrintJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// IsTerminal reports whether v is an *os.File connected to a terminal.
// Writers that are not files (buffers in tests, pipes) are not terminals.
func IsTerminal(v any) bool {
	f, ok := v.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Version returns the version the build set with -ldflags -X (see
// [VersionLDFlag]; make build and the packages set it from git describe),
// else the module version the binary was built from ("v1.2.3" from go
// install), else the VCS revision with "-dirty" when the tree had changes,
// else "(devel)".
func Version() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "-dirty"
			}
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		return "(devel) " + rev + modified
	}
	return "(devel)"
}

// CompleteValues makes shell completion offer values for the flag of cmd
// that takes one of them (an enum flag such as --key-type or --engine).
func CompleteValues(cmd *cobra.Command, flag string, values ...string) {
	_ = cmd.RegisterFlagCompletionFunc(flag, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
}
