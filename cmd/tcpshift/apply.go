package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/tcpshift/tcpshift/config"
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
			for _, ch := range changes {
				fmt.Fprintf(c.App.Writer, "service %s %s\n", ch.Service, ch.Action)
			}
			return err
		},
	}
}
