package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"
)

func downCommand() *cli.Command {
	return &cli.Command{
		Name:         "down",
		Usage:        "remove everything tcpshift made in the network namespace",
		ArgsUsage:    " ",
		Description:  "Detaches the programs and removes maps, pins and the local routes tcpshift added.\nRunning it when nothing is loaded is fine.",
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return errors.New("down takes no arguments")
			}
			tg, err := target(c)
			if err != nil {
				return err
			}
			defer tg.Close()
			removed, err := tg.Down()
			if err != nil {
				return err
			}
			if removed {
				fmt.Fprintln(c.App.Writer, "tcpshift removed")
			} else {
				fmt.Fprintln(c.App.Writer, "tcpshift was not loaded")
			}
			return nil
		},
	}
}
