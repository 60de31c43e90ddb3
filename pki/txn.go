package pki

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gofrs/flock"
	"github.com/spacecaptain/spacecaptain/internal/atomicfile"
	"github.com/spacecaptain/spacecaptain/internal/trustfile"
)

// Names of the bookkeeping files in a certificate directory.
const (
	// lockFileName is the lock file that serialises changes (sc-cert
	// rotate, server self-renewal) to the files of one directory. It is
	// created on first use and left in place: removing it while a change
	// runs would let a second change start.
	lockFileName = ".sc-cert.lock"

	// journalFileName is the commit record of a multi-file change. It exists
	// only while a change is in progress or was interrupted.
	journalFileName = ".sc-cert.journal"

	stagedPrefix = "."
	stagedSuffix = ".sc-new"
)

// lockTimeout bounds how long Recover waits for a change in progress in
// another process, whatever its context says: a change holds the lock for
// milliseconds once its keys are made.
const lockTimeout = 30 * time.Second

// change is one file a transaction writes.
type change struct {
	path string
	data []byte
	perm fs.FileMode
	// mustNotExist refuses to replace an existing file (checked under the
	// lock just before staging).
	mustNotExist bool
}

// journal is the on-disk record of a transaction.
type journal struct {
	Version int           `json:"version"`
	State   string        `json:"state"` // statePrepare or stateCommit
	Files   []journalFile `json:"files"`
}

type journalFile struct {
	Target string `json:"target"` // relative to the journal's directory
	Staged string `json:"staged"`
	SHA256 string `json:"sha256,omitempty"`
}

const (
	statePrepare = "prepare"
	stateCommit  = "commit"
)

// stepHook, when non-nil, is called after every durable step of a
// transaction with a short name of that step; returning true simulates a
// crash right there: the transaction returns errSimulatedCrash at once,
// cleaning up nothing, as a killed process would. Tests only.
type stepHook func(step string) bool

var errSimulatedCrash = errors.New("simulated crash")

func (h stepHook) crash(step string) bool { return h != nil && h(step) }

// LockDir takes the change lock of a certificate directory: the lock
// rotations, renewals and [Recover] hold while they change its files. A
// tool that changes files there itself (moving the next key offline, say)
// takes it too, so that no rotation runs in between. It waits up to the
// context's deadline for another change to finish; the returned func
// releases the lock.
func LockDir(ctx context.Context, dir string) (unlock func(), err error) {
	return lockDir(ctx, dir)
}

// lockDir takes the change lock of dir, waiting up to the context's
// deadline for another change to finish. The returned func releases it.
func lockDir(ctx context.Context, dir string) (func(), error) {
	l := flock.New(filepath.Join(dir, lockFileName), flock.SetPermissions(0o600))
	ok, err := l.TryLockContext(ctx, 25*time.Millisecond)
	if err != nil || !ok {
		if err == nil {
			err = ctx.Err()
		}
		// Only a wait that ran out means someone else holds the lock; a
		// lock file that cannot be opened (a read-only directory) is that
		// error alone.
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return nil, fmt.Errorf("locking %q (is another rotation running?): %w", l.Path(), err)
		}
		return nil, fmt.Errorf("locking %q: %w", l.Path(), err)
	}
	return func() { l.Unlock() }, nil
}

// Recover completes or undoes a multi-file change in dir (a certificate
// directory) that was interrupted by a crash, so that dir holds the complete
// old set of files or the complete new set, never a mix. It is cheap when
// there is nothing to do (one stat). If a change is running in another
// process it waits for it to finish, until ctx ends and for 30 seconds at
// most. When the journal cannot be acted on it returns [ErrRecoveryFailed]
// and leaves everything for an operator to inspect.
//
// # One locked path
//
// Recover is the only way anything completes or undoes a change, and it
// does so only with the directory's lock held: [Rotate] and [InitLayout]
// run it first under the lock they take for their own change, sc-cert
// rotate --recover calls it, and so do the readers, [LoadPair] and
// [CertReloader], before every load unless told NoRecover. A reader
// therefore never renames a file on its own judgement: it takes the lock
// a writer takes, so it never acts on a change still running in another
// process, and what it finishes is exactly what the next writer would
// have. A look that must write nothing (a read-only check) sets NoRecover
// and asks [Pending] instead.
//
// # Why a journal
//
// A change stages every new file beside its target (".NAME.sc-new", written
// atomically), then records in the journal ".sc-cert.journal" the list of
// renames and the SHA-256 of each staged file — the commit point — then
// renames the staged files over their targets and removes the journal.
// Recovery before the commit point deletes the staged files (old set);
// after it, finishes the renames (new set). We chose this over a
// Kubernetes-style "..data" symlink swap because it works for any
// certificate and key paths, including a key in another directory, keeps
// regular files that every tool reads, and needs no symlink privileges on
// Windows. The price: a reader that does not call Recover may, during the
// milliseconds of the renames, see a new certificate with the old key; a
// pair check ([CheckPair]) refuses that and the next file event brings the
// complete new set.
func Recover(ctx context.Context, dir string) error {
	if _, err := os.Lstat(filepath.Join(dir, journalFileName)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, lockTimeout)
	defer cancel()
	unlock, err := lockDir(ctx, dir)
	if err != nil {
		return fmt.Errorf("recovering interrupted change in %q: %w", dir, err)
	}
	defer unlock()
	return recoverLocked(dir)
}

// Pending reports whether dir holds the journal of a multi-file change
// that was interrupted (or is running in another process right now),
// which [Recover] would complete or undo. It only looks: it writes
// nothing and takes no lock, so a read-only check (sc-server --check,
// sc-cert verify) can say so instead of judging a half-changed set.
func Pending(dir string) (bool, error) {
	_, err := os.Lstat(filepath.Join(dir, journalFileName))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, err
}

// recoverLocked is Recover with the lock held. It also removes the
// temporary files of journal writes that a crash interrupted, which no
// journal lists.
func recoverLocked(dir string) error {
	jpath := filepath.Join(dir, journalFileName)
	if temps, _ := filepath.Glob(filepath.Join(dir, "."+globEscape(journalFileName)+".tmp-*")); len(temps) > 0 {
		for _, tmp := range temps {
			os.Remove(tmp)
		}
	}
	data, _, err := readFile(jpath, trustfile.Journal)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w in %q: %s (journal %q left in place)", ErrRecoveryFailed, dir, fmt.Sprintf(format, args...), jpath)
	}
	if err != nil {
		return fail("%v", err)
	}
	var j journal
	if err := json.Unmarshal(data, &j); err != nil || j.Version != 1 {
		return fail("unreadable journal")
	}
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	switch j.State {
	case statePrepare:
		// Not committed: undo. Staged files may or may not exist.
		for _, f := range j.Files {
			staged := abs(f.Staged)
			if err := os.Remove(staged); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fail("removing %q: %v", staged, err)
			}
			// A crash inside atomicfile's write leaves its temporary file.
			temps, _ := filepath.Glob(filepath.Join(filepath.Dir(staged), "."+globEscape(filepath.Base(staged))+".tmp-*"))
			for _, tmp := range temps {
				os.Remove(tmp)
			}
		}
	case stateCommit:
		// Committed: every staged file exists or has been renamed already.
		for _, f := range j.Files {
			staged, target := abs(f.Staged), abs(f.Target)
			if sum, err := fileSHA256(staged); err == nil {
				if sum != f.SHA256 {
					return fail("staged file %q does not match the journal", staged)
				}
				if err := os.Rename(staged, target); err != nil {
					return fail("renaming %q: %v", staged, err)
				}
				if err := atomicfile.SyncDir(filepath.Dir(target)); err != nil {
					return fail("%v", err)
				}
				continue
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fail("%v", err)
			}
			if sum, err := fileSHA256(target); err != nil || sum != f.SHA256 {
				return fail("neither the staged file %q nor the new %q is there", staged, target)
			}
		}
	default:
		return fail("unknown journal state %q", j.State)
	}
	if err := os.Remove(jpath); err != nil {
		return fail("%v", err)
	}
	return atomicfile.SyncDir(dir)
}

func globEscape(s string) string {
	r := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `\`, `\\`)
	return r.Replace(s)
}

func fileSHA256(path string) (string, error) {
	data, _, err := readFile(path, trustfile.Journal)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// stagedPath is where the new content of target waits for the commit: in
// the same directory, so that the final rename is atomic.
func stagedPath(target string) string {
	return filepath.Join(filepath.Dir(target), stagedPrefix+filepath.Base(target)+stagedSuffix)
}

// commit writes changes as one crash-safe transaction journaled in dir.
// The caller holds dir's lock and has run recoverLocked.
func commit(dir string, changes []change, hook stepHook) error {
	j := journal{Version: 1, State: statePrepare}
	for _, c := range changes {
		if c.mustNotExist {
			if _, err := os.Lstat(c.path); err == nil {
				return fmt.Errorf("writing %q: %w", c.path, ErrExists)
			}
		}
		rel := func(p string) string {
			if r, err := filepath.Rel(dir, p); err == nil {
				return r
			}
			a, _ := filepath.Abs(p)
			return a
		}
		j.Files = append(j.Files, journalFile{Target: rel(c.path), Staged: rel(stagedPath(c.path))})
	}
	jpath := filepath.Join(dir, journalFileName)
	writeJournal := func() error {
		data, err := json.MarshalIndent(j, "", "  ")
		if err != nil {
			return err
		}
		return atomicfile.WriteFile(jpath, append(data, '\n'), atomicfile.Options{Perm: 0o600, Overwrite: true})
	}
	// Undo what we did when something fails before the commit point (a
	// full disk, say); a crash leaves it to the next Recover.
	undo := func(err error) error {
		if errors.Is(err, errSimulatedCrash) {
			return err
		}
		if rerr := recoverLocked(dir); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}

	if err := writeJournal(); err != nil {
		return fmt.Errorf("starting the change (journal): %w", err)
	}
	if hook.crash("journal prepare") {
		return errSimulatedCrash
	}
	for i, c := range changes {
		staged := stagedPath(c.path)
		if err := atomicfile.WriteFile(staged, c.data, atomicfile.Options{Perm: c.perm, Overwrite: true}); err != nil {
			return undo(fmt.Errorf("staging %q: %w", c.path, err))
		}
		sum := sha256.Sum256(c.data)
		j.Files[i].SHA256 = hex.EncodeToString(sum[:])
		if hook.crash("stage " + filepath.Base(c.path)) {
			return errSimulatedCrash
		}
	}
	j.State = stateCommit
	if err := writeJournal(); err != nil {
		return undo(fmt.Errorf("committing the change (journal): %w", err))
	}
	if hook.crash("journal commit") {
		return errSimulatedCrash
	}
	// Past the commit point: any failure now is finished by Recover.
	for _, c := range changes {
		if err := os.Rename(stagedPath(c.path), c.path); err != nil {
			return fmt.Errorf("installing %q: %w: %w", c.path, err, ErrIncomplete)
		}
		if err := atomicfile.SyncDir(filepath.Dir(c.path)); err != nil {
			return err
		}
		if hook.crash("rename " + filepath.Base(c.path)) {
			return errSimulatedCrash
		}
	}
	if err := os.Remove(jpath); err != nil {
		return fmt.Errorf("removing journal %q: %w", jpath, err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return err
	}
	hook.crash("journal removed")
	return nil
}
