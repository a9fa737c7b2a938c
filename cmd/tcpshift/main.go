// Command tcpshift shifts TCP traffic between versions of a service by
// weight, in the kernel: see `tcpshift --help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/tcpshift/tcpshift/loader"
)

func main() {
	// SIGINT and SIGTERM end the commands that run until stopped (proxy, run).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := runContext(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "tcpshift: %v\n", err)
		code := 1
		if ec, ok := errors.AsType[cli.ExitCoder](err); ok && ec.ExitCode() != 0 {
			code = ec.ExitCode() // a command that chose its exit status keeps it
		}
		os.Exit(code)
	}
}

// run is the whole program; tests call it in-process with their own writers.
func run(args []string, stdout, stderr io.Writer) error {
	return runContext(context.Background(), args, stdout, stderr)
}

// runContext is run for commands that stop when ctx is done.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	app := newApp(stdout, stderr)
	if n := len(args); n > 0 && args[n-1] == completionFlag {
		if slices.Contains(args, "--") {
			return nil // urfave would run the command, completion flag and all
		}
		typed := args[:n-1]
		if len(typed) == 3 && (typed[1] == "help" || typed[1] == "h") {
			// `help <TAB>` wants the command names the root offers.
			typed = []string{typed[0], typed[2]}
			args = append(slices.Clone(typed), completionFlag)
		}
		setCompleters(app, typed)
	}
	// urfave's CommandNotFound (for `tcpshift stauts` and `tcpshift help
	// stauts`) cannot fail the run: it leaves the error here.
	var notFound error
	app.CommandNotFound = func(c *cli.Context, name string) { notFound = unknownCommand(c.App, name) }
	if err := app.RunContext(ctx, reorderArgs(app, args)); err != nil {
		return err
	}
	return notFound
}

// setCompleters makes every command complete from the typed words.
func setCompleters(app *cli.App, typed []string) {
	app.BashComplete = completer(typed, true)
	for _, cmd := range app.Commands {
		cmd.BashComplete = completer(typed, false)
	}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:  "tcpshift",
		Usage: "eBPF-accelerated TCP traffic shifting",
		Description: "tcpshift steers each new TCP connection to a service's frontend to one of its\n" +
			"subsets (versions) by weight: in the kernel (sk_lookup, cgroup connect hooks) or,\n" +
			"where those cannot serve, in a userspace proxy using the same tables. Declare\n" +
			"services in a route config, apply it, shift traffic live with set-weight, and\n" +
			"wait-drained tells when the old version holds no connection. State is pinned in\n" +
			"bpffs per network namespace; every command works from that state alone. As a\n" +
			"service, `run` follows the file, checks health and exports metrics.",
		Version:   releaseVersion(version, buildInfo()),
		Writer:    stdout,
		ErrWriter: stderr,
		// Every error returns to main, which prints it on one line; urfave
		// would otherwise exit the process itself for a cli.Exit error.
		ExitErrHandler:       func(*cli.Context, error) {},
		EnableBashCompletion: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "netns", Usage: "network namespace to work in, as a path (e.g. /run/netns/NAME)", DefaultText: "the current one"},
			&cli.StringFlag{Name: "bpffs", Value: loader.DefaultBPFFS, Usage: "bpffs mount point for pinned state (mounted if absent)"},
			&cli.StringFlag{Name: "cgroup", Usage: "cgroup v2 directory the connect-time hooks attach to: its processes' connect() calls are rewritten (sockops, which registers listeners and counts connections, is always on the cgroup v2 root)", DefaultText: "the cgroup v2 root"},
		},
		OnUsageError: usageError,
		Commands: []*cli.Command{
			applyCommand(),
			deleteCommand(),
			getCommand(),
			setWeightCommand(),
			shiftCommand(),
			rebalanceCommand(),
			statusCommand(),
			waitDrainedCommand(),
			proxyCommand(),
			runCommand(),
			agentCommand(),
			downCommand(),
			demoCommand(),
			doctorCommand(),
			versionCommand(),
			completionCommand(),
		},
	}
	for _, cmd := range app.Commands {
		if cmd.OnUsageError == nil {
			cmd.OnUsageError = usageError // one line for every command's bad flags
		}
		if len(cmd.Subcommands) == 0 {
			// urfave gives every command a help subcommand (alias h), which
			// would take `status h` and `set-weight help v1=0` for a request
			// for help: a service may be called h or help. `tcpshift help
			// status` and `status --help` stay.
			cmd.HideHelpCommand = true
		}
	}
	return app
}

// target opens the namespace and bpffs the global flags name.
// A writer that waits for another's lock says so on stderr.
func target(c *cli.Context) (*loader.Target, error) {
	tg, err := loader.Open(c.String("netns"), c.String("bpffs"), c.String("cgroup"))
	if err != nil {
		return nil, err
	}
	tg.Waiting = func(msg string) { fmt.Fprintf(c.App.ErrWriter, "tcpshift: %s\n", msg) }
	tg.Notice = tg.Waiting
	return tg, nil
}
