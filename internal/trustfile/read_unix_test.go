//go:build unix

package trustfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A FIFO at the path is refused at once: nothing waits for a writer that
// never comes (issue 12: a FIFO at the certificate path hung the reload,
// and then shutdown).
func TestReadRefusesFIFOWithoutBlocking(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "server.crt")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := Read(fifo, Certificate)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "FIFO") {
			t.Errorf("got %v, want ErrNotRegular naming a FIFO", err)
		}
	case <-time.After(10 * time.Second):
		// Unblock the reader so the test can end.
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			f.Close()
		}
		t.Fatal("Read blocked on a FIFO")
	}
	// The check is made on the open file too: a FIFO swapped in between
	// the stat and the open (simulated by opening it directly) is refused.
	f, err := openNonblocking(fifo)
	if err != nil {
		t.Fatalf("opening a FIFO without a writer blocked or failed: %v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkInfo(fifo, fi, Certificate); !errors.Is(err, ErrNotRegular) {
		t.Errorf("open FIFO: got %v, want ErrNotRegular", err)
	}
}

// A path that leads to /dev/zero is refused before anything is read (issue
// 12: the server ran out of memory reading it).
func TestReadRefusesDevice(t *testing.T) {
	link := filepath.Join(t.TempDir(), "server.key")
	if err := os.Symlink("/dev/zero", link); err != nil {
		t.Fatal(err)
	}
	_, _, err := Read(link, PrivateKey)
	if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "character device") {
		t.Errorf("got %v, want ErrNotRegular naming a character device", err)
	}
	if _, _, err := Read(t.TempDir(), Certificate); !errors.Is(err, ErrNotRegular) {
		t.Errorf("a directory: got %v, want ErrNotRegular", err)
	}
}

func TestPrivateModes(t *testing.T) {
	tests := []struct {
		name  string
		mode  fs.FileMode
		owner int // 0: root, else the process
		me    int
		ok    bool
		says  string
	}{
		{"0600", 0o600, -1, 1000, true, ""},
		{"0400", 0o400, -1, 1000, true, ""},
		{"0644 readable by group and others", 0o644, -1, 1000, false, "group may read it, others may read it"},
		{"0604", 0o604, -1, 1000, false, "others may read it"},
		{"0660 writable by group", 0o660, -1, 1000, false, "group may read and write it"},
		// issue 12: a 0460 key was called "readable by group" when its
		// group may write it.
		{"0460 says writable", 0o460, -1, 1000, false, "group may read and write it"},
		{"0640 own file", 0o640, -1, 1000, false, "group may read it"},
		{"0640 root-owned, not root", 0o640, 0, 1000, true, ""},
		{"0440 root-owned, not root (Kubernetes fsGroup)", 0o440, 0, 1000, true, ""},
		{"0640 root-owned, as root", 0o640, 0, 0, false, "group may read it"},
		{"0660 root-owned, not root", 0o660, 0, 1000, false, "group may read and write it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			owner := tt.owner
			if owner < 0 {
				owner = tt.me
			}
			fi := fakeInfo{mode: tt.mode, uid: owner}
			setEUID(t, tt.me)
			err := checkOwnerMode("k", fi, CheckPrivate)
			if tt.ok != (err == nil) {
				t.Fatalf("got %v, want ok=%v", err, tt.ok)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, ErrAccess) || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("got %v, want ErrAccess saying %q", err, tt.says)
			}
			if !strings.Contains(err.Error(), "chmod 600 k") {
				t.Errorf("%v: the fix is not named", err)
			}
		})
	}
}

type fakeInfo struct {
	mode fs.FileMode
	uid  int
}

func (f fakeInfo) Name() string       { return "k" }
func (f fakeInfo) Size() int64        { return 0 }
func (f fakeInfo) Mode() fs.FileMode  { return f.mode }
func (f fakeInfo) ModTime() time.Time { return time.Time{} }
func (f fakeInfo) IsDir() bool        { return false }
func (f fakeInfo) Sys() any           { return &syscall.Stat_t{Uid: uint32(f.uid)} }

func setEUID(t *testing.T, uid int) {
	t.Helper()
	old := euid
	euid = func() int { return uid }
	t.Cleanup(func() { euid = old })
}

// needRoot skips a test that must chown files; CI runs as root.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test chowns files and needs root, which CI has")
		}
		t.Skip("needs root to chown files")
	}
}

const nobody = 65534

// A key owned by another user is refused, and so is a symbolic link to
// one: that user could have planted it (issue 12). As root only root's
// files are accepted; as another user, that user's and root's.
func TestOwnerRule(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	foreign := filepath.Join(dir, "foreign.key")
	mustWrite(t, foreign, []byte("k"), 0o600)
	if err := os.Chown(foreign, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "server.key")
	if err := os.Symlink(foreign, link); err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(dir, "own.key")
	mustWrite(t, own, []byte("k"), 0o600)

	for _, p := range []string{foreign, link} {
		_, _, err := Read(p, PrivateKey)
		if !errors.Is(err, ErrOwner) || !strings.Contains(err.Error(), "uid 65534") || !strings.Contains(err.Error(), "chown root") {
			t.Errorf("%s as root: got %v, want ErrOwner naming uid 65534 and chown root", p, err)
		}
	}
	if _, _, err := Read(own, PrivateKey); err != nil {
		t.Errorf("root's own key as root: %v", err)
	}
	// The same files seen by a process running as nobody: its own file
	// and root's are fine, another user's is not.
	setEUID(t, nobody)
	if _, _, err := Read(foreign, PrivateKey.Without(CheckOwner)); err != nil {
		t.Errorf("without the owner check: %v", err)
	}
	other := filepath.Join(dir, "other.key")
	mustWrite(t, other, []byte("k"), 0o600)
	if err := os.Chown(other, nobody-1, nobody-1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Read(other, PrivateKey); !errors.Is(err, ErrOwner) || !strings.Contains(err.Error(), "chown 65534") {
		t.Errorf("another user's key as nobody: got %v, want ErrOwner with chown 65534", err)
	}
}

// A certificate directory others may write to lets them replace the key:
// refused, naming the directory and the chmod that fixes it (issue 12).
func TestWritableDirectoryRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "server.next.key")
	mustWrite(t, key, []byte("k"), 0o600)
	for _, mode := range []fs.FileMode{0o777, 0o775, 0o757} {
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		_, _, err := Read(key, NextKey)
		if !errors.Is(err, ErrWritable) || !strings.Contains(err.Error(), "directory "+dir) || !strings.Contains(err.Error(), "chmod go-w "+dir) {
			t.Errorf("mode %04o: got %v, want ErrWritable naming %s and chmod go-w", mode, err, dir)
		}
		// A certificate needs no such check.
		if _, _, err := Read(key, Certificate); err != nil {
			t.Errorf("mode %04o, read as a certificate: %v", mode, err)
		}
	}
	// Sticky and root-owned (or ours): only a file's owner can replace it.
	if err := os.Chmod(dir, 0o777|fs.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Read(key, NextKey); err != nil {
		t.Errorf("sticky directory: %v", err)
	}
	// A file others may write is refused too, for kinds without the
	// private check (the known hosts store, issue 12: kept 0666).
	store := filepath.Join(t.TempDir(), "known_hosts")
	mustWrite(t, store, []byte("# empty\n"), 0o666)
	if _, _, err := Read(store, KnownHosts); !errors.Is(err, ErrWritable) || !strings.Contains(err.Error(), "chmod go-w") {
		t.Errorf("0666 store: got %v, want ErrWritable", err)
	}
}

// A directory on the way owned by another user is refused, even if its
// mode is fine: its owner can change the mode.
func TestForeignDirectoryRefused(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "certs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "server.key")
	mustWrite(t, key, []byte("k"), 0o600)
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Read(key, PrivateKey); !errors.Is(err, ErrOwner) || !strings.Contains(err.Error(), "directory "+dir) {
		t.Errorf("got %v, want ErrOwner naming directory %s", err, dir)
	}
}

// kubeSecretVolume lays out dir as kubelet lays out a Secret volume for a
// pod with an fsGroup: the mount point a root-owned sticky, world-writable
// tmpfs root (here a directory, mode 3777 as SetVolumeOwnership leaves it),
// a timestamped directory root:GROUP 2755 holding the files root:GROUP
// 0440, a "..data" symlink to it, and one symlink per key through
// "..data". It returns the path of each key by its name.
func kubeSecretVolume(t *testing.T, dir string, group int, files map[string]string) map[string]string {
	t.Helper()
	if err := os.Chmod(dir, 0o777|fs.ModeSticky|fs.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 0, group); err != nil {
		t.Fatal(err)
	}
	ts := filepath.Join(dir, "..2026_01_02_03_04_05.123456789")
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(ts, 0o755|fs.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(ts, 0, group); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{}
	for name, content := range files {
		p := filepath.Join(ts, name)
		mustWrite(t, p, []byte(content), 0o440)
		if err := os.Chown(p, 0, group); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
		paths[name] = filepath.Join(dir, name)
	}
	return paths
}

// The Kubernetes secret volume layout is accepted for a process that is
// not root and has the fsGroup: root-owned files 0440, read through the
// "..data" symlink, in a root-owned sticky directory.
func TestKubernetesSecretLayoutAccepted(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	vol := filepath.Join(dir, "secret")
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	paths := kubeSecretVolume(t, vol, nobody, map[string]string{"tls.key": "key", "tls.crt": "cert"})
	setEUID(t, nobody)
	for _, k := range []Kind{PrivateKey, NextKey, CAKey, TicketKeys, Certificate} {
		data, _, err := Read(paths["tls.key"], k)
		if err != nil || string(data) != "key" {
			t.Errorf("%s: got %q, %v", k.Name, data, err)
		}
	}
	// As root, the same group-readable key is refused: root has no reason
	// to need group access to its own secret.
	setEUID(t, 0)
	if _, _, err := Read(paths["tls.key"], PrivateKey); !errors.Is(err, ErrAccess) {
		t.Errorf("as root: got %v, want ErrAccess", err)
	}
}

// pipeKind is Passphrase with a timeout short enough for tests.
var pipeKind = func() Kind { k := Passphrase; k.PipeTimeout = 300 * time.Millisecond; return k }()

// readWithin runs Read(path, k) and fails the test if it has not returned
// within 10 s (far past any PipeTimeout here): it must never hang.
func readWithin(t *testing.T, path string, k Kind) ([]byte, error) {
	t.Helper()
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		data, _, err := Read(path, k)
		done <- result{data, err}
	}()
	select {
	case r := <-done:
		return r.data, r.err
	case <-time.After(10 * time.Second):
		t.Fatalf("Read(%s) blocked past 10s with a pipe timeout of %v", path, k.PipeTimeout)
	}
	return nil, nil
}

// A kind with a pipe timeout (the passphrase file) still never hangs on a
// FIFO nobody writes: it fails with ErrPipeTimeout once the timeout has
// passed, saying nothing was written.
func TestReadPipeNobodyWrites(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "pw")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := readWithin(t, fifo, pipeKind)
	if !errors.Is(err, ErrPipeTimeout) || !strings.Contains(err.Error(), "nothing was written") {
		t.Errorf("got %v, want ErrPipeTimeout saying nothing was written", err)
	}
	if took := time.Since(start); took < pipeKind.PipeTimeout {
		t.Errorf("gave up after %v, before the timeout of %v", took, pipeKind.PipeTimeout)
	}
}

// pipePath returns /dev/fd/N for the read end of a new pipe, as a shell's
// process substitution <(…) gives it, and the write end.
func pipePath(t *testing.T) (string, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return fmt.Sprintf("/dev/fd/%d", r.Fd()), w
}

// A pipe whose writer writes and closes is read to its end, whether the
// writer finished before the read began (<(echo pw) where echo is quick)
// or while it waits; a named FIFO whose writer comes later is read too.
func TestReadPipeFromWriter(t *testing.T) {
	if _, err := os.Stat("/dev/fd/0"); err != nil {
		t.Skip("no /dev/fd on this system")
	}
	t.Run("written and closed before", func(t *testing.T) {
		path, w := pipePath(t)
		w.WriteString("pw\n")
		w.Close()
		if data, err := readWithin(t, path, pipeKind); err != nil || string(data) != "pw\n" {
			t.Errorf("got %q, %v; want %q", data, err, "pw\n")
		}
	})
	t.Run("written while the reader waits", func(t *testing.T) {
		path, w := pipePath(t)
		k := pipeKind
		k.PipeTimeout = 10 * time.Second
		go func() {
			w.WriteString("p")
			w.WriteString("w\n")
			w.Close()
		}()
		if data, err := readWithin(t, path, k); err != nil || string(data) != "pw\n" {
			t.Errorf("got %q, %v; want %q", data, err, "pw\n")
		}
	})
	t.Run("closed without a word", func(t *testing.T) {
		path, w := pipePath(t)
		w.Close()
		start := time.Now()
		if data, err := readWithin(t, path, pipeKind); err != nil || len(data) != 0 {
			t.Errorf("got %q, %v; want nothing, no error (the caller says it is empty)", data, err)
		}
		if time.Since(start) >= pipeKind.PipeTimeout {
			t.Error("an empty closed pipe waited for the timeout")
		}
	})
	t.Run("written but never closed", func(t *testing.T) {
		path, w := pipePath(t)
		w.WriteString("pw\n")
		_, err := readWithin(t, path, pipeKind)
		if !errors.Is(err, ErrPipeTimeout) || !strings.Contains(err.Error(), "sent 3 bytes and has not closed it") {
			t.Errorf("got %v, want ErrPipeTimeout saying 3 bytes came", err)
		}
	})
	t.Run("larger than the kind allows", func(t *testing.T) {
		path, w := pipePath(t)
		k := pipeKind
		k.PipeTimeout = 10 * time.Second
		go func() {
			w.Write(make([]byte, k.MaxSize+100)) // fails once the reader gives up
			w.Close()
		}()
		if _, err := readWithin(t, path, k); !errors.Is(err, ErrTooLarge) {
			t.Errorf("got %v, want ErrTooLarge", err)
		}
	})
	t.Run("named FIFO, writer comes later", func(t *testing.T) {
		fifo := filepath.Join(t.TempDir(), "pw")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		k := pipeKind
		k.PipeTimeout = 10 * time.Second
		go func() {
			// Blocks until the reader has opened the FIFO.
			f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
			if err != nil {
				return
			}
			f.WriteString("pw\n")
			f.Close()
		}()
		if data, err := readWithin(t, fifo, k); err != nil || string(data) != "pw\n" {
			t.Errorf("got %q, %v; want %q", data, err, "pw\n")
		}
	})
}

// Stat makes Read's checks without reading: a PKCS#11 module others may
// replace is refused before the process loads it, one in a writable
// directory too, and a missing one is fs.ErrNotExist (issue 17).
func TestStatModule(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lib")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	module := filepath.Join(dir, "libtoken.so")
	mustWrite(t, module, []byte("\x7fELF"), 0o755)
	fi, err := Stat(module, PKCS11Module)
	if err != nil || fi.Size() != 4 {
		t.Fatalf("Stat of a 0755 module: %v (size %v), want it accepted", err, fi)
	}
	if err := os.Chmod(module, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Stat(module, PKCS11Module); !errors.Is(err, ErrWritable) || !strings.Contains(err.Error(), module) {
		t.Errorf("Stat of a 0777 module: got %v, want ErrWritable naming it", err)
	}
	if err := os.Chmod(module, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Stat(module, PKCS11Module); !errors.Is(err, ErrWritable) || !strings.Contains(err.Error(), "directory "+dir) {
		t.Errorf("Stat of a module in a 0777 directory: got %v, want ErrWritable naming the directory", err)
	}
	if _, err := Stat(filepath.Join(dir, "nope.so"), PKCS11Module); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat of a missing module: got %v, want fs.ErrNotExist", err)
	}
}
