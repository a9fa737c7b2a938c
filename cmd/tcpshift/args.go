package main

import (
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// completionFlag is what the shell scripts append to ask for candidates;
// urfave only recognises it as the very last argument.
const completionFlag = "--generate-bash-completion"

// reorderArgs moves flags to where urfave v2 parses them. urfave stops at a
// command's first positional argument and reads global flags only before the
// command name, but people type `status tcp-echo -o json` and
// `set-weight tcp-echo v1=0 --netns /run/netns/a`. Flags come from the
// declarations on app and its commands, so new flags need nothing here:
//
//   - a global flag after the command name moves before it;
//   - a command's own flag (and an unknown -x, for urfave to reject) moves
//     before the command's positional arguments;
//   - a flag that takes a value takes the next argument along, unless it
//     was given as --flag=value; bool flags take none;
//   - nothing after -- moves, and a lone - is positional (stdin).
func reorderArgs(app *cli.App, args []string) []string {
	if n := len(args); n > 0 && args[n-1] == completionFlag {
		return append(reorderArgs(app, args[:n-1]), completionFlag)
	}
	if len(args) < 2 {
		return args
	}
	global := flagArity(app.Flags, cli.HelpFlag, cli.VersionFlag)

	// Global flags before the command name are already in place.
	i := 1
	for i < len(args) && isFlag(args[i]) {
		i += span(global, args, i)
	}
	if i >= len(args) || args[i] == "--" {
		return args
	}
	cmd := app.Command(args[i])
	if cmd == nil || len(cmd.Subcommands) > 0 {
		return args // unknown commands are urfave's to report; nested ones parse their own way
	}
	own := flagArity(cmd.Flags, cli.HelpFlag)

	var moved, flags, positional, rest []string
	for j := i + 1; j < len(args); {
		arg := args[j]
		switch {
		case arg == "--":
			rest = args[j:]
			j = len(args)
		case !isFlag(arg):
			positional = append(positional, arg)
			j++
		default:
			_, isOwn := own[flagName(arg)]
			_, isGlobal := global[flagName(arg)]
			n := span(own, args, j)
			if isGlobal && !isOwn {
				n = span(global, args, j)
				if n == 1 && takesValue(global, arg) {
					// No value left: moving it would make the command
					// name its value. Leave it for urfave to reject.
					flags = append(flags, arg)
					j++
					continue
				}
				moved = append(moved, args[j:j+n]...)
			} else {
				flags = append(flags, args[j:j+n]...)
			}
			j += n
		}
	}

	out := slices.Concat(args[:i], moved, []string{args[i]}, flags)
	if len(rest) > 0 {
		// -- goes right after the flags so positional arguments before it
		// stay positional too.
		return slices.Concat(out, rest[:1], positional, rest[1:])
	}
	return slices.Concat(out, positional)
}

// flagArity maps every name and alias of flags to whether it takes a value.
func flagArity(flags []cli.Flag, extra ...cli.Flag) map[string]bool {
	m := map[string]bool{}
	for _, f := range append(slices.Clone(flags), extra...) {
		if f == nil {
			continue
		}
		// urfave's value flags say TakesValue() true and BoolFlag false;
		// a flag type without the method is assumed to take one.
		value := true
		if tv, ok := f.(interface{ TakesValue() bool }); ok {
			value = tv.TakesValue()
		}
		for _, name := range f.Names() {
			m[name] = value
		}
	}
	return m
}

// isFlag says whether arg looks like a flag; - and -- do not.
func isFlag(arg string) bool {
	return len(arg) > 1 && arg[0] == '-' && arg != "--"
}

// flagName is arg without its dashes and =value.
func flagName(arg string) string {
	name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	return name
}

// takesValue says whether arg names a flag in known that wants a separate value.
func takesValue(known map[string]bool, arg string) bool {
	return known[flagName(arg)] && !strings.Contains(arg, "=")
}

// span is how many arguments the flag at args[i] uses: 2 when its value
// follows, else 1 (bool, --flag=value, unknown, or no argument left).
func span(known map[string]bool, args []string, i int) int {
	if takesValue(known, args[i]) && i+1 < len(args) {
		return 2
	}
	return 1
}
