package cli

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/spacecaptain/spacecaptain"

// imports returns, for each package directory of the repository (as a
// slash path such as "internal/server"), what its .go files import of
// this module, test files left out unless withTests. Files under testdata
// are not packages and are skipped, with any build constraint ignored.
func imports(t *testing.T, withTests bool) map[string][]string {
	t.Helper()
	root := filepath.Join("..", "..")
	out := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (name == "testdata" || strings.HasPrefix(name, ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || (!withTests && strings.HasSuffix(name, "_test.go")) {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(p))
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(rel)
		for _, spec := range f.Imports {
			ip, err := strconv.Unquote(spec.Path.Value)
			if err != nil {
				return err
			}
			if ours, ok := strings.CutPrefix(ip, module+"/"); ok && !slices.Contains(out[dir], ours) {
				out[dir] = append(out[dir], ours)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// The commands' package is imported only by the commands: cmd/*, the
// tools under internal/cmd and its own sub-packages (issue 13). A package
// under internal/ that imported it would pull cobra and the commands'
// flags into what the libraries and the server core are built from, and
// its "package main" tools used to hide there. Tests may import it to
// drive the commands (internal/interop does), so only non-test files
// count.
func TestOnlyCommandsImportTheCLI(t *testing.T) {
	for dir, deps := range imports(t, false) {
		if under(dir, "cmd") || under(dir, "internal/cmd") || under(dir, "internal/cli") {
			continue
		}
		for _, dep := range deps {
			if under(dep, "internal/cli") {
				t.Errorf("%s imports %s: only cmd/, internal/cmd/ and internal/cli itself may (docs/ARCHITECTURE.md, dependency rules)", dir, dep)
			}
		}
	}
}

// Every "package main" under internal/ lives in internal/cmd (issue 13:
// the benchmark driver, the reference server and the docs generator were
// hidden among the packages).
func TestMainPackagesLiveInCmd(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	reported := map[string]bool{}
	err := filepath.WalkDir(filepath.Join(root, "internal"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.PackageClauseOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		if dir := filepath.ToSlash(rel); f.Name.Name == "main" && path.Dir(dir) != "internal/cmd" && !reported[dir] {
			reported[dir] = true
			t.Errorf("%s is a package main outside internal/cmd: move it to internal/cmd/%s", dir, path.Base(dir))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The public libraries stand alone (docs/ARCHITECTURE.md): pki and pinning
// do not import each other, and of this module they import only internal
// leaf packages, which import nothing of this module themselves.
func TestLibrariesImportOnlyLeaves(t *testing.T) {
	deps := imports(t, false)
	for _, lib := range []string{"pki", "pinning"} {
		for _, dep := range deps[lib] {
			if !under(dep, "internal") {
				t.Errorf("%s imports %s: the public libraries do not import each other", lib, dep)
				continue
			}
			if leafDeps := deps[dep]; len(leafDeps) > 0 {
				t.Errorf("%s imports %s, which imports %v: a library may use only internal leaf packages", lib, dep, leafDeps)
			}
		}
	}
}
