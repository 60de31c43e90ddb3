package promcheck

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

var (
	// stringRE matches PromQL string literals, in which nothing is a
	// metric name: label values, regexes, label_replace's arguments.
	stringRE = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	// matchersRE matches label matchers, whose names are labels.
	matchersRE = regexp.MustCompile(`\{[^{}]*\}`)
	// groupingRE matches the label lists of by, without, on, ignoring,
	// group_left and group_right.
	groupingRE = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	// rangeRE matches range and subquery selectors, and offsets.
	rangeRE = regexp.MustCompile(`\[[^\]]*\]|\boffset\s+-?[0-9a-zA-Z_$]+`)
	// variableRE matches Grafana's template variables ($__rate_interval,
	// ${DS}, [[var]]) and Prometheus's template expansions in rules.
	variableRE = regexp.MustCompile(`\$\{[^}]*\}|\$[a-zA-Z_][a-zA-Z0-9_]*|\[\[[^\]]*\]\]`)
	// identRE matches what is left that may be a name, and the character
	// after it: a "(" makes it a function or an aggregation.
	identRE = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	// numberRE matches numbers such as 1e3 and 0x1F, whose letters are not
	// names.
	numberRE = regexp.MustCompile(`\b[0-9][0-9a-fA-FxX.eE+]*\b|\b(?:Inf|NaN|inf|nan)\b`)
)

// keywords are PromQL's words that are not metric names.
var keywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// Names returns the metric names expr selects, sorted and without
// duplicates: what is left once string literals, label matchers, grouping
// lists, ranges, template variables, numbers, keywords and function names
// are taken out. A selector written {__name__="x"} is not seen; the
// dashboard and rules here do not use that form.
func Names(expr string) []string {
	s := stringRE.ReplaceAllString(expr, " ")
	s = matchersRE.ReplaceAllString(s, " ")
	s = groupingRE.ReplaceAllString(s, " ")
	s = rangeRE.ReplaceAllString(s, " ")
	s = variableRE.ReplaceAllString(s, " ")
	s = numberRE.ReplaceAllString(s, " ")
	var names []string
	for _, m := range identRE.FindAllStringSubmatch(s, -1) {
		name := strings.TrimRight(strings.TrimSuffix(strings.TrimSpace(m[0]), "("), " \t\n")
		if m[1] != "" || keywords[name] {
			continue
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// Exported returns the names of the series a Prometheus text exposition
// offers: every family's name and, for histograms and summaries, their
// _bucket, _sum and _count series, as PromQL selects them.
func Exported(r io.Reader) (map[string]bool, error) {
	out := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end <= 0 {
			return nil, fmt.Errorf("malformed exposition line %q", line)
		}
		out[line[:end]] = true
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the exposition holds no series")
	}
	return out, nil
}

// Missing returns the names that exported lacks, sorted.
func Missing(names []string, exported map[string]bool) []string {
	var out []string
	for _, n := range names {
		if !exported[n] && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}
