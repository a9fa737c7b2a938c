package main

import (
	"bytes"
	"maps"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// A service may be called h or help, urfave's names for a command's help
// subcommand: every command that takes a service gets the name as its
// argument, and prints no help. The help stays at `help CMD` and
// `CMD --help`.
func TestServiceNamedLikeHelp(t *testing.T) {
	for _, name := range []string{"h", "help"} {
		for _, args := range [][]string{
			{"status", name},
			{"status", name, "-o", "json"},
			{"set-weight", name, "v1=0", "v2=100"},
			{"shift", name, "--to", "v2"},
			{"shift", name, "--abort"},
			{"rebalance", name, "--subset", "v1"},
			{"wait-drained", name, "v1"},
		} {
			var out, errb bytes.Buffer
			app := newApp(&out, &errb)
			var got []string
			app.Command(args[0]).Action = func(c *cli.Context) error {
				got = c.Args().Slice()
				return nil
			}
			if err := app.Run(reorderArgs(app, append([]string{"tcpshift"}, args...))); err != nil {
				t.Fatalf("%q: %v", args, err)
			}
			if len(got) == 0 || got[0] != name || strings.Contains(out.String(), "USAGE") {
				t.Fatalf("%q: the command got %q and printed:\n%s", args, got, out.String())
			}
		}
	}
	for _, args := range [][]string{{"help", "status"}, {"status", "--help"}, {"status", "-h"}, {"h", "set-weight"}} {
		out, _, err := runCLI(args...)
		if err != nil || !strings.Contains(out, "USAGE") {
			t.Fatalf("%q: %v\n%s", args, err, out)
		}
	}
	// The command's help lists no help subcommand any more.
	if out, _, _ := runCLI("status", "--help"); strings.Contains(out, "COMMANDS") {
		t.Fatalf("status --help lists commands:\n%s", out)
	}
}

// Services called h and help are shown, weighted and waited for by name:
// urfave's help subcommand does not take the name.
func TestServicesNamedHAndHelp(t *testing.T) {
	c := newCLI(t)
	one := strings.Replace(routes, "name: tcp-echo", "name: h", 1)
	two := strings.NewReplacer("services:\n", "", "name: tcp-echo", "name: help", "127.0.0.100", "127.0.0.101").Replace(routes)
	if out := c.must("apply", "-f", writeFile(t, one+two)); out != "service h added\nservice help added\n" {
		t.Fatalf("apply printed %q", out)
	}
	for _, name := range []string{"h", "help"} {
		if st := c.must("status", name); !strings.HasPrefix(st, "service "+name+" ") || strings.Contains(st, "USAGE") {
			t.Fatalf("status %s printed:\n%s", name, st)
		}
		if out := c.must("set-weight", name, "v1=0", "v2=100"); out != "service "+name+" weights v1=0 v2=100\n" {
			t.Fatalf("set-weight %s printed %q", name, out)
		}
		c.must("wait-drained", name, "v1")
	}
	if got := c.env.Count("127.0.0.101:9000", 10); !maps.Equal(got, map[string]int{"two": 10}) {
		t.Fatalf("help after set-weight: %v", got)
	}
}
