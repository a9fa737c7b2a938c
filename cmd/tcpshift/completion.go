package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"
)

// The scripts hand the words typed so far, the one being completed
// included (even when empty), to `tcpshift ... --generate-bash-completion`,
// which prints one candidate per line (see completer).
const bashCompletion = `# bash completion for tcpshift: source <(tcpshift completion bash)
_tcpshift_complete() {
	local IFS=$'\n'
	COMPREPLY=($(compgen -W "$("${COMP_WORDS[@]:0:COMP_CWORD+1}" ` + completionFlag + ` 2>/dev/null)" -- "${COMP_WORDS[COMP_CWORD]}"))
}
# Nothing to offer (a file, a service name): bash completes file names.
complete -o bashdefault -o default -F _tcpshift_complete tcpshift
`

const zshCompletion = `#compdef tcpshift
# zsh completion for tcpshift: source <(tcpshift completion zsh), after compinit
_tcpshift() {
	local -a candidates
	candidates=(${(f)"$("${(@)words[1,CURRENT]}" ` + completionFlag + ` 2>/dev/null)"})
	if (( ${#candidates} )); then
		compadd -a candidates
	else
		_files
	fi
}
compdef _tcpshift tcpshift
`

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script for bash or zsh",
		ArgsUsage: "bash|zsh",
		Description: "Load it in the current shell:\n" +
			"  bash: source <(tcpshift completion bash)\n" +
			"  zsh:  source <(tcpshift completion zsh)   (after compinit)\n" +
			"For every new shell, add that line to ~/.bashrc or ~/.zshrc, or save the\n" +
			"script: tcpshift completion bash > /etc/bash_completion.d/tcpshift",
		Action: func(c *cli.Context) error {
			scripts := map[string]string{"bash": bashCompletion, "zsh": zshCompletion}
			script, ok := scripts[c.Args().First()]
			if c.NArg() != 1 || !ok {
				return errors.New("want a shell: completion bash or completion zsh")
			}
			_, err := io.WriteString(c.App.Writer, script)
			return err
		},
	}
}

// completer answers --generate-bash-completion for one command: its flags
// when the word being completed starts with -, else its subcommands. args
// is the command line as typed (urfave's own completer reads os.Args, which
// in-process runs do not have, and cannot tell a flag being typed from one
// waiting for its value).
func completer(args []string, root bool) cli.BashCompleteFunc {
	return func(c *cli.Context) {
		word := ""
		if n := len(args); n > 1 {
			word = args[n-1]
		}
		var names []string
		if strings.HasPrefix(word, "-") {
			flags := c.Command.VisibleFlags()
			if !root {
				flags = append(flags, c.App.VisibleFlags()...) // reorderArgs accepts them anywhere
			}
			for _, f := range flags {
				for _, name := range f.Names() {
					names = append(names, dashed(name))
				}
			}
		} else {
			for _, sub := range c.Command.VisibleCommands() {
				// urfave gives every command a help subcommand; only the
				// top-level one is worth offering.
				if root || sub.Name != "help" {
					names = append(names, sub.Name)
				}
			}
		}
		seen := map[string]bool{} // --help is both the command's and global
		for _, name := range names {
			if strings.HasPrefix(name, word) && !seen[name] {
				seen[name] = true
				fmt.Fprintln(c.App.Writer, name)
			}
		}
	}
}
