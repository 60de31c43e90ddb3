package servercmd

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/atomicfile"
	"github.com/spacecaptain/spacecaptain/internal/metrics"
	"github.com/spacecaptain/spacecaptain/internal/trustfile"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// KeyStateFile is the default --key-state file, beside the certificate:
// the pin the server last served and the next pins it announced, so that
// the guard against unannounced key changes works across restarts.
const KeyStateFile = "key-state.json"

// The values of --key-change.
const (
	keyChangeWarn   = "warn"
	keyChangeRefuse = "refuse"
)

// maxAnnouncedState bounds the announced pins the state file keeps.
const maxAnnouncedState = 8

// keyStateKind is how the state file is read: it decides which key changes
// pass without a word, so another user must not be able to write it.
var keyStateKind = trustfile.KeyState

// keyState is the content of the state file.
type keyState struct {
	// Served is the pin of the key last served.
	Served string `json:"served"`
	// Announced are the next pins announced (KEYS) while Served was
	// served: the keys clients may have learned as its successors.
	Announced []string `json:"announced"`
	// Updated is when the file was last written.
	Updated time.Time `json:"updated"`
}

// errUnannouncedKeyChange is wrapped by the error --key-change refuse
// returns for a certificate on an unannounced key.
var errUnannouncedKeyChange = errors.New("unannounced key change")

// keyGuard is the guard against unannounced key changes. It remembers the
// pin served and the next pins announced (in memory, and in the state file
// beside the certificates), and judges every new certificate the source is
// about to serve ([pki.SourceOptions.Accept]): one on a key that is neither
// the key served nor an announced next key breaks every client pinned to
// the old key. The guard logs an ERROR that says so and what to do, counts
// it, and with --key-change refuse keeps serving the old pair (at start:
// does not start). Safe for concurrent use.
type keyGuard struct {
	path     string // the state file; "" keeps state in memory only
	refuse   bool
	readOnly bool // --check: judge, write nothing
	log      *slog.Logger
	m        *metrics.Metrics
	now      func() time.Time

	mu    sync.Mutex
	state keyState
	known bool // state holds a served pin (from the file or this run)
	// reported is the last unannounced change logged, "OLD NEW", so that
	// a refused file judged again at every periodic check is logged and
	// counted once.
	reported string
	// change describes the last unannounced change seen, for --check.
	change string
	// persist is set once the server serves (start): before that a
	// start that fails later writes nothing. dirty says the state has
	// not been written yet.
	persist, dirty bool
}

// newKeyGuard reads the state file at path; a missing file is a first
// start, where any key is accepted.
func newKeyGuard(path, mode string, readOnly bool, log *slog.Logger, m *metrics.Metrics, now func() time.Time) (*keyGuard, error) {
	g := &keyGuard{path: path, refuse: mode == keyChangeRefuse, readOnly: readOnly, log: log, m: m, now: now}
	if path == "" {
		return g, nil
	}
	data, _, err := trustfile.Read(path, keyStateKind)
	if errors.Is(err, fs.ErrNotExist) {
		return g, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the key state file %q: %w", path, err)
	}
	var st keyState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("reading the key state file %q: %w (it is rewritten at each key change; delete it to start over, and the next start accepts any key)", path, err)
	}
	if _, err := pinning.ParsePin(st.Served); err != nil {
		return nil, fmt.Errorf("reading the key state file %q: served pin: %w (delete it to start over)", path, err)
	}
	for _, a := range st.Announced {
		if _, err := pinning.ParsePin(a); err != nil {
			return nil, fmt.Errorf("reading the key state file %q: announced pin: %w (delete it to start over)", path, err)
		}
	}
	g.state, g.known = st, true
	return g, nil
}

// accept is the source's Accept hook: it judges a certificate about to be
// served. It runs under the source's reload lock.
func (g *keyGuard) accept(leaf *x509.Certificate) error {
	pin := pinning.PinOf(leaf).String()
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.known || pin == g.state.Served || slices.Contains(g.state.Announced, pin) {
		return nil
	}
	old := g.state.Served
	announce := "put the new key's certificate aside, restore the old pair, and promote it the planned way: give it as the next key (server.next.key, or only its pin with --next-pin), wait for clients to learn it through KEYS, then sc-cert rotate --promote-next"
	msg := fmt.Sprintf("clients pinned to %s will refuse %s; announce it first: %s", old, pin, announce)
	g.change = fmt.Sprintf("the certificate's key %s is neither the key last served (%s) nor an announced next key: clients pinned to %s will refuse it", pin, old, old)
	if key := old + " " + pin; key != g.reported {
		g.reported = key
		if g.m != nil {
			g.m.UnannouncedKeyChange()
		}
		action := "serving it anyway (--key-change warn)"
		if g.refuse {
			action = "not serving it (--key-change refuse): the previous pair keeps serving"
		}
		g.log.Error("unannounced key change: "+msg, "old_pin", old, "new_pin", pin, "action", action, "serial", pki.SerialHex(leaf.SerialNumber))
	}
	if g.refuse {
		return fmt.Errorf("%w: %s", errUnannouncedKeyChange, msg)
	}
	return nil
}

// served records what the source serves now: its pin and the next pins
// KEYS announces. A change of key starts a new list of announced pins. It
// writes the state file when something changed (never with readOnly).
func (g *keyGuard) served(ctx context.Context, pin string, next []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.state
	changed := !g.known || st.Served != pin
	if changed {
		st = keyState{Served: pin}
	}
	for _, n := range next {
		if !slices.Contains(st.Announced, n) {
			st.Announced = append(st.Announced, n)
			changed = true
		}
	}
	if len(st.Announced) > maxAnnouncedState {
		st.Announced = st.Announced[len(st.Announced)-maxAnnouncedState:]
	}
	if !changed {
		return
	}
	st.Updated = g.now().UTC().Truncate(time.Second)
	g.state, g.known, g.reported, g.dirty = st, true, "", true
	g.writeLocked(ctx)
}

// start lets the guard write its state file from now on, and writes what
// it holds: the server is serving. Until then nothing is written, so that
// a start that fails (a port taken, a bad ticket-key file) changes nothing
// on disk.
func (g *keyGuard) start(ctx context.Context) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.persist = true
	g.writeLocked(ctx)
}

// writeLocked writes the state file when it is due. Call it with mu held.
func (g *keyGuard) writeLocked(ctx context.Context) {
	if !g.dirty || !g.persist || g.readOnly || g.path == "" {
		return
	}
	st := g.state
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return
	}
	data = append(data, '\n')
	if err := atomicfile.WriteFile(g.path, data, atomicfile.Options{Perm: 0o644, Overwrite: true}); err != nil {
		g.log.WarnContext(ctx, "key state not saved; the guard against unannounced key changes will not remember this key after a restart", "path", g.path, "err", err)
		return
	}
	g.dirty = false
}

// describe says what the guard knows, for --check: the mode, the state
// and the last unannounced change it judged.
func (g *keyGuard) describe() (line, warning string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	mode := keyChangeWarn
	if g.refuse {
		mode = keyChangeRefuse
	}
	switch {
	case g.path == "":
		line = mode + ": state kept in memory only"
	case !g.known:
		line = fmt.Sprintf("%s: %s does not exist yet (a first start accepts any key)", mode, g.path)
	default:
		line = fmt.Sprintf("%s: %s says %s was served, announced %d next pin(s)", mode, g.path, g.state.Served, len(g.state.Announced))
	}
	if g.change != "" {
		warning = "unannounced key change: " + g.change + " (--key-change " + mode + ")"
	}
	return line, warning
}
