package hosts

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

const sample = `# settings for every host come first
timeout 2s

Host game game.example
    server game.example:4242
    pin sha256//AAAA
    Pin = sha256//BBBB
Host *.test !prod.test
    ca "~/my ca.crt"
    timeout 3s
host *
    tofu off
`

func TestResolve(t *testing.T) {
	f, err := Parse("hosts", []byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		want []string
	}{
		{"game", []string{"timeout=2s@2", "server=game.example:4242@5", "pin=sha256//AAAA@6", "pin=sha256//BBBB@7", "tofu=off@12"}},
		{"GAME.example", []string{"timeout=2s@2", "server=game.example:4242@5", "pin=sha256//AAAA@6", "pin=sha256//BBBB@7", "tofu=off@12"}},
		{"a.test", []string{"timeout=2s@2", "ca=~/my ca.crt@9", "tofu=off@12"}},
		{"prod.test", []string{"timeout=2s@2", "tofu=off@12"}},
		{"other", []string{"timeout=2s@2", "tofu=off@12"}},
	} {
		var got []string
		for _, s := range f.Resolve(c.name) {
			got = append(got, s.Key+"="+s.Value+"@"+itoa(s.Line))
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("Resolve(%q) = %q, want %q", c.name, got, c.want)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, name string
		want          bool
	}{
		{"*", "", true},
		{"*", "a.b", true},
		{"game", "game", true},
		{"game", "games", false},
		{"*.example", "a.example", true},
		{"*.example", "example", false},
		{"g?me", "game", true},
		{"g?me", "gme", false},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"*a", "banana", true},
	} {
		if got := match(c.pattern, c.name); got != c.want {
			t.Errorf("match(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ name, text, want string }{
		{"empty host", "Host\n", "hosts:1: Host with no pattern"},
		{"no value", "Host a\n  server\n", "hosts:2: server: no value"},
		{"open quote", "ca \"x\n", "hosts:1: ca: no closing quote"},
		{"after quote", "ca \"x\" y\n", "hosts:1: ca: text after the closing quote"},
		{"bad key", "se/rver x\n", "hosts:1:"},
		{"match", "Match host x\n", "hosts:1: match is not supported"},
		{"control", "server a\x01b\n", "hosts:1: control characters"},
		{"equals pattern", "Host==\n", `hosts:1: Host pattern "=" holds '='`},
		{"equals inside", "Host a=b\n", `hosts:1: Host pattern "a=b" holds '='`},
	} {
		_, err := Parse("hosts", []byte(c.text))
		var pe *ParseError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want a ParseError with %q", c.name, err, c.want)
		}
	}
}

// AddPins keeps every other byte of the file, adds only new pins, and
// appends a block for a new host.
func TestAddPins(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "hosts")
	res, err := AddPins(path, "game", "game:4300", []string{"sha256//AAAA"})
	if err != nil || !res.NewBlock || res.Line != 1 {
		t.Fatalf("new file: %+v, %v", res, err)
	}
	mustEqualFile(t, path, "Host game\n    server game:4300\n    pin sha256//AAAA\n")
	if fi, _ := os.Stat(filepath.Dir(path)); fi.Mode().Perm() != 0o700 {
		t.Errorf("made the directory %v, want 0700", fi.Mode().Perm())
	}
	if err := os.WriteFile(path, []byte(sample), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	res, err = AddPins(path, "game.example", "game.example:4242", []string{"sha256//CCCC"})
	if err != nil || !res.NewBlock {
		t.Fatalf("a host in a multi-pattern block gets its own block: %+v, %v", res, err)
	}
	res, err = AddPins(path, "game.example", "game.example:4242", []string{"sha256//CCCC", "sha256//DDDD"})
	if err != nil || res.NewBlock || !reflect.DeepEqual(res.Added, []string{"sha256//DDDD"}) {
		t.Fatalf("second add: %+v, %v", res, err)
	}
	want := sample + "\nHost game.example\n    server game.example:4242\n    pin sha256//CCCC\n    pin sha256//DDDD\n"
	mustEqualFile(t, path, want)
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want the file's 0600 kept", fi.Mode().Perm())
	}
	// Into an existing block, after its last setting, before what follows.
	if err := os.WriteFile(path, []byte("Host a\n  server a:1\n# keep me\nHost b\n  tofu off\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := AddPins(path, "a", "a:1", []string{"sha256//EEEE"}); err != nil {
		t.Fatal(err)
	}
	mustEqualFile(t, path, "Host a\n  server a:1\n    pin sha256//EEEE\n# keep me\nHost b\n  tofu off\n")
	// A file that does not parse is left alone.
	if err := os.WriteFile(path, []byte("Host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var pe *ParseError
	if _, err := AddPins(path, "a", "a:1", []string{"sha256//EEEE"}); !errors.As(err, &pe) {
		t.Errorf("bad file: got %v, want a ParseError", err)
	}
	mustEqualFile(t, path, "Host\n")
}

func mustEqualFile(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s:\n%s\nwant:\n%s", path, got, want)
	}
}

// FuzzParse: whatever parses renders to a file that parses to the same
// blocks and settings (the round trip), and resolving never panics.
func FuzzParse(f *testing.F) {
	f.Add(sample)
	f.Add("Host a b !c\n k \"v \\\" w\"\n")
	f.Add("x=y\nHost *\n")
	f.Fuzz(func(t *testing.T, text string) {
		a, err := Parse("f", []byte(text))
		if err != nil {
			return
		}
		b, err := Parse("f", a.render())
		if err != nil {
			t.Fatalf("the rendering of %q does not parse: %v\n%s", text, err, a.render())
		}
		if len(a.Blocks) != len(b.Blocks) {
			t.Fatalf("blocks: %d then %d", len(a.Blocks), len(b.Blocks))
		}
		for i := range a.Blocks {
			if !reflect.DeepEqual(a.Blocks[i].Patterns, b.Blocks[i].Patterns) {
				t.Fatalf("patterns %q then %q", a.Blocks[i].Patterns, b.Blocks[i].Patterns)
			}
			if len(a.Blocks[i].Settings) != len(b.Blocks[i].Settings) {
				t.Fatalf("settings %v then %v", a.Blocks[i].Settings, b.Blocks[i].Settings)
			}
			for j, s := range a.Blocks[i].Settings {
				if u := b.Blocks[i].Settings[j]; s.Key != u.Key || s.Value != u.Value {
					t.Fatalf("setting %q=%q then %q=%q", s.Key, s.Value, u.Key, u.Value)
				}
			}
		}
		_ = a.Resolve("x")
	})
}

// The hosts file says how each server is trusted, so another user must not
// be able to write it: one others may write, or in a directory others may
// write, is refused with the fix (issue 12); a FIFO is refused at once.
func TestReadFileRefusesUnsafeFile(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix modes")
	}
	dir := filepath.Join(t.TempDir(), "space-captain")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "hosts")
	if err := os.WriteFile(path, []byte("Host *\n  tofu off\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(path); err != nil {
		t.Fatalf("a private hosts file: %v", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(path); err == nil || !strings.Contains(err.Error(), "chmod go-w") {
		t.Errorf("a 0666 hosts file: got %v, want a refusal with chmod go-w", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(path); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("in a 0777 directory: got %v, want a refusal naming the directory", err)
	}
}
