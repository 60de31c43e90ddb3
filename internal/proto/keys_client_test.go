package proto

import "testing"

// A KEYS reply to a client with an identity ends in its "client" line,
// which ParseKeys (today's clients) skips.
func TestKeysReplyClientLine(t *testing.T) {
	pin := "sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
	env := Env{Keys: func() []byte { return AppendKeys(nil, pin, nil) }, ClientPin: pin, ClientName: "alice"}
	out := AppendReply(nil, Frame{Type: Keys}, env)
	f, n, err := Parse(out, DefaultMaxBody)
	if err != nil || n != len(out) {
		t.Fatalf("parse: %v", err)
	}
	want := "current " + pin + "\nclient " + pin + " alice\n"
	if string(f.Body) != want {
		t.Fatalf("got %q, want %q", f.Body, want)
	}
	cur, next, err := ParseKeys(f.Body)
	if err != nil || cur != pin || len(next) != 0 {
		t.Fatalf("ParseKeys: got %q %q %v", cur, next, err)
	}
	env.ClientName = ""
	if f, _, _ := Parse(AppendReply(nil, Frame{Type: Keys}, env), DefaultMaxBody); string(f.Body) != "current "+pin+"\nclient "+pin+"\n" {
		t.Fatalf("without a name: got %q", f.Body)
	}
}
