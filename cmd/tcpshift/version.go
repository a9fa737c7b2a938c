package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"

	"github.com/tcpshift/tcpshift/bpf"
)

// version is set by `make build`: -ldflags "-X main.version=$(git describe ...)".
var version = ""

func init() {
	// --version prints the same line as the version command.
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprintln(c.App.Writer, versionLine()) }
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:      "version",
		Usage:     "print the version, commit, Go version and BPF object this binary was built with",
		ArgsUsage: " ",
		Action: func(c *cli.Context) error {
			fmt.Fprintln(c.App.Writer, versionLine())
			return nil
		},
	}
}

// versionLine is what --version and the version command print, e.g.
// `tcpshift 0.3.0-12-gabc1234 (commit abc1234def…, go1.26.8, bpf object 3f9a1c2e7b10)`.
func versionLine() string {
	info := buildInfo()
	return fmt.Sprintf("tcpshift %s (commit %s, %s, bpf object %s)",
		releaseVersion(version, info), commit(info), runtime.Version(), bpf.ObjectTag())
}

// buildInfo is what Go stamped into the binary, nil if nothing.
func buildInfo() *debug.BuildInfo {
	info, _ := debug.ReadBuildInfo()
	return info
}

// releaseVersion prefers what make stamped; a plain `go build` or `go
// install` leaves the module version (Go stamps one from git), else "dev".
func releaseVersion(stamped string, info *debug.BuildInfo) string {
	if stamped != "" {
		return stamped
	}
	if info != nil && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}

// commit is the git revision Go stamped into the binary, -dirty when the
// tree had changes; test binaries and -buildvcs=false builds have none.
func commit(info *debug.BuildInfo) string {
	if info == nil {
		return "unknown"
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}
