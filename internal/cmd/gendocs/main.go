package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	out := flag.String("out", "docs", "`DIR` to write man/ and completions/ into")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "gendocs: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	// The commands read the environment for some defaults (sc-client's
	// known-hosts file lives in the user's configuration directory):
	// without it they describe the default in words, the same for
	// everyone who generates.
	for _, v := range neutralEnv() {
		if err := os.Unsetenv(v); err != nil {
			fmt.Fprintf(os.Stderr, "gendocs: %v\n", err)
			os.Exit(1)
		}
	}
	if err := generate(*out); err != nil {
		fmt.Fprintf(os.Stderr, "gendocs: %v\n", err)
		os.Exit(1)
	}
}
