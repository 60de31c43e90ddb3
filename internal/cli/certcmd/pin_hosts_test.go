package certcmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pin add --to hosts writes the pins into sc-client's hosts file, in the
// block of the server's host, and leaves the known hosts store alone.
func TestPinAddToHosts(t *testing.T) {
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	store := filepath.Join(dir, "known_hosts")
	const a = "sha256//PN5c5d1wBtw5Kb6aNSzB/G8y4wXvKbmBDDi7RK1F0lM="
	const b = "sha256//Bterp39tseurdiFK7zkMl2GHPwh++bv+Z2LuUf9z0Ss="
	if err := os.WriteFile(hosts, []byte("# mine\nHost *\n    tofu off\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := run(t, Env{}, "pin", "add", "--to", "hosts", "--hosts-file", hosts, "game.example:4300", a)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "Added Host game.example (server game.example:4300)") {
		t.Errorf("output: %s", out)
	}
	if _, _, code := run(t, Env{}, "pin", "add", "--to", "hosts", "--hosts-file", hosts, "game.example:4300", a, b); code != 0 {
		t.Fatalf("second add: exit %d", code)
	}
	got, err := os.ReadFile(hosts)
	if err != nil {
		t.Fatal(err)
	}
	want := "# mine\nHost *\n    tofu off\n\nHost game.example\n    server game.example:4300\n    pin " + a + "\n    pin " + b + "\n"
	if string(got) != want {
		t.Errorf("hosts file:\n%s\nwant:\n%s", got, want)
	}
	if _, err := os.Stat(store); !os.IsNotExist(err) {
		t.Errorf("the known hosts store was touched: %v", err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"pin", "add", "--to", "elsewhere", "h:1", a}, `--to "elsewhere"`},
		{[]string{"pin", "add", "--to", "hosts", "--hosts-file", hosts, "--known-hosts", store, "h:1", a}, "--known-hosts can't be used with --to hosts"},
		{[]string{"pin", "add", "--to", "hosts", "--hosts-file", "", "h:1", a}, "no hosts file"},
	} {
		if _, errOut, code := run(t, Env{}, c.args...); code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%q: exit %d, want 2 and %q: %s", c.args, code, c.want, errOut)
		}
	}
}
