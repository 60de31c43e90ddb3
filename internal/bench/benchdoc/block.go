package benchdoc

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
)

// Block is a section of docs/BENCHMARKS.md that one script owns, between
// two marker comments:
//
//	<!-- BEGIN soak: written by scripts/soak.sh --record -->
//	...
//	<!-- END soak -->
type Block struct {
	// Name is the block's name in its markers, a word.
	Name string
	// Writer is who writes it, for the reader of the raw Markdown.
	Writer string
	// Body is the Markdown between the markers.
	Body string
}

// Bytes renders the block with its markers.
func (b Block) Bytes() []byte {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "<!-- BEGIN %s: written by %s -->\n", b.Name, b.Writer)
	buf.WriteString(b.Body)
	if len(b.Body) > 0 && b.Body[len(b.Body)-1] != '\n' {
		buf.WriteByte('\n')
	}
	fmt.Fprintf(&buf, "<!-- END %s -->\n", b.Name)
	return buf.Bytes()
}

var blockRE = regexp.MustCompile(`(?ms)^<!-- BEGIN ([a-z0-9-]+):[^\n]*-->\n.*?^<!-- END ([a-z0-9-]+) -->\n?`)

// blocks returns the blocks of doc, in order, as found.
func blocks(doc []byte) (names []string, spans [][]int, err error) {
	for _, m := range blockRE.FindAllSubmatchIndex(doc, -1) {
		begin, end := string(doc[m[2]:m[3]]), string(doc[m[4]:m[5]])
		if begin != end {
			return nil, nil, fmt.Errorf("the block %q ends with the marker of %q", begin, end)
		}
		names = append(names, begin)
		spans = append(spans, []int{m[0], m[1]})
	}
	return names, spans, nil
}

// insertAt is where a new block goes: before the document's "## Commands"
// section, which stays last with the Go benchmarks, or at its end.
func insertAt(doc []byte) int {
	if i := bytes.Index(doc, []byte("\n## Commands\n")); i >= 0 {
		return i + 1
	}
	return len(doc)
}

// SetBlock returns doc with b in place of the block of the same name, or
// with b added before the "## Commands" section (or at the end) when doc
// has none. A marker without its other half is an error: the document was
// edited by hand, and nothing is replaced.
func SetBlock(doc []byte, b Block) ([]byte, error) {
	names, spans, err := blocks(doc)
	if err != nil {
		return nil, err
	}
	if n := bytes.Count(doc, []byte("<!-- BEGIN ")); n != len(names) || bytes.Count(doc, []byte("<!-- END ")) != len(names) {
		return nil, fmt.Errorf("the document has %d block markers that do not pair up: fix them by hand", n)
	}
	for i, name := range names {
		if name == b.Name {
			out := append([]byte{}, doc[:spans[i][0]]...)
			out = append(out, b.Bytes()...)
			return append(out, doc[spans[i][1]:]...), nil
		}
	}
	at := insertAt(doc)
	out := append([]byte{}, doc[:at]...)
	if at > 0 && !bytes.HasSuffix(out, []byte("\n\n")) {
		out = append(out, '\n')
	}
	out = append(out, b.Bytes()...)
	out = append(out, '\n')
	return append(out, doc[at:]...), nil
}

// KeepBlocks returns next with every block of prev that next lacks, so that
// a script that rewrites the whole document keeps the sections other
// scripts own.
func KeepBlocks(prev, next []byte) ([]byte, error) {
	names, spans, err := blocks(prev)
	if err != nil {
		return nil, err
	}
	have, _, err := blocks(next)
	if err != nil {
		return nil, err
	}
	out := next
	for i, name := range names {
		if slices.Contains(have, name) {
			continue
		}
		body := prev[spans[i][0]:spans[i][1]]
		at := insertAt(out)
		merged := append([]byte{}, out[:at]...)
		merged = append(merged, body...)
		if !bytes.HasSuffix(body, []byte("\n\n")) {
			merged = append(merged, '\n')
		}
		out = append(merged, out[at:]...)
	}
	return out, nil
}
