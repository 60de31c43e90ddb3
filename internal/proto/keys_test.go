package proto

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"slices"
	"testing"
)

func testPin(seed string) string {
	sum := sha256.Sum256([]byte(seed))
	return "sha256//" + base64.StdEncoding.EncodeToString(sum[:])
}

func TestParseKeys(t *testing.T) {
	a, b, c := testPin("a"), testPin("b"), testPin("c")
	tests := []struct {
		name        string
		body        string
		wantCurrent string
		wantNext    []string
		wantErr     bool
	}{
		{name: "current only", body: "current " + a + "\n", wantCurrent: a},
		{name: "no final newline", body: "current " + a, wantCurrent: a},
		{name: "with next pins", body: "current " + a + "\nnext " + b + "\nnext " + c + "\n", wantCurrent: a, wantNext: []string{b, c}},
		{name: "unknown lines skipped", body: "current " + a + "\nnot_after 2027-01-01\nnext " + b + "\n", wantCurrent: a, wantNext: []string{b}},
		{name: "empty", body: "", wantErr: true},
		{name: "next first", body: "next " + a + "\n", wantErr: true},
		{name: "current twice", body: "current " + a + "\ncurrent " + b + "\n", wantErr: true},
		{name: "unknown first line", body: "hello " + a + "\n", wantErr: true},
		{name: "no space", body: "current" + a + "\n", wantErr: true},
		{name: "blank line", body: "current " + a + "\n\n", wantErr: true},
		{name: "hex pin", body: "current 0011\n", wantErr: true},
		{name: "wrong digest length", body: "current sha256//AAAA\n", wantErr: true},
		{name: "bad base64", body: "current sha256//" + "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!=" + "\n", wantErr: true},
		{name: "non-canonical base64", body: "current " + a[:len(a)-2] + "B=\n", wantErr: a[len(a)-2] != 'B'},
		{name: "CRLF", body: "current " + a + "\r\n", wantErr: true},
		{name: "bad next", body: "current " + a + "\nnext sha1//x\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur, next, err := ParseKeys([]byte(tt.body))
			if tt.wantErr {
				var pe *ProtocolError
				if !errors.As(err, &pe) || pe.Kind != KindBadKeys {
					t.Fatalf("got (%q, %q, %v), want a ProtocolError of kind %s", cur, next, err, KindBadKeys)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			if cur != tt.wantCurrent || !slices.Equal(next, tt.wantNext) {
				t.Errorf("got (%q, %q), want (%q, %q)", cur, next, tt.wantCurrent, tt.wantNext)
			}
		})
	}
}

func TestKeysRoundTrip(t *testing.T) {
	cur, next := testPin("now"), []string{testPin("later"), testPin("backup")}
	body := AppendKeys(nil, cur, next)
	want := "current " + cur + "\nnext " + next[0] + "\nnext " + next[1] + "\n"
	if string(body) != want {
		t.Fatalf("AppendKeys: got %q, want %q", body, want)
	}
	gotCur, gotNext, err := ParseKeys(body)
	if err != nil || gotCur != cur || !slices.Equal(gotNext, next) {
		t.Errorf("ParseKeys(AppendKeys(…)): got (%q, %q, %v), want (%q, %q, nil)", gotCur, gotNext, err, cur, next)
	}
}

func TestParseKeySetRevoked(t *testing.T) {
	a, b, c, d := testPin("a"), testPin("b"), testPin("c"), testPin("d")
	tests := []struct {
		name string
		body string
		want KeySet
		err  bool
	}{
		{name: "revoked after next", body: "current " + a + "\nnext " + b + "\nrevoked " + c + "\n", want: KeySet{Current: a, Next: []string{b}, Revoked: []string{c}}},
		{name: "revoked before next", body: "current " + a + "\nrevoked " + c + "\nnext " + b + "\nrevoked " + d, want: KeySet{Current: a, Next: []string{b}, Revoked: []string{c, d}}},
		{name: "client lines skipped", body: "current " + a + "\nclient " + b + "\nrevoked " + c + "\n", want: KeySet{Current: a, Revoked: []string{c}}},
		{name: "revoked first", body: "revoked " + a + "\ncurrent " + b + "\n", err: true},
		{name: "bad revoked pin", body: "current " + a + "\nrevoked sha256//AAAA\n", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKeySet([]byte(tt.body))
			if tt.err {
				if err == nil {
					t.Fatalf("got %+v, want an error", got)
				}
				return
			}
			if err != nil || got.Current != tt.want.Current || !slices.Equal(got.Next, tt.want.Next) || !slices.Equal(got.Revoked, tt.want.Revoked) {
				t.Fatalf("got (%+v, %v), want %+v", got, err, tt.want)
			}
			if again := AppendKeySet(nil, got); string(AppendKeySet(nil, tt.want)) != string(again) {
				t.Fatalf("render: got %q", again)
			}
		})
	}
}
