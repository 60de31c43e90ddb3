package pinning_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/spacecaptain/spacecaptain/pinning"
)

// Two pins in curl's --pinnedpubkey form: the key a server uses today and
// the one it will roll over to.
const (
	todayPin    = "sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
	tomorrowPin = "sha256//LXEWQrcmsEQBYnyp+6wy9chTD7GQPMTbAiWHF5IaSIE="
)

func ExampleParseSet() {
	// As given to sc-client --pin, or to curl --pinnedpubkey.
	set, err := pinning.ParseSet(todayPin + ";" + tomorrowPin)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("current:", set.Current())
	fmt.Println("backups:", set.Backups())
	tomorrow, _ := pinning.ParsePin(tomorrowPin)
	fmt.Println("accepts tomorrow's key:", set.Contains(tomorrow))
	// Output:
	// current: sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=
	// backups: [sha256//LXEWQrcmsEQBYnyp+6wy9chTD7GQPMTbAiWHF5IaSIE=]
	// accepts tomorrow's key: true
}

func ExampleLine() {
	today, _ := pinning.ParsePin(todayPin)
	tomorrow, _ := pinning.ParsePin(tomorrowPin)
	line, err := pinning.Line("Game.Example.COM:4242", today, tomorrow)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(line)
	// Output:
	// game.example.com:4242 current=sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;via=added backup=sha256//LXEWQrcmsEQBYnyp+6wy9chTD7GQPMTbAiWHF5IaSIE=;via=added
}

func ExampleFetchChain() {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()

	// Look at the server's certificates without trusting it, as
	// sc-cert inspect HOST:PORT does.
	chain, state, err := pinning.FetchChain(context.Background(), srv.Listener.Addr().String(), pinning.FetchOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("certificates:", len(chain))
	fmt.Println("pin matches:", pinning.PinOf(chain[0]).Equal(pinning.PinOf(srv.Certificate())))
	fmt.Println("verified:", len(state.VerifiedChains) > 0)
	// Output:
	// certificates: 1
	// pin matches: true
	// verified: false
}

func ExampleNewTrust() {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello")
	}))
	defer srv.Close()
	host := srv.Listener.Addr().String()

	// The operator hands out the server's pin (sc-cert fingerprint
	// --format pin) and, ahead of a rollover, the next one.
	tomorrow, _ := pinning.ParsePin(tomorrowPin)
	pins, err := pinning.NewSet(pinning.PinOf(srv.Certificate()), tomorrow)
	if err != nil {
		log.Fatal(err)
	}
	trust, err := pinning.NewTrust(pinning.TrustOptions{Mode: pinning.ModePin, Pins: pins, Host: host})
	if err != nil {
		log.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: trust.Config()}}
	resp, err := client.Get(srv.URL)
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(body))

	// A client pinned to other keys is refused with a *KeyError.
	wrong, _ := pinning.ParseSet(todayPin)
	trust, _ = pinning.NewTrust(pinning.TrustOptions{Mode: pinning.ModePin, Pins: wrong, Host: host})
	client = &http.Client{Transport: &http.Transport{TLSClientConfig: trust.Config()}}
	_, err = client.Get(srv.URL)
	var ke *pinning.KeyError
	fmt.Println("refused:", errors.As(err, &ke))
	// Output:
	// hello
	// refused: true
}

func ExampleTrust_Record() {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	host := srv.Listener.Addr().String()
	dir, err := os.MkdirTemp("", "known-hosts")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	store, err := pinning.NewStore(pinning.StoreOptions{Path: filepath.Join(dir, "known_hosts")})
	if err != nil {
		log.Fatal(err)
	}
	trust, err := pinning.NewTrust(pinning.TrustOptions{Mode: pinning.ModeTOFU, Store: store, Host: host})
	if err != nil {
		log.Fatal(err)
	}
	conn, err := tls.Dial("tcp", host, trust.Config())
	if err != nil {
		log.Fatal(err)
	}
	// The handshake has completed, so the server has proved it holds the
	// key: record it. (A protocol that can ask the server for its next
	// keys then calls RecordAnnounced.)
	recorded, err := trust.Record(conn.ConnectionState())
	if err != nil {
		log.Fatal(err)
	}
	conn.Close()
	if recorded.FirstUse {
		fmt.Println("first use: recorded the server's key")
	}

	entry, found, err := store.Lookup(host)
	if err != nil {
		log.Fatal(err)
	}
	current, _ := entry.Current()
	fmt.Println("known:", found)
	fmt.Println("the server's key:", current.Pin.Equal(pinning.PinOf(srv.Certificate())))
	fmt.Println("learned:", current.Origin)
	// Output:
	// first use: recorded the server's key
	// known: true
	// the server's key: true
	// learned: first-use
}

func ExampleTrust_RecordAnnounced() {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	host := srv.Listener.Addr().String()
	dir, err := os.MkdirTemp("", "known-hosts")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, _ := pinning.NewStore(pinning.StoreOptions{Path: filepath.Join(dir, "known_hosts")})
	trust, _ := pinning.NewTrust(pinning.TrustOptions{Mode: pinning.ModeTOFU, Store: store, Host: host})

	conn, err := tls.Dial("tcp", host, trust.Config())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	state := conn.ConnectionState()
	// Inside the verified session the server announces its keys (the
	// Space Captain protocol's KEYS reply): today's, and the next one.
	current := pinning.PinOf(state.PeerCertificates[0])
	next, _ := pinning.ParsePin(tomorrowPin)
	recorded, err := trust.RecordAnnounced(state, current, []pinning.Pin{next})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("first use:", recorded.FirstUse, "next keys learned:", len(recorded.Added))

	entry, _, _ := store.Lookup(host)
	for _, r := range entry.Pins {
		fmt.Println("current:", r.Current, "learned:", r.Origin)
	}
	// When the server moves to its next key, this client accepts it.
	fmt.Println("next key trusted:", entry.Set().Contains(next))
	// Output:
	// first use: true next keys learned: 1
	// current: true learned: first-use
	// current: false learned: announced
	// next key trusted: true
}

func ExampleKeyError() {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	host := srv.Listener.Addr().String()
	dir, err := os.MkdirTemp("", "known-hosts")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, _ := pinning.NewStore(pinning.StoreOptions{Path: filepath.Join(dir, "known_hosts")})
	// The store knows the host by another key.
	old, _ := pinning.ParsePin(todayPin)
	if err := store.Add(host, old); err != nil {
		log.Fatal(err)
	}
	trust, _ := pinning.NewTrust(pinning.TrustOptions{Mode: pinning.ModeTOFU, Store: store, Host: host})

	_, err = tls.Dial("tcp", host, trust.Config())
	var ke *pinning.KeyError
	if errors.As(err, &ke) {
		// The error carries what a warning needs: the host, the pins on
		// file, the pin offered, and the known-hosts line.
		fmt.Println("pin on file:", ke.Want[0].Pin)
		fmt.Println("line:", ke.Line)
		fmt.Println("offered the server's key:", ke.Got.Equal(pinning.PinOf(srv.Certificate())))
	}
	// Output:
	// pin on file: sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=
	// line: 5
	// offered the server's key: true
}

func ExampleStore() {
	dir, err := os.MkdirTemp("", "known-hosts")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := pinning.NewStore(pinning.StoreOptions{Path: filepath.Join(dir, "known_hosts")})
	if err != nil {
		log.Fatal(err)
	}

	// sc-cert pin add HOST:PORT PIN
	pin, _ := pinning.ParsePin(todayPin)
	if err := store.Add("[::1]:4242", pin); err != nil {
		log.Fatal(err)
	}
	if err := store.Add("game.example.com:4242", pin); err != nil {
		log.Fatal(err)
	}
	// sc-cert pin forget HOST:PORT
	if _, err := store.Forget("GAME.example.com.:4242"); err != nil {
		log.Fatal(err)
	}
	// sc-cert pin list
	entries, problems, err := store.List()
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range entries {
		fmt.Println(e.Host, e.Set())
	}
	fmt.Println("unreadable lines:", len(problems))
	// Output:
	// [::1]:4242 sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=
	// unreadable lines: 0
}
