//go:build k8s

// Package repo finds the checkout's files the Kubernetes tests use: the CRDs
// in deploy/crds and the built commands in bin/.
package repo

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const module = "github.com/tcpshift/tcpshift"

// Root is the checkout's top folder: the nearest folder above the working
// directory (go test runs a package's tests in its folder) whose go.mod is
// tcpshift's.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isRoot(dir) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above the working directory", module)
		}
		dir = parent
	}
}

func isRoot(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if name, ok := strings.CutPrefix(strings.TrimSpace(s.Text()), "module "); ok {
			return strings.TrimSpace(name) == module
		}
	}
	return false
}

// Bin is the path of a built command (tcpshift, tcp-echo): in $TCPSHIFT_BIN
// when set, else in the checkout's bin/ (make build). It fails when the file
// is missing: the tests never build behind the caller's back.
func Bin(name string) (string, error) {
	dir := os.Getenv("TCPSHIFT_BIN")
	if dir == "" {
		root, err := Root()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "bin")
	}
	path, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%s is missing (run make build, or set TCPSHIFT_BIN): %w", name, err)
	}
	return path, nil
}
