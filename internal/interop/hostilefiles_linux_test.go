//go:build linux

package interop

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/childproc"
	"github.com/spacecaptain/spacecaptain/pki"
)

// Issue 12, hostile files with the real binaries: a FIFO, /dev/zero or a
// huge file at the certificate or key path is refused at once with the
// reason, on a reload (file event or SIGHUP) and in --check; the old pair
// keeps serving, and SIGTERM still stops the server within
// --shutdown-timeout. Before, a FIFO hung the reload forever and SIGTERM
// no longer worked; /dev/zero ran the server out of memory.
func TestHostileFilesRealServer(t *testing.T) {
	cases := []struct {
		name  string
		file  string // in certs/
		plant func(t *testing.T, path string)
		says  string
	}{
		{"FIFO at the certificate", "server.crt", func(t *testing.T, p string) {
			// As the issue did it: mkfifo beside it, then mv over it.
			tmp := filepath.Join(filepath.Dir(p), ".f")
			if err := syscall.Mkfifo(tmp, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, p); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file but a FIFO"},
		{"/dev/zero at the key", "server.key", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/dev/zero", p); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file but a character device"},
		{"a 470 MB certificate", "server.crt", func(t *testing.T, p string) {
			if err := os.Truncate(p, 470<<20); err != nil {
				t.Fatal(err)
			}
		}, "larger than a certificate may be (470 MiB, at most 1 MiB)"},
	}
	for _, engine := range hostileEngines() {
		for _, c := range cases {
			t.Run(engine+"/"+c.name, func(t *testing.T) {
				dir := t.TempDir()
				srv := startSCServer(t, dir, "--engine", engine, "--shutdown-timeout", "2s")
				caFile := filepath.Join(dir, "certs", "ca.crt")
				served := pki.SerialHex(servedCert(t, srv, caFile).SerialNumber)
				path := filepath.Join(dir, "certs", c.file)
				saved, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				c.plant(t, path)
				if err := srv.Signal(syscall.SIGHUP); err != nil {
					t.Fatal(err)
				}
				waitLog(t, srv, 0, 30*time.Second, `"reload failed; still serving the previous certificate"`, c.says)
				if got := pki.SerialHex(servedCert(t, srv, caFile).SerialNumber); got != served {
					t.Errorf("serving serial %s after the refused reload, want %s", got, served)
				}
				// --check says the same, at once.
				start := time.Now()
				_, errOut, code := runBounded(t, dir, nil, bin(t, "sc-server"), "--check")
				if code != 1 || !strings.Contains(errOut, c.says) || time.Since(start) > 20*time.Second {
					t.Errorf("--check: exit %d after %v, want 1 saying %q:\n%s", code, time.Since(start), c.says, errOut)
				}
				// A valid file back, another reload: served (the same
				// pair), and the server stops on SIGTERM in time.
				os.Remove(path)
				if err := os.WriteFile(path, saved, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := srv.Signal(syscall.SIGHUP); err != nil {
					t.Fatal(err)
				}
				servedCert(t, srv, caFile)
				if err := srv.Signal(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				if err := srv.Wait(t, 15*time.Second); err != nil {
					t.Errorf("exit after SIGTERM: %v\n%s", err, srv.Log())
				}
			})
		}
	}
}

// nobodyBin copies the binary name to a directory others may read, so that
// a process running as nobody can execute it.
func nobodyBin(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sc-nobody-bin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bin(t, name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

const nobody = 65534

// runAsNobody runs a binary as uid and gid 65534 in dir and returns its
// output and exit code. CI runs as root; this is how the rules for an
// unprivileged server are checked for real.
func runAsNobody(t *testing.T, dir, binary string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := childproc.Run(cmd)
	return out.String(), errOut.String(), exitCode(t, err)
}

// publicTempDir is a directory a process running as nobody may enter.
func publicTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sc-nobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// kubeSecretVolume lays out dir as kubelet lays out a Secret volume for a
// pod with fsGroup group: the volume root owned by root, sticky and
// world-writable (3777 once SetVolumeOwnership adds setgid), a
// timestamped directory root:group 2755 holding each file root:group 0440,
// a "..data" symlink to it, and one symlink per file through "..data".
func kubeSecretVolume(t *testing.T, dir string, group int, files map[string][]byte) {
	t.Helper()
	ts := filepath.Join(dir, "..2026_01_02_03_04_05.123456789")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(ts, 0o755))
	must(os.Chmod(ts, 0o755|fs.ModeSetgid))
	must(os.Chown(ts, 0, group))
	for name, data := range files {
		p := filepath.Join(ts, name)
		must(os.WriteFile(p, data, 0o440))
		must(os.Chmod(p, 0o440))
		must(os.Chown(p, 0, group))
		must(os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)))
	}
	must(os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")))
	must(os.Chown(dir, 0, group))
	must(os.Chmod(dir, 0o777|fs.ModeSticky|fs.ModeSetgid))
}

// StrictModes with the real sc-server running as an unprivileged user
// (issue 12): the Kubernetes secret-volume layout, exactly as kubelet
// makes it, is served; a key owned by another user, a symbolic link to
// another user's 0600 key, and a certificate directory others may write
// are refused with the file and the fix. As root, a key owned by nobody
// is refused too: root may read it, but nobody could have planted it.
func TestStrictModesRealServer(t *testing.T) {
	if os.Geteuid() != 0 {
		skipOrFail(t, "running sc-server as another user needs root")
	}
	scServer := nobodyBin(t, "sc-server")
	src := t.TempDir()
	if _, err := pki.InitLayout(context.Background(), pki.InitOptions{Dir: src, SelfSigned: true}); err != nil {
		t.Fatal(err)
	}
	l := pki.DefaultLayout(src)
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	files := map[string][]byte{"tls.crt": read(l.ServerCert), "tls.key": read(l.ServerKey), "tls.next.key": read(l.NextKey)}
	args := func(d string) []string {
		return []string{"--check", "--cert", filepath.Join(d, "tls.crt"), "--key", filepath.Join(d, "tls.key"), "--next-key", filepath.Join(d, "tls.next.key"), "--auto-renew=false"}
	}

	t.Run("kubernetes secret volume as nobody", func(t *testing.T) {
		top := publicTempDir(t)
		vol := filepath.Join(top, "secret")
		if err := os.Mkdir(vol, 0o755); err != nil {
			t.Fatal(err)
		}
		kubeSecretVolume(t, vol, nobody, files)
		out, errOut, code := runAsNobody(t, top, scServer, args(vol)...)
		if code != 0 || !strings.Contains(out, "configuration OK") {
			t.Errorf("exit %d, want 0:\n%s%s", code, out, errOut)
		}
		// The same volume seen by root: a group-readable key is refused
		// (root needs no group access to its own secret).
		_, errOut, code = runBounded(t, top, nil, scServer, args(vol)...)
		if code != 1 || !strings.Contains(errOut, "mode 0440: group may read it") {
			t.Errorf("as root: exit %d, want 1:\n%s", code, errOut)
		}
	})

	plain := func(t *testing.T, owner int) string {
		t.Helper()
		top := publicTempDir(t)
		d := filepath.Join(top, "certs")
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range files {
			p := filepath.Join(d, name)
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(p, owner, owner); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chown(d, owner, owner); err != nil {
			t.Fatal(err)
		}
		return d
	}
	t.Run("own files as nobody", func(t *testing.T) {
		d := plain(t, nobody)
		if out, errOut, code := runAsNobody(t, filepath.Dir(d), scServer, args(d)...); code != 0 {
			t.Errorf("exit %d, want 0:\n%s%s", code, out, errOut)
		}
	})
	t.Run("next key owned by another user, as nobody", func(t *testing.T) {
		d := plain(t, nobody)
		if err := os.Chown(filepath.Join(d, "tls.next.key"), nobody-1, nobody-1); err != nil {
			t.Fatal(err)
		}
		_, errOut, code := runAsNobody(t, filepath.Dir(d), scServer, args(d)...)
		if code != 1 || !strings.Contains(errOut, "owned by uid 65533") || !strings.Contains(errOut, "fix: chown 65534") {
			t.Errorf("exit %d, want 1 naming the owner and the chown:\n%s", code, errOut)
		}
	})
	t.Run("symlink to another user's 0600 key, as nobody", func(t *testing.T) {
		d := plain(t, nobody)
		other := filepath.Join(publicTempDir(t), "theirs.key")
		if err := os.WriteFile(other, files["tls.next.key"], 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(other, nobody-1, nobody-1); err != nil {
			t.Fatal(err)
		}
		next := filepath.Join(d, "tls.next.key")
		os.Remove(next)
		if err := os.Symlink(other, next); err != nil {
			t.Fatal(err)
		}
		_, errOut, code := runAsNobody(t, filepath.Dir(d), scServer, args(d)...)
		if code != 1 || !strings.Contains(errOut, "owned by uid 65533") {
			t.Errorf("exit %d, want 1 naming the owner:\n%s", code, errOut)
		}
	})
	t.Run("certificate directory writable by others, as nobody", func(t *testing.T) {
		d := plain(t, nobody)
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
		_, errOut, code := runAsNobody(t, filepath.Dir(d), scServer, args(d)...)
		if code != 1 || !strings.Contains(errOut, "chmod go-w "+d) {
			t.Errorf("exit %d, want 1 with chmod go-w %s:\n%s", code, d, errOut)
		}
	})
	t.Run("key owned by nobody, as root", func(t *testing.T) {
		d := plain(t, nobody)
		_, errOut, code := runBounded(t, filepath.Dir(d), nil, scServer, args(d)...)
		if code != 1 || !strings.Contains(errOut, "owned by uid 65534, not by root") || !strings.Contains(errOut, "fix: chown root") {
			t.Errorf("exit %d, want 1:\n%s", code, errOut)
		}
	})
}

// --key-password-file with the real binaries, as a shell gives it: a
// process substitution <(echo …) is read; a FIFO nobody writes is an error
// within the pipe timeout (10 s), naming the file, where os.ReadFile
// blocked forever.
func TestPassphrasePipeRealServer(t *testing.T) {
	bash := needTool(t, "bash")
	dir := t.TempDir()
	const pass = "correct horse battery staple"
	good := filepath.Join(dir, "pass")
	mustWriteFile(t, good, []byte(pass+"\n"), 0o600)
	run(t, dir, bin(t, "sc-cert"), "init", "--encrypt-key", "--password-file", good)

	// bash runs sc-server in its place, with the read end of the pipe from
	// echo as /dev/fd/N.
	out, errOut, code := runBounded(t, dir, nil, bash, "-c", `exec "$0" --check --key-password-file <(echo "$1")`, bin(t, "sc-server"), pass)
	if code != 0 {
		t.Errorf("--check --key-password-file <(echo …): exit %d, want 0\n%s%s", code, out, errOut)
	}

	fifo := filepath.Join(dir, "pass.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, errOut, code = runBounded(t, dir, nil, bin(t, "sc-server"), "--check", "--key-password-file", fifo)
	took := time.Since(start)
	if code != 1 || !strings.Contains(errOut, fifo) || !strings.Contains(errOut, "nothing was written to it within 10s") {
		t.Errorf("--key-password-file naming a FIFO nobody writes: exit %d after %v, want 1 naming the file and the timeout:\n%s", code, took, errOut)
	}
	if took > 40*time.Second {
		t.Errorf("the refusal took %v, want about the 10s pipe timeout", took)
	}
}
