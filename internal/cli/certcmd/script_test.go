package certcmd

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestScripts runs testdata/script/*.txt against the real sc-cert binary.
// Besides testscript's own commands they have:
//
//	exitcode N ARGS...   run sc-cert ARGS and require exit status N
//	mode PERM FILE       require FILE's permission bits (skipped on Windows)
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("testdata", "script"),
		Setup: func(env *testscript.Env) error {
			env.Setenv("PATH", binDir+string(os.PathListSeparator)+env.Getenv("PATH"))
			env.Setenv("SC_KEY_PASSWORD", "")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exitcode": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) < 2 {
					ts.Fatalf("usage: exitcode N ARGS...")
				}
				want, err := strconv.Atoi(args[0])
				if err != nil {
					ts.Fatalf("exitcode: %v", err)
				}
				err = ts.Exec("sc-cert", args[1:]...)
				got := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					got = ee.ExitCode()
				} else if err != nil {
					ts.Fatalf("running sc-cert: %v", err)
				}
				if got != want {
					ts.Fatalf("exit code: got %d, want %d", got, want)
				}
			},
			"mode": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: mode PERM FILE")
				}
				want, err := strconv.ParseUint(args[0], 8, 32)
				if err != nil {
					ts.Fatalf("mode: %v", err)
				}
				fi, err := os.Stat(ts.MkAbs(args[1]))
				ts.Check(err)
				if exeSuffix() != "" {
					return
				}
				if got := uint64(fi.Mode().Perm()); got != want {
					ts.Fatalf("%s: mode %04o, want %04o", args[1], got, want)
				}
			},
		},
	})
}
