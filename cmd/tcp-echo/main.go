// Command tcp-echo is tcpshift's sample backend, like Istio's tcp-echo: it
// listens on each address given and answers every line with "PREFIX line".
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/tcpshift/tcpshift/internal/echo"
	"github.com/tcpshift/tcpshift/loader/listener"
)

func main() {
	if err := run(os.Args, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "tcp-echo: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	app := &cli.App{
		Name:      "tcp-echo",
		Usage:     "answer every line with PREFIX line (tcpshift's sample backend)",
		ArgsUsage: "PREFIX",
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "listen", Aliases: []string{"l"}, Value: cli.NewStringSlice("127.0.0.1:9000"), Usage: "address to listen on (repeat for more)"},
		},
		HideHelpCommand: true,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return err
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return errors.New("want exactly one argument, the reply PREFIX (e.g. tcp-echo -l 127.0.0.1:9001 one)")
			}
			prefix := c.Args().First()
			errs := make(chan error)
			for _, addr := range c.StringSlice("listen") {
				// Never MPTCP: the kernel refuses MPTCP listeners in a SOCKMAP.
				ln, err := listener.Listen("tcp", addr)
				if err != nil {
					return fmt.Errorf("listen: %w", err)
				}
				fmt.Fprintf(stdout, "tcp-echo %s listening on %s\n", prefix, ln.Addr())
				go func() { errs <- echo.Serve(ln, prefix) }()
			}
			return <-errs
		},
	}
	return app.Run(args)
}
