// Command tcp-echo is tcpshift's sample backend, like Istio's tcp-echo: it
// listens on each address given and answers every line with "PREFIX line".
//
// It takes either its own form, tcp-echo [-l ADDR]... PREFIX, or the
// arguments of Istio's tcp-echo server, tcp-echo PORTS PREFIX (e.g.
// tcp-echo 9000,9001,9002 one), which listens on each port on all addresses.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/tcpshift/tcpshift/internal/echo"
	"github.com/tcpshift/tcpshift/loader/listener"
)

func main() {
	if err := run(context.Background(), os.Args, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "tcp-echo: %v\n", err)
		os.Exit(1)
	}
}

const description = `Answers every line with PREFIX, a space and the line, like Istio's tcp-echo
server: the line is echoed as it came, with its newline (and a CR before it,
if any), whatever its length; bytes after the last newline when the client
closes get no answer.

Two forms:
  tcp-echo [-l ADDR]... PREFIX  listen on each ADDR (default 127.0.0.1:9000)
  tcp-echo PORTS PREFIX         Istio's arguments: listen on each of the
                                comma-separated PORTS on all addresses, IPv4
                                and IPv6 (as ":PORT"), as Istio's sample
                                Deployment runs it

Examples:
  tcp-echo -l 127.0.0.1:9001 -l 127.0.0.2:9001 one
  tcp-echo 9000,9001,9002 one

Listeners are never MPTCP (the kernel refuses MPTCP sockets in a SOCKMAP).`

// run runs tcp-echo with args (args[0] is the program name) until an error,
// or until ctx is done; then it closes its listeners, waits for the open
// connections to end, and returns nil.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	app := &cli.App{
		Name:        "tcp-echo",
		Usage:       "answer every line with PREFIX line (tcpshift's sample backend)",
		UsageText:   "tcp-echo [-l ADDR]... PREFIX\ntcp-echo PORTS PREFIX    (Istio's tcp-echo arguments, e.g. tcp-echo 9000,9001,9002 one)",
		Description: description,
		Writer:      stdout,
		ErrWriter:   stderr,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "listen", Aliases: []string{"l"}, Value: cli.NewStringSlice("127.0.0.1:9000"), Usage: "address to listen on (repeat for more); not with PORTS"},
		},
		HideHelpCommand: true,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return err
		},
		Action: func(c *cli.Context) error {
			addrs, prefix, err := parseArgs(c)
			if err != nil {
				return err
			}
			return serveFunc(ctx, addrs, prefix, stdout)
		},
	}
	return app.RunContext(ctx, args)
}

// serveFunc is serve; tests replace it to see what the arguments asked for.
var serveFunc = serve

var errBothForms = errors.New("give either -l ADDR or Istio's PORTS PREFIX, not both")

// parseArgs returns the addresses to listen on and the reply prefix, from
// either form: [-l ADDR]... PREFIX, or Istio's PORTS PREFIX.
func parseArgs(c *cli.Context) (addrs []string, prefix string, err error) {
	args := c.Args().Slice()
	// urfave/cli stops parsing flags at the first argument, so a -l after
	// the arguments arrives here as an argument.
	for i, a := range args {
		if i > 0 && isListenFlag(a) {
			if i >= 2 {
				return nil, "", errBothForms
			}
			return nil, "", fmt.Errorf("flag %s after PREFIX %q: flags go first (tcp-echo -l ADDR PREFIX)", a, args[0])
		}
	}
	switch len(args) {
	case 1:
		return c.StringSlice("listen"), args[0], nil
	case 2:
		if c.IsSet("listen") {
			return nil, "", errBothForms
		}
		addrs, err := parsePorts(args[0])
		if err != nil {
			return nil, "", err
		}
		return addrs, args[1], nil
	case 0:
		return nil, "", errors.New("want the reply PREFIX (e.g. tcp-echo -l 127.0.0.1:9001 one) or Istio's PORTS PREFIX (e.g. tcp-echo 9000,9001 one)")
	default:
		return nil, "", fmt.Errorf("%d arguments, want PREFIX (e.g. tcp-echo -l 127.0.0.1:9001 one) or Istio's PORTS PREFIX (e.g. tcp-echo 9000,9001 one)", len(args))
	}
}

// isListenFlag reports whether a is a -l / --listen flag.
func isListenFlag(a string) bool {
	name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
	return strings.HasPrefix(a, "-") && (name == "l" || name == "listen")
}

// parsePorts turns Istio's comma-separated PORTS into listen addresses on
// all addresses (":PORT", dual-stack like Istio's net.Listen("tcp", ":"+port)).
func parsePorts(ports string) ([]string, error) {
	var addrs []string
	seen := make(map[uint64]bool)
	for _, p := range strings.Split(ports, ",") {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("port %q in %q: not a number 1-65535", p, ports)
		}
		if seen[n] {
			return nil, fmt.Errorf("port %q in %q: given twice", p, ports)
		}
		seen[n] = true
		addrs = append(addrs, ":"+strconv.FormatUint(n, 10))
	}
	return addrs, nil
}

// listen listens on every address, never with MPTCP (the kernel refuses
// MPTCP listeners in a SOCKMAP). On error it closes those it opened.
func listen(addrs []string) ([]net.Listener, error) {
	var lns []net.Listener
	for _, addr := range addrs {
		ln, err := listener.Listen("tcp", addr)
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			return nil, fmt.Errorf("listen: %w", err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// serve answers on every address until a listener fails or ctx is done.
func serve(ctx context.Context, addrs []string, prefix string, stdout io.Writer) error {
	lns, err := listen(addrs)
	if err != nil {
		return err
	}
	errs := make(chan error, len(lns))
	for _, ln := range lns {
		fmt.Fprintf(stdout, "tcp-echo %s listening on %s\n", prefix, ln.Addr())
		go func() { errs <- echo.Serve(ln, prefix) }()
	}
	var first error
	select {
	case first = <-errs:
	case <-ctx.Done():
	}
	for _, ln := range lns {
		ln.Close()
	}
	if first != nil {
		return first
	}
	for range lns {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}
