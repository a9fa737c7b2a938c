// Command tcpshift shifts TCP traffic between versions of a service by
// weight, in the kernel: see `tcpshift --help`.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
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
		os.Exit(1)
	}
}

// run is the whole program; tests call it in-process with their own writers.
func run(args []string, stdout, stderr io.Writer) error {
	return runContext(context.Background(), args, stdout, stderr)
}

// runContext is run for commands that stop when ctx is done.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return newApp(stdout, stderr).RunContext(ctx, args)
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:  "tcpshift",
		Usage: "eBPF-accelerated TCP traffic shifting",
		Description: "tcpshift steers each new TCP connection to a service's frontend to one of its\n" +
			"subsets (versions) by weight: in the kernel (sk_lookup, cgroup connect hooks) or,\n" +
			"where those cannot serve, in a userspace proxy using the same tables. Declare\n" +
			"services in a route config, apply it, shift traffic live with set-weight, and\n" +
			"wait-drained tells when the old version holds no connection. State is pinned in\n" +
			"bpffs per network namespace; every command works from that state alone. As a\n" +
			"service, `run` follows the file, checks health and exports metrics.",
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "netns", Usage: "network namespace to work in, as a path (e.g. /run/netns/NAME)", DefaultText: "the current one"},
			&cli.StringFlag{Name: "bpffs", Value: loader.DefaultBPFFS, Usage: "bpffs mount point for pinned state (mounted if absent)"},
			&cli.StringFlag{Name: "cgroup", Usage: "cgroup v2 directory the connect and sockops hooks attach to: its processes' connect() calls are rewritten and their connections counted", DefaultText: "the cgroup v2 root"},
		},
		OnUsageError: usageError,
		Commands: []*cli.Command{
			applyCommand(),
			setWeightCommand(),
			statusCommand(),
			waitDrainedCommand(),
			proxyCommand(),
			runCommand(),
			downCommand(),
			demoCommand(),
		},
	}
}

// usageError keeps bad flags to one line instead of a page of help.
func usageError(_ *cli.Context, err error, _ bool) error {
	return fmt.Errorf("%w (see --help)", err)
}

// target opens the namespace and bpffs the global flags name.
func target(c *cli.Context) (*loader.Target, error) {
	return loader.Open(c.String("netns"), c.String("bpffs"), c.String("cgroup"))
}
