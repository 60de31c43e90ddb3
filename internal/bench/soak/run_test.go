package soak

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/pinning"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// mustBinaries builds sc-server and sc-cert once for the package's tests,
// without the race detector whatever the test binary has.
func mustBinaries(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the soak reads the server's figures from Linux's /proc")
	}
	if testing.Short() {
		t.Skip("builds and runs sc-server (-short)")
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "sc-soak-test")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+string(filepath.Separator),
			"github.com/spacecaptain/spacecaptain/cmd/sc-server", "github.com/spacecaptain/spacecaptain/cmd/sc-cert")
		cmd.Env = os.Environ()
		if os.Getenv("GOTOOLCHAIN") == "" {
			cmd.Env = append(cmd.Env, "GOTOOLCHAIN=auto")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = errors.New(err.Error() + "\n" + string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("building sc-server and sc-cert: %v", buildErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// Issue 18: a short soak against the real sc-server rotates through every
// kind, keeps every client (players and CA clients) connected, and writes a
// sample a second. The latency limit is loose: the test process may carry
// the race detector, which slows TLS about fifteen-fold; the criterion's
// real limit is checked by scripts/soak.sh in scripts/test.sh.
func TestRunShort(t *testing.T) {
	bin := mustBinaries(t)
	for _, engine := range []string{"epoll", "goroutine"} {
		t.Run(engine, func(t *testing.T) {
			var csv, log bytes.Buffer
			o := Options{Bin: bin, Dir: filepath.Join(t.TempDir(), "run"), Engine: engine,
				Duration: 6 * time.Second, Sample: time.Second, SteadyAt: 2 * time.Second, RotateEvery: time.Second,
				Conns: 40, PingPong: 2, PingPongRate: 20, NewRate: 20, Heartbeat: time.Second, Players: 4,
				LatencyLimit: 5 * time.Second, RSSGrowth: 1, CSV: &csv, Log: &log}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			sum, err := Run(ctx, o)
			if err != nil {
				t.Fatalf("%v\n%s", err, log.String())
			}
			if !sum.Pass {
				t.Errorf("failed checks %+v\nerrors %q\n%s", sum.Failures(), sum.ErrorSamples, log.String())
			}
			samples, err := ReadCSV(&csv)
			if err != nil {
				t.Fatal(err)
			}
			if len(samples) != 7 || samples[6].T != 6 || samples[6].Held != 40 {
				t.Errorf("got %d samples, the last %+v; want 7, the last at 6 s with 40 held", len(samples), samples[len(samples)-1])
			}
			tot := sum.Totals
			if tot.Errors != 0 || tot.Lockouts != 0 || tot.Heartbeats == 0 || tot.PingPongs == 0 || tot.NewConns == 0 || tot.KeysLearned == 0 {
				t.Errorf("totals %+v: want no errors, and heartbeats, ping-pongs, new connections and learned keys", tot)
			}
			kinds := map[string]bool{}
			keys := 0
			for _, r := range sum.Rotations {
				kinds[r.Kind] = true
				if r.KeyChanged {
					keys++
				}
			}
			if len(kinds) != 4 || keys == 0 {
				t.Errorf("rotations %+v: want every kind, one a key change", sum.Rotations)
			}
			if _, err := os.Stat(filepath.Join(o.Dir, "server.log")); err != nil {
				t.Errorf("no server log: %v", err)
			}
		})
	}
}

// A key the server did not announce first locks players out, and the run
// counts it as such: the players' trust is real, not a formality.
func TestUnannouncedKeyIsALockout(t *testing.T) {
	bin := mustBinaries(t)
	dir := t.TempDir()
	ctx := context.Background()
	certs, err := newCertDir(ctx, filepath.Join(bin, "sc-cert"), filepath.Join(dir, "certs"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := startServer(bin, dir, filepath.Join(dir, "server.log"), []string{"--listen", "127.0.0.1:0",
		"--metrics-listen", "127.0.0.1:0", "--cert", filepath.Join(certs.dir, "server.crt"),
		"--key", filepath.Join(certs.dir, "server.key"), "--log-format", "json"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	o, _ := Options{Bin: bin, Dir: dir, Engine: "epoll", Players: 2}.resolve()
	l, err := newLoad(o, srv.addr, filepath.Join(certs.dir, "ca.crt"), filepath.Join(dir, "players"))
	if err != nil {
		t.Fatal(err)
	}
	l.start = time.Now()
	c, err := l.connect(1) // player 1: trusts on first use
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// A new layout in place of the served generation: a key (and a CA)
	// nobody announced.
	if _, err := certs.run(ctx, "init", "--force", "--dir", filepath.Join(certs.dir, "..gen_0001")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(servedWithin)
	for {
		c, err := l.connect(1)
		if err != nil {
			var ke *pinning.KeyError
			if !errors.As(err, &ke) {
				t.Fatalf("got %v, want a *pinning.KeyError", err)
			}
			l.fail("test", err)
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the server still served the old key after the new layout was written")
		}
	}
	if l.tot.lockouts.Load() != 1 || l.tot.errors.Load() != 1 {
		t.Errorf("got %d lockouts and %d errors, want 1 and 1", l.tot.lockouts.Load(), l.tot.errors.Load())
	}
}
