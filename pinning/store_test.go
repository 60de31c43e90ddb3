package pinning

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/childproc"
)

// fixedClock is a settable clock for the store's and the verifier's times.
type fixedClock struct {
	mu sync.Mutex
	t  time.Time
}

// newClock starts at the current time (test certificates are valid around
// it), in whole seconds as the store keeps them.
func newClock() *fixedClock {
	return &fixedClock{t: time.Now().UTC().Truncate(time.Second)}
}

func (c *fixedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fixedClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func mustStore(t testing.TB, path string, now func() time.Time) *Store {
	t.Helper()
	s, err := NewStore(StoreOptions{Path: path, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustRead(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

func mustWrite(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustLookup(t testing.TB, s *Store, host string) Entry {
	t.Helper()
	e, ok, err := s.Lookup(host)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatalf("%s: got unknown, want an entry", host)
	}
	return e
}

func TestStoreAddLookupForget(t *testing.T) {
	clock := newClock()
	path := filepath.Join(t.TempDir(), "sub", "known_hosts")
	s := mustStore(t, path, clock.Now)
	a, b, c := PinOfSPKI([]byte("a")), PinOfSPKI([]byte("b")), PinOfSPKI([]byte("c"))

	if _, ok, err := s.Lookup("localhost:4242"); err != nil || ok {
		t.Fatalf("empty store: got %v, %v, want unknown and no error", ok, err)
	}
	if err := s.Add("LocalHost.:4242", a, b); err != nil {
		t.Fatal(err)
	}
	e := mustLookup(t, s, "localhost:4242")
	if e.Host != "localhost:4242" || e.Line == 0 {
		t.Errorf("got host %q line %d, want localhost:4242 on a line", e.Host, e.Line)
	}
	if got := e.Set(); !got.Equal(Set{pins: []Pin{a, b}}) {
		t.Errorf("got pins %v, want %v;%v", got, a, b)
	}
	cur, ok := e.Current()
	if !ok || !cur.Pin.Equal(a) || cur.Origin != OriginAdded || !cur.FirstSeen.Equal(clock.Now()) || !cur.LastSeen.IsZero() {
		t.Errorf("got current %+v, want pin a, added now, never seen", cur)
	}

	// Adding pins already there changes nothing, not even the file's bytes.
	before := mustRead(t, path)
	if err := s.Add("localhost:4242", b, a); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, path); got != before {
		t.Errorf("adding known pins rewrote the file:\n%s", got)
	}
	// A new pin for a known host is a backup.
	if err := s.Add("localhost:4242", c); err != nil {
		t.Fatal(err)
	}
	e = mustLookup(t, s, "localhost:4242")
	if len(e.Pins) != 3 || e.Pins[2].Current || !e.Pins[2].Pin.Equal(c) {
		t.Errorf("got %v, want c appended as a backup", e)
	}

	if err := s.Add("[::1]:4242", c); err != nil {
		t.Fatal(err)
	}
	entries, problems, err := s.List()
	if err != nil || len(problems) != 0 {
		t.Fatalf("List: %v, %v", problems, err)
	}
	if len(entries) != 2 || entries[0].Host != "localhost:4242" || entries[1].Host != "[::1]:4242" {
		t.Errorf("got %v, want both hosts in order", entries)
	}

	removed, err := s.Forget("localhost:4242")
	if err != nil || !removed {
		t.Fatalf("Forget: got %v, %v, want true", removed, err)
	}
	if _, ok, _ := s.Lookup("localhost:4242"); ok {
		t.Error("host still known after Forget")
	}
	mustLookup(t, s, "[0::1]:4242")
	if removed, err := s.Forget("localhost:4242"); err != nil || removed {
		t.Errorf("second Forget: got %v, %v, want false and no error", removed, err)
	}

	for _, tt := range []struct {
		name string
		err  error
	}{
		{"no port", s.Add("localhost", a)},
		{"no pins", s.Add("localhost:1")},
		{"zero pin", s.Add("localhost:1", Pin{})},
	} {
		if tt.err == nil {
			t.Errorf("Add with %s: got no error", tt.name)
		}
	}
}

func TestStoreFileFormat(t *testing.T) {
	clock := newClock()
	dir := filepath.Join(t.TempDir(), "space-captain")
	path := filepath.Join(dir, "known_hosts")
	s := mustStore(t, path, clock.Now)
	a := PinOfSPKI([]byte("a"))
	if err := s.Add("127.0.0.1:4242", a); err != nil {
		t.Fatal(err)
	}
	want := storeHeader + "127.0.0.1:4242 current=" + a.String() + ";first=" + clock.Now().Format(time.RFC3339) + ";via=added\n"
	if got := mustRead(t, path); got != want {
		t.Errorf("got file\n%s\nwant\n%s", got, want)
	}
	if runtime.GOOS != "windows" {
		for _, tt := range []struct {
			path string
			want os.FileMode
		}{{path, 0o600}, {dir, 0o700}} {
			fi, err := os.Stat(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != tt.want {
				t.Errorf("%s: got mode %o, want %o", tt.path, got, tt.want)
			}
		}
	}
}

// Comments, blank lines, CRLF line ends, unknown fields and attributes and
// unparsable lines all survive rewrites; only the line that changed is
// rendered anew.
func TestStorePreservesWhatItDoesNotChange(t *testing.T) {
	clock := newClock()
	path := filepath.Join(t.TempDir(), "known_hosts")
	a, b, c := PinOfSPKI([]byte("a")), PinOfSPKI([]byte("b")), PinOfSPKI([]byte("c"))
	untouched := []string{
		"# my servers\r",
		"",
		"   # indented comment",
		"game.example.com:443   current=" + a.String() + ";via=added   color=blue # the big one\r",
		"this line is garbage",
	}
	touched := "127.0.0.1:4242 note=keep current=" + b.String() + ";first=2026-01-01T00:00:00Z;future=1 # laptop"
	mustWrite(t, path, strings.Join(untouched[:3], "\n")+"\n"+touched+"\n"+strings.Join(untouched[3:], "\n")+"\n")
	s := mustStore(t, path, clock.Now)

	if err := s.Add("127.0.0.1:4242", c); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("10.0.0.1:1", a); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(mustRead(t, path), "\n")
	wantTouched := "127.0.0.1:4242 current=" + b.String() + ";first=2026-01-01T00:00:00Z;future=1 backup=" + c.String() + ";first=" + clock.Now().Format(time.RFC3339) + ";via=added;after=" + b.String() + " note=keep # laptop"
	want := append(append(append([]string{}, untouched[:3]...), wantTouched), untouched[3:]...)
	want = append(want, "10.0.0.1:1 current="+a.String()+";first="+clock.Now().Format(time.RFC3339)+";via=added", "")
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d:\ngot  %q\nwant %q", i+1, got[i], want[i])
		}
	}
}

func TestStoreCorruptLine(t *testing.T) {
	clock := newClock()
	a, b := PinOfSPKI([]byte("a")), PinOfSPKI([]byte("b"))
	good := "h1:1 current=" + a.String()

	t.Run("line for a host fails closed for that host only", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "known_hosts")
		content := good + "\nh2:2 current=sha256//AAAA\nh3:3 current=" + b.String() + "\n"
		mustWrite(t, path, content)
		s := mustStore(t, path, clock.Now)

		mustLookup(t, s, "h1:1")
		mustLookup(t, s, "h3:3")
		if _, ok, err := s.Lookup("h4:4"); err != nil || ok {
			t.Errorf("unrelated unknown host: got %v, %v, want unknown", ok, err)
		}
		_, ok, err := s.Lookup("H2:2")
		var le *LineError
		if !errors.As(err, &le) || ok {
			t.Fatalf("got %v, %v, want a *LineError", ok, err)
		}
		if le.Line != 2 || le.Host != "h2:2" || le.Path != path {
			t.Errorf("got line %d host %q path %q, want line 2, h2:2, %s", le.Line, le.Host, le.Path, path)
		}
		for _, sub := range []string{"line 2", path, "h2:2"} {
			if !strings.Contains(err.Error(), sub) {
				t.Errorf("error %q does not mention %q", err, sub)
			}
		}
		// Adding to the broken host is refused; nothing is written.
		if err := s.Add("h2:2", b); !errors.As(err, &le) {
			t.Errorf("Add to a broken host: got %v, want a *LineError", err)
		}
		if _, err := s.recordHandshake("h2:2", b, clock.Now(), true); !errors.As(err, &le) {
			t.Errorf("first use of a broken host: got %v, want a *LineError", err)
		}
		if got := mustRead(t, path); got != content {
			t.Errorf("file changed:\n%s", got)
		}
		// Other hosts are still written, and the broken line is kept.
		if err := s.Add("h4:4", b); err != nil {
			t.Fatal(err)
		}
		if got := mustRead(t, path); !strings.HasPrefix(got, content) {
			t.Errorf("the rest of the file was not kept:\n%s", got)
		}
		_, problems, err := s.List()
		if err != nil || len(problems) != 1 || problems[0].Line != 2 {
			t.Errorf("List: got problems %v, %v, want line 2", problems, err)
		}
		// Forgetting the host removes the broken line.
		if removed, err := s.Forget("h2:2"); err != nil || !removed {
			t.Fatalf("Forget: %v, %v", removed, err)
		}
		if _, ok, err := s.Lookup("h2:2"); err != nil || ok {
			t.Errorf("after Forget: got %v, %v, want unknown", ok, err)
		}
	})

	t.Run("a second line for a host fails closed", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "known_hosts")
		mustWrite(t, path, good+"\nh1:1 current="+b.String()+"\n")
		s := mustStore(t, path, clock.Now)
		_, _, err := s.Lookup("h1:1")
		var le *LineError
		if !errors.As(err, &le) || le.Line != 2 || !strings.Contains(err.Error(), "also on line 1") {
			t.Errorf("got %v, want a *LineError for line 2 naming line 1", err)
		}
	})

	t.Run("an unreadable host keeps every unknown host from first use", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "known_hosts")
		content := good + "\n\n# ok\nh2;2 current=" + b.String() + "\n"
		mustWrite(t, path, content)
		s := mustStore(t, path, clock.Now)
		mustLookup(t, s, "h1:1")
		_, _, err := s.Lookup("h2:2")
		var le *LineError
		if !errors.As(err, &le) || le.Line != 4 {
			t.Fatalf("got %v, want a *LineError for line 4", err)
		}
		if _, err := s.recordHandshake("h2:2", b, clock.Now(), true); !errors.As(err, &le) {
			t.Errorf("first use: got %v, want a *LineError", err)
		}
		if got := mustRead(t, path); got != content {
			t.Errorf("file changed:\n%s", got)
		}
	})
}

func TestStoreSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "dotfiles", "known_hosts")
	if err := os.MkdirAll(filepath.Dir(real), 0o700); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, real, "# mine\n")
	link := filepath.Join(dir, "known_hosts")
	if err := os.Symlink(real, link); err != nil {
		t.Skipf("cannot make symbolic links here: %v", err)
	}
	s := mustStore(t, link, nil)
	if err := s.Add("h:1", PinOfSPKI([]byte("a"))); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(link)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the symbolic link was replaced by a file")
	}
	if got := mustRead(t, real); !strings.HasPrefix(got, "# mine\nh:1 current=") {
		t.Errorf("the linked file was not updated:\n%s", got)
	}
}

func TestDefaultStorePath(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("XDG_CONFIG_HOME is the Linux convention")
	}
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	got, err := DefaultStorePath()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "space-captain", "known_hosts"); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	s, err := NewStore(StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Path() != got {
		t.Errorf("zero options: got path %q, want %q", s.Path(), got)
	}
}

// The same store changed by many goroutines at once loses nothing.
func TestStoreConcurrentGoroutines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "known_hosts")
	s := mustStore(t, path, nil)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Add(fmt.Sprintf("host%d:4242", i), PinOfSPKI([]byte{byte(i)}))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	entries, problems, err := s.List()
	if err != nil || len(problems) != 0 {
		t.Fatal(problems, err)
	}
	if len(entries) != n {
		t.Errorf("got %d entries, want %d", len(entries), n)
	}
}

// helperEnv names the environment variables of the store helper process.
const (
	helperStore = "PINNING_TEST_STORE_HELPER"
	helperHosts = "PINNING_TEST_STORE_HOSTS"
)

// TestStoreHelperProcess is not a test: run by TestStoreConcurrentProcesses
// in a child process, it waits for a byte on stdin (so that all children
// start together), then adds each host in PINNING_TEST_STORE_HOSTS to the
// store, one locked read-modify-write each.
func TestStoreHelperProcess(t *testing.T) {
	path := os.Getenv(helperStore)
	if path == "" {
		t.Skip("helper process for TestStoreConcurrentProcesses")
	}
	s := mustStore(t, path, nil)
	if _, err := io.ReadFull(os.Stdin, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	for i, h := range strings.Split(os.Getenv(helperHosts), ",") {
		if err := s.Add(h, PinOfSPKI([]byte(h+strconv.Itoa(i)))); err != nil {
			t.Fatal(err)
		}
	}
}

// Issue 4: 20 processes adding different hosts to one store at once lose no
// entry.
func TestStoreConcurrentProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 20 processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "known_hosts")
	mustWrite(t, path, "# shared\n")
	const procs, perProc = 20, 5
	type child struct {
		cmd   *exec.Cmd
		start io.WriteCloser
		out   *strings.Builder
	}
	var children []child
	for p := range procs {
		var hosts []string
		for i := range perProc {
			hosts = append(hosts, fmt.Sprintf("p%d-h%d.example:%d", p, i, 4000+i))
		}
		cmd := exec.Command(exe, "-test.run=^TestStoreHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperStore+"="+path, helperHosts+"="+strings.Join(hosts, ","))
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		start, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := childproc.Start(cmd); err != nil {
			t.Fatal(err)
		}
		children = append(children, child{cmd, start, out})
	}
	for _, c := range children {
		c.start.Write([]byte{1})
		c.start.Close()
	}
	for i, c := range children {
		if err := c.cmd.Wait(); err != nil {
			t.Errorf("process %d: %v\n%s", i, err, c.out)
		}
	}
	s := mustStore(t, path, nil)
	entries, problems, err := s.List()
	if err != nil || len(problems) != 0 {
		t.Fatal(problems, err)
	}
	if len(entries) != procs*perProc {
		t.Errorf("got %d entries, want %d", len(entries), procs*perProc)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		seen[e.Host] = true
	}
	for p := range procs {
		for i := range perProc {
			if h := fmt.Sprintf("p%d-h%d.example:%d", p, i, 4000+i); !seen[h] {
				t.Errorf("lost %s", h)
			}
		}
	}
	if got := mustRead(t, path); !strings.HasPrefix(got, "# shared\n") {
		t.Error("the comment at the top was lost")
	}
}

func TestStoreForgetUnknownCreatesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "space-captain")
	s := mustStore(t, filepath.Join(dir, "known_hosts"), nil)
	if removed, err := s.Forget("h:1"); err != nil || removed {
		t.Fatalf("got %v, %v, want false and no error", removed, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("forgetting in an empty store created %s (%v)", dir, err)
	}
}
