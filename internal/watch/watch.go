package watch

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Trigger says what started a reload.
type Trigger string

// The triggers of a reload.
const (
	// Initial is the load in a reloader's constructor; Run never gives it,
	// but reloaders report it with the others.
	Initial Trigger = "initial"
	// FileEvent is a file event in a watched directory, after the
	// debounce.
	FileEvent Trigger = "file-event"
	// Settle is the second look after a reload that followed a file event
	// failed: the files may have been caught half-written, so the failure
	// is only reported if it persists once they have settled.
	Settle Trigger = "settle"
	// Periodic is the periodic check.
	Periodic Trigger = "periodic"
	// Reload is an explicit reload (SIGHUP); Run never gives it either.
	Reload Trigger = "reload"
	// Rewatch follows (re-)establishing the watches: when Run starts,
	// after a watched directory was removed or replaced, and after the
	// event queue overflowed.
	Rewatch Trigger = "rewatch"
)

// maxDebounceFactor bounds the wait for a quiet moment: a directory with
// events more often than every Debounce is reloaded at least every
// maxDebounceFactor × Debounce anyway.
const maxDebounceFactor = 10

// Options says what [Run] watches and how.
type Options struct {
	// Files are the files whose changes matter. Their directories are
	// watched, and the directories of their symlink targets.
	Files []string
	// Debounce is the quiet time after the last file event before a
	// reload. It must be positive.
	Debounce time.Duration
	// Interval is the period of the check that catches file events a
	// filesystem lost; zero or negative disables it.
	Interval time.Duration
	// Logger receives watch problems. Nil means slog.Default().
	Logger *slog.Logger
	// What names the files in log lines: "certificate", "ticket keys".
	What string
}

// CheckFunc reloads. It reports whether it failed in a way that may be a
// file caught mid-write, which earns a second look once events settle.
type CheckFunc func(ctx context.Context, t Trigger) (recheck bool)

// Run watches until ctx ends, calling check for every reload, one call at
// a time on Run's goroutine; it returns nil when ctx ends. See [watcher]
// for what it watches and why.
func Run(ctx context.Context, opts Options, check CheckFunc) error {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	w := &watcher{files: opts.Files, debounce: opts.Debounce, interval: opts.Interval, log: opts.Logger, what: opts.What}
	return w.run(ctx, check)
}

// watcher turns file-system activity around a set of files into calls of
// one reload function. It is the component every reloader shares: pki's
// certificate source, next key and ticket keys, and pinning's client
// lists.
//
// It watches directories, never files (see [fsnotify.Watcher.Add]): a file
// replaced by rename is a new inode, so a watch on the old one goes quiet
// exactly when it matters. Any event in a directory holding a watched file
// counts as "maybe changed" — a Kubernetes secret mount swaps its "..data"
// symlink and its events never name the file — and the reload function
// compares content hashes, so spurious events cost a few reads.
//
// What differs per platform, and why the periodic check stays on:
//   - Linux (inotify): adding a watch fails with ENOSPC once the user's
//     fs.inotify.max_user_watches is used up (by every process of the
//     user, editors and IDEs included); the directory is then logged once
//     as unwatchable and only the periodic check sees its changes.
//   - BSD and macOS (kqueue): a watched directory costs one open file per
//     entry in it, counted against the server's own open-file limit; keep
//     the certificate directory small (the default layout has five files).
//   - Windows: directories are watched natively (ReadDirectoryChangesW);
//     there is no SIGHUP, so the watcher and the periodic check are the
//     only triggers besides an explicit Reload.
type watcher struct {
	files    []string
	debounce time.Duration
	interval time.Duration // <= 0: no periodic check
	log      *slog.Logger
	what     string // for log lines: "certificate", "ticket keys"
}

// watchState is the set of directories watched and why.
type watchState struct {
	fw  *fsnotify.Watcher
	log *slog.Logger
	// content are the directories whose every event may be a change: the
	// directories of the files and of their symlink targets.
	content map[string]bool
	// self are the directories of the files themselves; an event naming
	// one of them (seen through its parent's watch) means the directory
	// was removed, renamed or created.
	self map[string]bool
	// ids are the directories watched now, with the identity they had
	// when the watch was added.
	ids map[string]os.FileInfo
	// warned dedups "cannot watch" warnings.
	warned map[string]bool
}

// run watches until ctx ends. If the platform's watcher cannot be created
// (inotify's per-user instance limit, 128 by default, is shared by every
// process of the user), it logs once and falls back to the periodic check.
func (w *watcher) run(ctx context.Context, check CheckFunc) error {
	st := &watchState{log: w.log, ids: map[string]os.FileInfo{}, warned: map[string]bool{}}
	var events <-chan fsnotify.Event
	var errs <-chan error
	if fw, err := fsnotify.NewWatcher(); err != nil {
		w.log.WarnContext(ctx, "cannot watch files, falling back to the periodic check", "what", w.what, "interval", w.interval, "err", err)
	} else {
		defer fw.Close()
		st.fw, events, errs = fw, fw.Events, fw.Errors
	}
	st.ensure(w.files)
	// A change made between the constructor's load and this watch would
	// have no event: look once now.
	recheck := check(ctx, Rewatch)

	var tick <-chan time.Time
	if w.interval > 0 {
		t := time.NewTicker(w.interval)
		defer t.Stop()
		tick = t.C
	}
	// The debounce timer runs on this goroutine's select rather than as an
	// AfterFunc, so that every trigger but Reload runs here, one at a time.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var (
		pending      Trigger // what the timer will fire as, "" when idle
		pendingSince time.Time
	)
	arm := func(t Trigger) {
		now := time.Now()
		if pending != FileEvent {
			pendingSince = now
		}
		pending = t
		// Wait for a quiet Debounce, but not forever: a file that is
		// written to without pause is read every maxDebounceFactor ×
		// Debounce anyway.
		wait := w.debounce
		if limit := pendingSince.Add(maxDebounceFactor * w.debounce).Sub(now); limit < wait {
			wait = max(limit, 0)
		}
		timer.Reset(wait)
	}
	if recheck {
		arm(Settle)
	}
	for {
		select {
		case <-ctx.Done():
			return nil

		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			switch {
			case st.self[filepath.Clean(ev.Name)]:
				// fsnotify quirk: a watched directory that is removed
				// (IN_DELETE_SELF) or renamed away (IN_MOVE_SELF) loses its
				// watch inside fsnotify, which reports it as a Remove or
				// Rename of the directory itself, or through the parent's
				// watch; a directory created in its place needs a new
				// watch. Re-establish, then reload.
				st.forget(filepath.Clean(ev.Name))
				st.ensure(w.files)
				arm(FileEvent)
			case st.content[filepath.Dir(filepath.Clean(ev.Name))]:
				// Any name: rename-over ("sc-cert rotate", mv) is a Create
				// of the target; an editor's save-by-rename is a Create of
				// the file (vim also renames the original to a backup
				// first); delete-then-create is a Remove then a Create; an
				// in-place write is Write events, one per write(2), and
				// fsnotify has no portable close-after-write event
				// (IN_CLOSE_WRITE is Linux-only), so the end of a write is
				// a guess: the debounce waits for quiet, and a reload that
				// fails then gets a second look (Settle). A chmod
				// or touch is a Chmod event, kept: it can fix a key's mode.
				// A Kubernetes "..data" swap names only "..data" and its
				// temporary link, never the file.
				if ev.Has(fsnotify.Create) || ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
					// A symlink target may have moved to another
					// directory (the "..data" swap does exactly that).
					st.ensure(w.files)
				}
				arm(FileEvent)
			}

		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// fsnotify quirk: inotify drops events once its queue
				// (fs.inotify.max_queued_events) is full and reports only
				// that it did. Anything may have changed, including the
				// directories: start the watches afresh and reload.
				w.log.WarnContext(ctx, "file event queue overflowed, re-establishing watches", "what", w.what)
				st.reset()
				st.ensure(w.files)
				if check(ctx, Rewatch) && pending == "" {
					arm(Settle)
				}
				continue
			}
			w.log.WarnContext(ctx, "file watch error", "what", w.what, "err", err)

		case <-timer.C:
			t := pending
			pending = ""
			if check(ctx, t) && t == FileEvent {
				arm(Settle)
			}

		case <-tick:
			// The periodic check also repairs watches lost without an
			// event we saw (a directory replaced between two looks).
			t := Periodic
			if st.ensure(w.files) {
				t = Rewatch
			}
			if check(ctx, t) && pending == "" {
				arm(Settle)
			}
		}
	}
}

// ensure makes the watches match the files' directories as they are now
// and reports whether a watch was (re-)established after the first.
func (s *watchState) ensure(files []string) (changed bool) {
	first := s.content == nil
	s.content, s.self = map[string]bool{}, map[string]bool{}
	want := map[string]bool{}
	for _, f := range files {
		dir := filepath.Dir(filepath.Clean(f))
		s.content[dir], s.self[dir], want[dir] = true, true, true
		// fsnotify quirk: a directory's own removal or replacement is
		// reported reliably only by its parent's watch (fsnotify drops the
		// IN_DELETE_SELF of a directory whose parent it also watches), and
		// only the parent sees a new directory appear at the path.
		if parent := filepath.Dir(dir); parent != dir {
			want[parent] = true
		}
		// Resolve symlinks: a file that is a symlink into another
		// directory changes when its target does, and no event in the
		// link's directory says so.
		if real, err := filepath.EvalSymlinks(f); err == nil {
			if rdir := filepath.Dir(real); rdir != dir {
				s.content[rdir], want[rdir] = true, true
			}
		}
	}
	if s.fw == nil {
		return false
	}
	watched := map[string]bool{}
	for _, p := range s.fw.WatchList() {
		watched[p] = true
	}
	for dir := range s.ids {
		if !want[dir] {
			// ErrNonExistentWatch when fsnotify already dropped it.
			_ = s.fw.Remove(dir)
			delete(s.ids, dir)
		}
	}
	dirs := make([]string, 0, len(want))
	for d := range want {
		dirs = append(dirs, d)
	}
	slices.Sort(dirs)
	for _, dir := range dirs {
		fi, err := os.Stat(dir)
		if err != nil {
			if _, ok := s.ids[dir]; ok {
				_ = s.fw.Remove(dir)
				delete(s.ids, dir)
			}
			continue
		}
		// fsnotify forgets the watch of a removed or moved directory (see
		// run), and a directory replaced by another (rename over, or
		// delete and create, which may even reuse the inode number) needs
		// a new watch: the old one follows the old inode.
		if old, ok := s.ids[dir]; ok && watched[dir] && os.SameFile(old, fi) {
			continue
		}
		_ = s.fw.Remove(dir)
		if err := s.fw.Add(dir); err != nil {
			if !s.warned[dir] && s.self[dir] {
				s.warned[dir] = true
				s.log.Warn("cannot watch directory, relying on the periodic check", "path", dir, "err", err)
			}
			delete(s.ids, dir)
			continue
		}
		delete(s.warned, dir)
		s.ids[dir] = fi
		if !first && s.content[dir] {
			changed = true
		}
	}
	return changed
}

// forget marks dir as no longer watched, whatever its identity says.
func (s *watchState) forget(dir string) {
	if s.fw != nil {
		_ = s.fw.Remove(dir)
	}
	delete(s.ids, dir)
}

// reset drops every watch so that ensure adds them afresh.
func (s *watchState) reset() {
	for dir := range s.ids {
		s.forget(dir)
	}
}
