package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// regenerate is the command that brings the committed files up to date;
// every failure below says it.
const regenerate = "GOTOOLCHAIN=auto go generate ./... && git add docs/man docs/completions"

// docsDir is the repository's docs directory, seen from this package.
const docsDir = "../../../docs"

// The committed man pages and completion scripts are what the commands
// generate now: a changed flag, help text or subcommand without a
// regeneration fails here.
func TestDocsUpToDate(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("docs/man describes the Linux build (sc-server's engines differ by platform); checked on Linux")
	}
	for _, v := range neutralEnv() {
		t.Setenv(v, "")
	}
	tmp := t.TempDir()
	if err := generateInto(tmp); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"man", "completions"} {
		want := mustReadTree(t, filepath.Join(tmp, d))
		got := mustReadTree(t, filepath.Join(docsDir, d))
		for _, name := range sortedKeys(want) {
			g, ok := got[name]
			switch {
			case !ok:
				t.Errorf("docs/%s/%s is missing; run: %s", d, name, regenerate)
			case !bytes.Equal(g, want[name]):
				t.Errorf("docs/%s/%s is out of date (%s); run: %s", d, name, firstDiff(g, want[name]), regenerate)
			}
		}
		for _, name := range sortedKeys(got) {
			if _, ok := want[name]; !ok {
				t.Errorf("docs/%s/%s is not generated any more (a removed command?); run: %s", d, name, regenerate)
			}
		}
	}
}

// Generating twice gives the same bytes: no date, user or map order leaks
// in (otherwise the test above would fail for everyone but the last to
// generate).
func TestGenerateIsDeterministic(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("generation runs on Linux only")
	}
	for _, v := range neutralEnv() {
		t.Setenv(v, "")
	}
	a, b := t.TempDir(), t.TempDir()
	for _, dir := range []string{a, b} {
		if err := generateInto(dir); err != nil {
			t.Fatal(err)
		}
	}
	ta, tb := mustReadTree(t, a), mustReadTree(t, b)
	if len(ta) == 0 {
		t.Fatal("nothing was generated")
	}
	for name, da := range ta {
		if !bytes.Equal(da, tb[name]) {
			t.Errorf("%s differs between two runs: %s", name, firstDiff(tb[name], da))
		}
	}
}

// The pages cover every command a user can run, carry the fixed header and
// no generator footer or user's directory; each completion script asks its
// command for completions.
func TestGeneratedContent(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("generation runs on Linux only")
	}
	// Taken before the environment is cleared: none of it may show.
	home, err := os.UserHomeDir()
	if err != nil || len(home) < 2 {
		home = "/nonexistent-home"
	}
	for _, v := range neutralEnv() {
		t.Setenv(v, "")
	}
	dir := t.TempDir()
	if err := generateInto(dir); err != nil {
		t.Fatal(err)
	}
	files := mustReadTree(t, dir)
	for _, name := range []string{
		"man/sc-server.1", "man/sc-cert.1", "man/sc-cert-init.1", "man/sc-cert-rotate.1", "man/sc-cert-pin-show.1",
		"man/sc-client.1", "man/sc-client-echo.1", "man/sc-client-bench.1", "man/sc-cert-completion-bash.1",
		"completions/bash/sc-server", "completions/zsh/_sc-cert", "completions/fish/sc-client.fish",
		"completions/powershell/sc-server.ps1",
	} {
		if _, ok := files[name]; !ok {
			t.Errorf("%s was not generated", name)
		}
	}
	if _, ok := files["man/sc-server-completion.1"]; ok {
		t.Error("sc-server has no completion command (it has no subcommands), but a page for one was generated")
	}
	for name, data := range files {
		s := string(data)
		if strings.HasPrefix(name, "man/") {
			if !strings.Contains(s, `"Nov 2026" "Space Captain" "Space Captain Manual"`) {
				t.Errorf("%s: no fixed .TH header:\n%.200s", name, s)
			}
			if strings.Contains(s, "Auto generated") {
				t.Errorf("%s carries cobra's dated footer", name)
			}
		}
		if strings.Contains(s, home+"/") {
			t.Errorf("%s contains the home directory %s of whoever generates", name, home)
		}
		if strings.HasPrefix(name, "completions/") {
			cmd := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(name), "_"), ".fish"), ".ps1")
			if !strings.Contains(s, cmd) || !strings.Contains(s, "__complete") {
				t.Errorf("%s does not ask %s __complete for completions", name, cmd)
			}
		}
	}
	if s := string(files["man/sc-server.1"]); !strings.Contains(s, "--engine") || !strings.Contains(s, "--metrics-listen") {
		t.Errorf("sc-server.1 does not describe --engine and --metrics-listen")
	}
}

// mustReadTree returns every regular file under root by slash-separated
// relative path.
func mustReadTree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		files[filepath.ToSlash(rel)] = data
		return err
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return files
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// firstDiff describes the first line where got and want differ.
func firstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d: committed %q, generated %q", i+1, gl, wl)
		}
	}
	return "same lines, different bytes"
}
