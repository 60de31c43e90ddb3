package pki

import (
	"context"
	"log/slog"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/watch"
)

// Defaults shared by the reloaders ([CertReloader], [TicketKeys]).
const (
	// defaultCheckInterval is how often a reloader ([CertReloader], [TicketKeys]) re-reads its files even
	// without a file event, to catch the events some filesystems lose
	// (network filesystems, some container overlays, an inotify queue
	// overflow we did not hear about).
	defaultCheckInterval = time.Minute

	// defaultDebounce is how long a reloader waits after the last file event
	// before it reloads, so that a burst of events (a rotation renames
	// several files; an editor writes, renames and chmods) costs one
	// reload, and a file written in pieces is read once it has settled.
	defaultDebounce = 100 * time.Millisecond
)

// Trigger says what started a reload. It is reported to OnReload callbacks
// for metrics and logs.
type Trigger string

// The triggers of a reload; the words are internal/watch's.
const (
	// TriggerInitial is the load in the constructor.
	TriggerInitial Trigger = "initial"
	// TriggerFileEvent is a file event in a watched directory, after the
	// debounce.
	TriggerFileEvent Trigger = "file-event"
	// TriggerSettle is the second look after a reload that followed a file
	// event failed: the files may have been caught half-written, so the
	// failure is only reported if it persists once they have settled.
	TriggerSettle Trigger = "settle"
	// TriggerPeriodic is the periodic check.
	TriggerPeriodic Trigger = "periodic"
	// TriggerReload is an explicit Reload call (SIGHUP).
	TriggerReload Trigger = "reload"
	// TriggerRewatch follows (re-)establishing the watches: when Run
	// starts, after a watched directory was removed or replaced, and after
	// the event queue overflowed.
	TriggerRewatch Trigger = "rewatch"
)

// watcher turns file-system activity around a set of files into calls of
// one reload function: the component the certificate reloader, the next key
// and the ticket keys share. The watching itself (directories, never
// files; symlink targets; Kubernetes "..data" swaps; the debounce and the
// periodic check) is internal/watch's, which package pinning's client
// lists use too.
type watcher struct {
	files    []string
	debounce time.Duration
	interval time.Duration // <= 0: no periodic check
	log      *slog.Logger
	what     string // for log lines: "certificate", "ticket keys"
}

// checkFunc reloads. It reports whether it failed in a way that may be a
// file caught mid-write, which earns a second look once events settle.
type checkFunc func(ctx context.Context, t Trigger) (recheck bool)

// run watches until ctx ends.
func (w *watcher) run(ctx context.Context, check checkFunc) error {
	opts := watch.Options{Files: w.files, Debounce: w.debounce, Interval: w.interval, Logger: w.log, What: w.what}
	return watch.Run(ctx, opts, func(ctx context.Context, t watch.Trigger) bool { return check(ctx, Trigger(t)) })
}
