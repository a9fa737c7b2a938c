// Command summary turns `go test -json ./...` on stdin into what a person
// wants from `make test`: the full verbose log in a file, one line per
// package, the whole output of every failed and skipped test, and one count
// line. It exits 1 if anything failed, was skipped or did not build:
// skipped tests fail the run, since a skipped kernel test proves nothing.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	logPath := flag.String("log", "bin/test.log", "file for the full verbose log")
	flag.Parse()
	log, err := os.Create(*logPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "summary: %v\n", err)
		os.Exit(2)
	}
	res, err := summarize(os.Stdin, os.Stdout, log)
	if cerr := log.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "summary: %v\n", err)
		os.Exit(2)
	}
	if !res.ok() {
		os.Exit(1)
	}
}
