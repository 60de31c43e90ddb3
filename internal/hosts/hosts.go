package hosts

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/spacecaptain/spacecaptain/internal/trustfile"
)

// MaxSize caps a hosts file: settings for many hosts fit in far less.
const MaxSize = 1 << 20

// DefaultPath returns the default hosts file: space-captain/hosts in the
// user's configuration directory ($XDG_CONFIG_HOME or ~/.config on Linux,
// ~/Library/Application Support on macOS, %AppData% on Windows), beside
// the known_hosts file.
func DefaultPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("finding the hosts file: %w (give its path explicitly)", err)
	}
	return filepath.Join(dir, "space-captain", "hosts"), nil
}

// File is a parsed hosts file.
type File struct {
	// Path is where it was read from, for messages.
	Path string
	// Blocks are in file order. Settings before the first Host line form
	// a first block whose only pattern is "*" and whose Line is 0.
	Blocks []Block
}

// Block is a Host line and the settings under it.
type Block struct {
	// Patterns are the Host line's patterns as written: * and ? are
	// wildcards, a leading ! negates.
	Patterns []string
	// Line is the Host line's number, from 1; 0 for settings before any
	// Host line.
	Line int
	// Settings are in file order.
	Settings []Setting
}

// Setting is one "key value" line.
type Setting struct {
	Key   string // lower case
	Value string // quotes removed
	Line  int
}

// ParseError is a line of a hosts file that cannot be read.
type ParseError struct {
	Path string
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg) }

// ReadFile reads and parses the hosts file at path. A missing file is an
// error matching [fs.ErrNotExist]; a file that is not regular, is larger
// than [MaxSize], or that another user owns or could write (it, or its
// directory) is refused.
func ReadFile(path string) (*File, error) {
	data, err := readCapped(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// readCapped reads the file through the hardened reader every file that
// decides trust goes through: a regular file of at most [MaxSize], opened
// without blocking, owned by this user or root and writable by nobody else
// (nor its directory): it says how each server is trusted.
func readCapped(path string) ([]byte, error) {
	data, _, err := trustfile.Read(path, trustfile.ClientHosts)
	if err != nil {
		return nil, fmt.Errorf("reading the hosts file %s: %w", path, err)
	}
	return data, nil
}

// Parse parses a hosts file's content; path is for messages. Each line is
// blank, a comment (# first), "Host PATTERN..." or "key value" (also
// "key=value"); keys and "Host" are case-insensitive; a value may be put
// in double quotes, in which \" and \\ stand for " and \. The error is a
// *[ParseError].
func Parse(path string, data []byte) (*File, error) {
	f := &File{Path: path}
	cur := -1
	for i, raw := range strings.Split(string(data), "\n") {
		n := i + 1
		line := strings.TrimSpace(strings.TrimSuffix(raw, "\r"))
		if line == "" || line[0] == '#' {
			continue
		}
		if !validText(line) {
			return nil, &ParseError{path, n, "control characters or invalid UTF-8"}
		}
		key, rest := splitKey(line)
		if key == "" {
			return nil, &ParseError{path, n, fmt.Sprintf("%q: want KEY VALUE", line)}
		}
		if key == "host" {
			patterns := strings.Fields(rest)
			if len(patterns) == 0 {
				return nil, &ParseError{path, n, "Host with no pattern: want Host NAME... (* and ? are wildcards, ! negates)"}
			}
			for _, p := range patterns {
				if strings.TrimPrefix(p, "!") == "" {
					return nil, &ParseError{path, n, fmt.Sprintf("Host pattern %q is empty", p)}
				}
				// No host name holds '=', and one leading the patterns
				// would read back as the separator of "Host=pattern".
				if strings.Contains(p, "=") {
					return nil, &ParseError{path, n, fmt.Sprintf("Host pattern %q holds '=': want host names or wildcards", p)}
				}
			}
			f.Blocks = append(f.Blocks, Block{Patterns: patterns, Line: n})
			cur = len(f.Blocks) - 1
			continue
		}
		if key == "match" || key == "include" {
			return nil, &ParseError{path, n, fmt.Sprintf("%s is not supported: only Host blocks", key)}
		}
		value, err := unquote(rest)
		if err != nil {
			return nil, &ParseError{path, n, fmt.Sprintf("%s: %v", key, err)}
		}
		if cur < 0 {
			f.Blocks = append(f.Blocks, Block{Patterns: []string{"*"}})
			cur = 0
		}
		f.Blocks[cur].Settings = append(f.Blocks[cur].Settings, Setting{Key: key, Value: value, Line: n})
	}
	return f, nil
}

// splitKey splits "key value" or "key=value" into the lower-case key and
// the rest, trimmed.
func splitKey(line string) (string, string) {
	end := strings.IndexFunc(line, func(r rune) bool { return unicode.IsSpace(r) || r == '=' })
	if end < 0 {
		return strings.ToLower(line), ""
	}
	key, rest := line[:end], strings.TrimSpace(line[end:])
	if strings.HasPrefix(rest, "=") {
		rest = strings.TrimSpace(rest[1:])
	}
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '+') {
			return "", ""
		}
	}
	return strings.ToLower(key), rest
}

// unquote returns a value as written, or the content of its double quotes.
func unquote(s string) (string, error) {
	if !strings.HasPrefix(s, `"`) {
		if s == "" {
			return "", errors.New("no value")
		}
		return s, nil
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
				b.WriteByte(s[i+1])
				i++
				continue
			}
			b.WriteByte(c)
		case '"':
			if strings.TrimSpace(s[i+1:]) != "" {
				return "", fmt.Errorf("text after the closing quote: %q", s[i+1:])
			}
			return b.String(), nil
		default:
			b.WriteByte(c)
		}
	}
	return "", errors.New("no closing quote")
}

// Quote writes a value so that [Parse] reads it back: as is when it can,
// else in double quotes.
func Quote(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\"\\") && !strings.HasPrefix(v, "#") && !strings.HasPrefix(v, "=") {
		return v
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

func validText(s string) bool {
	for _, r := range s {
		if r == unicode.ReplacementChar || (unicode.IsControl(r) && r != '\t') {
			return false
		}
	}
	return true
}

// Matches reports whether a block applies to name: one of its patterns
// matches it and none of its negated (!) patterns does. Names and
// patterns compare case-insensitively, as host names do.
func (b *Block) Matches(name string) bool {
	name = strings.ToLower(name)
	ok := false
	for _, p := range b.Patterns {
		neg := strings.HasPrefix(p, "!")
		if !match(strings.ToLower(strings.TrimPrefix(p, "!")), name) {
			continue
		}
		if neg {
			return false
		}
		ok = true
	}
	return ok
}

// match is a shell-style wildcard match of the whole name: * is any run
// of characters, ? one character.
func match(pattern, name string) bool {
	px, nx := 0, 0
	nextPx, nextNx := 0, 0
	for px < len(pattern) || nx < len(name) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '?':
				if nx < len(name) {
					px++
					nx++
					continue
				}
			case '*':
				nextPx, nextNx = px, nx+1
				px++
				continue
			default:
				if nx < len(name) && name[nx] == c {
					px++
					nx++
					continue
				}
			}
		}
		if 0 < nextNx && nextNx <= len(name) {
			px, nx = nextPx, nextNx
			continue
		}
		return false
	}
	return true
}

// Resolve returns the settings that apply to name: for each key, the
// lines of the first matching block that sets it (all of them: a key such
// as pin may be given several times), in file order. Later blocks only
// fill in keys earlier ones left unset, as in ssh_config.
func (f *File) Resolve(name string) []Setting {
	if f == nil {
		return nil
	}
	taken := map[string]int{} // key -> index of the block that set it
	var out []Setting
	for bi := range f.Blocks {
		b := &f.Blocks[bi]
		if !b.Matches(name) {
			continue
		}
		for _, s := range b.Settings {
			if at, ok := taken[s.Key]; ok && at != bi {
				continue
			}
			taken[s.Key] = bi
			out = append(out, s)
		}
	}
	return out
}

// errNotExist reports whether err says the file is missing.
func errNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// render writes a File back as text, one canonical line per setting: used
// by tests and fuzzing for the round trip, never to rewrite a person's file.
func (f *File) render() []byte {
	var b bytes.Buffer
	for _, blk := range f.Blocks {
		if blk.Line != 0 {
			fmt.Fprintf(&b, "Host %s\n", strings.Join(blk.Patterns, " "))
		}
		for _, s := range blk.Settings {
			fmt.Fprintf(&b, "    %s %s\n", s.Key, Quote(s.Value))
		}
	}
	return b.Bytes()
}
