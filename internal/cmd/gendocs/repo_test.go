package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// repoRoot is the repository root, seen from this package.
const repoRoot = "../../.."

// repoFiles lists the repository's tracked files.
func repoFiles(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command("git", "ls-files")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	return strings.Fields(string(out))
}

// The repository stands on its own: no code, script or document points at
// design notes that are not in it (issue 12: package docs pointed at
// DESIGN.md and NOTES.md). Every file is read, generated ones included.
func TestNoReferencesOutsideTheRepository(t *testing.T) {
	for _, f := range repoFiles(t) {
		data, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil {
			continue // a file deleted in the work tree
		}
		for i, line := range strings.Split(string(data), "\n") {
			for _, name := range []string{"DESIGN.md", "NOTES.md"} {
				if strings.Contains(line, name) && !strings.Contains(f, "repo_test.go") {
					t.Errorf("%s:%d points at %s, which is not in the repository: point at docs/ or say it in place", f, i+1, name)
				}
			}
		}
	}
}

// SECURITY.md says how long a resumed session really lives against the
// 7 days its ticket advertises, and what holding the ticket-key file
// allows; BENCHMARKS.md (and the generator that writes it) says it where
// resumption is measured (issue 12, testssl's LOW finding).
func TestTicketLifetimeDocumented(t *testing.T) {
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(repoRoot, p))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(strings.Fields(string(b)), " ")
	}
	sec := read("docs/SECURITY.md")
	for _, want := range []string{
		"Session tickets advertise a lifetime of 7 days",
		"in-memory ticket keys are replaced every 12 hours",
		"a ticket resumes for 12 to 24 hours",
		"Whoever holds the ticket-key file (`--ticket-keys`) can resume sessions — including ones a client pinned to a key that has since been replaced",
	} {
		if !strings.Contains(sec, want) {
			t.Errorf("docs/SECURITY.md does not say %q", want)
		}
	}
	for _, f := range []string{"docs/BENCHMARKS.md", "internal/cmd/benchsuite/document.go"} {
		if !strings.Contains(read(f), "crypto/tls always advertises a 7-day ticket lifetime") {
			t.Errorf("%s does not explain the advertised 7-day ticket lifetime", f)
		}
	}
}

// SECURITY.md lists every hostile-file case with its tests, and each test
// it names exists.
func TestHostileFileCasesDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs/SECURITY.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "### Hostile and broken files")
	if i < 0 {
		t.Fatal("docs/SECURITY.md has no hostile files section")
	}
	section := doc[i:]
	section = section[:strings.Index(section, "### Fuzzing")]
	for _, c := range []string{"a FIFO", "a device", "an oversize file", "owned by another user", "writable by group or others", "symbolic link to another user's 0600 file"} {
		if !strings.Contains(section, c) {
			t.Errorf("the hostile files section does not list %q", c)
		}
	}
	var src strings.Builder
	for _, f := range repoFiles(t) {
		if strings.HasSuffix(f, "_test.go") {
			data, _ := os.ReadFile(filepath.Join(repoRoot, f))
			src.Write(data)
		}
	}
	all := src.String()
	for _, field := range strings.Split(section, "`") {
		if strings.HasPrefix(field, "Test") && !strings.ContainsAny(field, " |\\") {
			if !strings.Contains(all, "func "+field+"(") {
				t.Errorf("docs/SECURITY.md names %s, which no test defines", field)
			}
		}
	}
}

// DEPLOY.md does not deny sc-server a completion command it has (issue
// 12).
func TestDeployDocCompletion(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs/DEPLOY.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Join(strings.Fields(string(b)), " ")
	if strings.Contains(doc, "has no `completion` command") || !strings.Contains(doc, "`sc-server completion …`") {
		t.Error("docs/DEPLOY.md does not say that sc-server completion prints its completion scripts")
	}
}
