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
		Description: "Validates the whole file first; on any error nothing in the kernel changes.\n" +
			"Services in the file are added or updated, services not in it are removed.\n" +
			"Applying the same file again changes nothing.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Required: true, Usage: "route config `FILE` (YAML)"},
		},
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return errors.New("apply takes no arguments (the config goes in -f FILE)")
			}
			cfg, err := config.Load(c.String("file"))
			if err != nil {
				return err
			}
			tg, err := target(c)
			if err != nil {
				return err
			}
			defer tg.Close()
			changes, err := tg.Apply(cfg)
			printChanges(c.App.Writer, changes)
			return err
		},
	}
}

// printChanges says what apply did, a line per service.
func printChanges(w io.Writer, changes []loader.Change) {
	for _, ch := range changes {
		fmt.Fprintf(w, "service %s %s", ch.Service, ch.Action)
		if ch.Mode == maps.ModeProxy {
			fmt.Fprint(w, " (mode proxy: tcpshift run -f FILE or tcpshift proxy -f FILE serves it)")
		}
		fmt.Fprintln(w)
	}
}
