package interop

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/spacecaptain/spacecaptain/internal/childproc"
	"github.com/spacecaptain/spacecaptain/internal/cli"
)

// binaries are the commands TestMain builds, as package paths below the
// module root.
var binaries = []string{"cmd/sc-cert", "cmd/sc-server", "cmd/sc-client"}

const module = "github.com/spacecaptain/spacecaptain/"

// binDir is where TestMain put the binaries.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	// No configuration file for any program a test starts: not the
	// /etc/space-captain/sc-server.toml a package installed, not the
	// user's sc-client hosts file.
	if err := cli.NoConfigFiles(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "sc-interop-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	for _, pkg := range binaries {
		out := filepath.Join(dir, filepath.Base(pkg)+exe())
		cmd := exec.Command("go", "build", "-o", out, module+pkg)
		cmd.Env = os.Environ()
		if os.Getenv("GOTOOLCHAIN") == "" {
			cmd.Env = append(cmd.Env, "GOTOOLCHAIN=auto") // go.mod asks for a newer Go
		}
		if b, err := childproc.CombinedOutput(cmd); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", pkg, err, b)
			return 1
		}
	}
	binDir = dir
	return m.Run()
}

func exe() string {
	if runtime.GOOS == "windows" {
		return ".exe"
	}
	return ""
}

// bin returns the path of a binary TestMain built.
func bin(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(binDir, name+exe())
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s was not built: add it to binaries in main_test.go", name)
	}
	return p
}

// needTool returns the path of an external tool, skipping the test when it
// is missing — or failing it under CI=true, where every tool must be
// installed (scripts/deps.sh).
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed, and CI=true forbids skipping: install it (scripts/deps.sh)", name)
		}
		t.Skipf("skipping: %s is not installed (apt-get install %s)", name, name)
	}
	return p
}

// run runs a command in dir and returns its stdout; a failure is fatal and
// shows stderr.
func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	out, errOut, err := runErr(dir, nil, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, errOut)
	}
	return out
}

// runErr runs a command in dir with stdin and returns stdout, stderr and
// the error.
func runErr(dir string, stdin []byte, name string, args ...string) (string, string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := childproc.Run(cmd)
	return out.String(), errOut.String(), err
}

// runEnv is runErr with extra environment variables.
func runEnv(dir string, env []string, name string, args ...string) (string, string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := childproc.Run(cmd)
	return out.String(), errOut.String(), err
}
