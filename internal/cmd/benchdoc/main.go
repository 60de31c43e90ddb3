// Command benchdoc draws the charts of docs/BENCHMARKS.md from the
// results of scripts/soak.sh and scripts/bench.sh, and rewrites the
// document's section of each (package internal/bench/benchdoc):
//
//	benchdoc soak --dir DIR [--doc docs/BENCHMARKS.md]
//	    DIR/soak-ENGINE.json and .csv → DIR/soak-ENGINE.svg, and the soak section
//	benchdoc scaling --dir DIR [--doc FILE] [--command TEXT] [--note TEXT]
//	    DIR/scaling-SERVER.json (sc-client bench scale --json) → DIR/scaling.svg, and the scaling section
//	benchdoc handshakes --in FILE --svg FILE [--doc FILE] [--source TEXT]
//	    handshake rates (JSON, from the benchmark suite) → the chart, and its section
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/bench"
	"github.com/spacecaptain/spacecaptain/internal/bench/benchdoc"
	"github.com/spacecaptain/spacecaptain/internal/bench/soak"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchdoc soak|scaling|handshakes [flags] (see the command's doc comment)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "soak":
		err = soakCmd(os.Args[2:])
	case "scaling":
		err = scalingCmd(os.Args[2:])
	case "handshakes":
		err = handshakesCmd(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q: want soak, scaling or handshakes", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchdoc: error: %v\n", err)
		os.Exit(1)
	}
}

// writeFile writes data to path by a rename, so that a reader never sees
// half of it.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".benchdoc-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// setBlock replaces b in the document at doc.
func setBlock(doc string, b benchdoc.Block) error {
	data, err := os.ReadFile(doc)
	if err != nil {
		return err
	}
	out, err := benchdoc.SetBlock(data, b)
	if err != nil {
		return fmt.Errorf("%s: %w", doc, err)
	}
	if err := writeFile(doc, out); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "benchdoc: wrote the %s section of %s\n", b.Name, doc)
	return nil
}

// relTo returns path relative to the directory of doc, with slashes, for
// a Markdown link.
func relTo(doc, path string) (string, error) {
	absDoc, err := filepath.Abs(doc)
	if err != nil {
		return "", err
	}
	absPath, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	r, err := filepath.Rel(filepath.Dir(absDoc), absPath)
	if err != nil {
		return "", err
	}
	return filepath.ToSlash(r), nil
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	return nil
}

func soakCmd(args []string) error {
	fs := flag.NewFlagSet("benchdoc soak", flag.ExitOnError)
	dir := fs.String("dir", "", "`DIR` with soak-ENGINE.json and soak-ENGINE.csv; the charts are written there")
	doc := fs.String("doc", "", "Markdown `FILE` whose soak section to rewrite (docs/BENCHMARKS.md)")
	_ = fs.Parse(args)
	if *dir == "" {
		return errors.New("--dir is required")
	}
	summaries, err := filepath.Glob(filepath.Join(*dir, "soak-*.json"))
	if err != nil {
		return err
	}
	if len(summaries) == 0 {
		return fmt.Errorf("no soak-ENGINE.json in %s", *dir)
	}
	// The epoll engine (the default) first.
	slices.SortFunc(summaries, func(a, b string) int {
		return strings.Compare(strings.Replace(a, "soak-epoll", "soak-0", 1), strings.Replace(b, "soak-epoll", "soak-0", 1))
	})
	var runs []benchdoc.SoakRun
	for _, path := range summaries {
		var sum soak.Summary
		if err := readJSON(path, &sum); err != nil {
			return err
		}
		csvPath := strings.TrimSuffix(path, ".json") + ".csv"
		f, err := os.Open(csvPath)
		if err != nil {
			return err
		}
		samples, err := soak.ReadCSV(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", csvPath, err)
		}
		var svg bytes.Buffer
		if err := benchdoc.SoakChart(&svg, &sum, samples, float64(soak.DefaultLatencyLimit/time.Millisecond)); err != nil {
			return fmt.Errorf("charting %s: %w", path, err)
		}
		svgPath := strings.TrimSuffix(path, ".json") + ".svg"
		if err := writeFile(svgPath, svg.Bytes()); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "benchdoc: wrote %s\n", svgPath)
		run := benchdoc.SoakRun{Summary: &sum, Samples: samples, Chart: svgPath}
		if *doc != "" {
			if run.Chart, err = relTo(*doc, svgPath); err != nil {
				return err
			}
		}
		runs = append(runs, run)
	}
	if *doc == "" {
		return nil
	}
	return setBlock(*doc, benchdoc.SoakSection(runs))
}

func scalingCmd(args []string) error {
	fs := flag.NewFlagSet("benchdoc scaling", flag.ExitOnError)
	dir := fs.String("dir", "", "`DIR` with scaling-SERVER.json (sc-client bench scale --json); the chart is written there as scaling.svg")
	doc := fs.String("doc", "", "Markdown `FILE` whose scaling section to rewrite (docs/BENCHMARKS.md)")
	command := fs.String("command", "", "the command line that made the run, for the section")
	note := fs.String("note", "", "a `NOTE` printed with the results (say, that the machine was busy)")
	_ = fs.Parse(args)
	if *dir == "" {
		return errors.New("--dir is required")
	}
	paths, err := filepath.Glob(filepath.Join(*dir, "scaling-*.json"))
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return fmt.Errorf("no scaling-SERVER.json in %s", *dir)
	}
	var series []benchdoc.ScalingSeries
	for _, path := range paths {
		var rep bench.Report
		if err := readJSON(path, &rep); err != nil {
			return err
		}
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "scaling-"), ".json")
		if e, ok := strings.CutPrefix(name, "sc-server-"); ok {
			name = "sc-server/" + e
		}
		series = append(series, benchdoc.ScalingSeries{Name: name, Report: &rep})
	}
	// sc-server's engines first (epoll, goroutine), then the reference.
	slices.SortFunc(series, func(a, b benchdoc.ScalingSeries) int {
		ra, rb := strings.HasPrefix(a.Name, "sc-server/"), strings.HasPrefix(b.Name, "sc-server/")
		if ra != rb {
			if ra {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	var svg bytes.Buffer
	if err := benchdoc.ScalingChart(&svg, series); err != nil {
		return err
	}
	svgPath := filepath.Join(*dir, "scaling.svg")
	if err := writeFile(svgPath, svg.Bytes()); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "benchdoc: wrote %s\n", svgPath)
	if *doc == "" {
		return nil
	}
	chart, err := relTo(*doc, svgPath)
	if err != nil {
		return err
	}
	return setBlock(*doc, benchdoc.ScalingSection(series, chart, *command, *note))
}

func handshakesCmd(args []string) error {
	fs := flag.NewFlagSet("benchdoc handshakes", flag.ExitOnError)
	in := fs.String("in", "", "JSON `FILE` with the handshake rates (the suite's handshakes.json)")
	out := fs.String("svg", "", "SVG `FILE` to write")
	doc := fs.String("doc", "", "Markdown `FILE` whose handshake chart section to rewrite (docs/BENCHMARKS.md)")
	source := fs.String("source", "the medians of the handshake rows above", "where the figures come from, for the section")
	_ = fs.Parse(args)
	if *in == "" || *out == "" {
		return errors.New("--in and --svg are required")
	}
	var rates []benchdoc.HandshakeRate
	if err := readJSON(*in, &rates); err != nil {
		return err
	}
	var svg bytes.Buffer
	if err := benchdoc.HandshakeChart(&svg, rates); err != nil {
		return err
	}
	if err := writeFile(*out, svg.Bytes()); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "benchdoc: wrote %s\n", *out)
	if *doc == "" {
		return nil
	}
	chart, err := relTo(*doc, *out)
	if err != nil {
		return err
	}
	return setBlock(*doc, benchdoc.HandshakeSection(rates, chart, *source))
}
