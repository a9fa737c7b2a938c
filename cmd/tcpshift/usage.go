package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// usageError keeps a bad flag to one line instead of a page of help, with
// the nearest flag when the flag is unknown. main prints it as
// `tcpshift: ...` and exits 1.
func usageError(c *cli.Context, err error, _ bool) error {
	msg := err.Error()
	// Go's flag package names an unknown flag this way, whatever dashes were typed.
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		msg = unknownFlag(c, name)
	}
	return fmt.Errorf("%s; see %s --help", msg, c.Command.HelpName)
}

// unknownFlag words the error for a flag c's command does not declare.
func unknownFlag(c *cli.Context, name string) string {
	global := c.App.VisibleFlags()
	if _, ok := flagArity(global)[name]; ok {
		// reorderArgs leaves a global flag with no value after the command.
		return fmt.Sprintf("flag %s needs a value", dashed(name))
	}
	// Global flags are accepted after the command name too (reorderArgs).
	known := c.Command.VisibleFlags()
	if c.Command.HelpName != c.App.HelpName {
		known = append(known, global...)
	}
	var names []string
	for _, f := range known {
		names = append(names, f.Names()...)
	}
	msg := fmt.Sprintf("unknown flag %s", dashed(name))
	if s := suggest(name, names); s != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", dashed(s))
	}
	return msg
}

// dashed writes a flag name as it is typed: -o, --output.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// unknownCommand is the error for a command name tcpshift does not have,
// with the nearest one.
func unknownCommand(app *cli.App, name string) error {
	var names []string
	for _, cmd := range app.VisibleCommands() {
		names = append(names, cmd.Names()...)
	}
	msg := fmt.Sprintf("unknown command %q", name)
	if s := suggest(name, names); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return fmt.Errorf("%s; see %s --help", msg, app.HelpName)
}

// suggest is the name typed was most likely meant to be, or "" when none
// is close. urfave's SuggestCommand and SuggestFlag always name something
// (foo → down, --bogus → -o), which misleads more than it helps: a name is
// close when typed starts it or is at most len(name)/2 edits away.
func suggest(typed string, names []string) string {
	if typed == "" {
		return ""
	}
	best, bestDist := "", 0
	for _, name := range names {
		d := editDistance(typed, name)
		if strings.HasPrefix(name, typed) {
			d = 0
		}
		if d <= len(name)/2 && (best == "" || d < bestDist) {
			best, bestDist = name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			sub := prev[j-1]
			if a[i-1] != b[j-1] {
				sub++
			}
			cur[j] = min(sub, prev[j]+1, cur[j-1]+1)
		}
		prev = cur
	}
	return prev[len(b)]
}
