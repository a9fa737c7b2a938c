package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/maps"
)

func applyCommand() *cli.Command {
	return &cli.Command{
		Name:      "apply",
		Usage:     "make the kernel match a route config (load and attach if needed)",
		ArgsUsage: " ",
		Description: "Validates the whole file and checks it against this host first; on any error\n" +
			"nothing in the kernel changes, and a kernel error midway rolls everything back.\n" +
			"Services in the file are added or updated, services not in it are removed (a\n" +
			"file with no services is refused: tcpshift down removes everything). Applying\n" +
			"the same file again changes nothing. One writer at a time: apply waits for\n" +
			"another writer's lock (and says so after a second). While tcpshift run manages\n" +
			"the namespace, apply is refused: edit the daemon's file, or pass --force.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "route config `FILE` (YAML), - for stdin"},
			&cli.BoolFlag{Name: "dry-run", Usage: "check the file against this host and print what would change, change nothing"},
			&cli.BoolFlag{Name: "force", Usage: "apply even while tcpshift run manages the namespace (it logs the change)"},
		},
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if err := needFile(c); err != nil {
				return err
			}
			if c.NArg() > 0 {
				return errors.New("apply takes no arguments (the config goes in -f FILE)")
			}
			cfg, err := loadConfig(c, c.String("file"))
			if err != nil {
				return err
			}
			tg, err := target(c)
			if err != nil {
				return err
			}
			defer tg.Close()
			if note := loader.StaleNote(tg.BPFFS); note != "" {
				fmt.Fprintln(c.App.ErrWriter, "tcpshift: "+note)
			}
			opts := loader.ApplyOptions{DryRun: c.Bool("dry-run"), Force: c.Bool("force")}
			changes, err := tg.ApplyWith(cfg, opts)
			if err != nil {
				return err
			}
			printChanges(c.App.Writer, changes, opts.DryRun)
			return nil
		},
	}
}

// loadConfig reads a route config from a file, or stdin for "-".
func loadConfig(c *cli.Context, path string) (*config.Config, error) {
	if path == "-" {
		return config.LoadReader("<stdin>", c.App.Reader)
	}
	return config.Load(path)
}

// printChanges says what apply did (or would do), a line per service.
func printChanges(w io.Writer, changes []loader.Change, dry bool) {
	for _, ch := range changes {
		fmt.Fprintf(w, "service %s %s", ch.Service, ch.Action)
		if dry {
			fmt.Fprint(w, " (dry run)")
		}
		if ch.Mode == maps.ModeProxy {
			fmt.Fprint(w, " (mode proxy: tcpshift run -f FILE or tcpshift proxy -f FILE serves it)")
		}
		if ch.KeptOverride {
			fmt.Fprint(w, " (set-weight override kept)")
		}
		fmt.Fprintln(w)
		for _, wt := range ch.Waiting {
			fmt.Fprintf(w, "  endpoint %s not listening yet: it gets connections once it listens\n", wt.Endpoint)
		}
	}
}
