package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/tcpshift/tcpshift/loader"
)

func downCommand() *cli.Command {
	return &cli.Command{
		Name:      "down",
		Usage:     "remove everything tcpshift made in the network namespace",
		ArgsUsage: " ",
		Description: "Detaches the programs and removes maps, pins and the local routes tcpshift added.\n" +
			"Running it when nothing is loaded is fine. State that a deleted network\n" +
			"namespace left behind is removed too: in a namespace that reuses its inode by\n" +
			"plain down, anywhere under --bpffs by down --stale. While tcpshift run manages\n" +
			"the namespace, down is refused (stop the service first, or pass --force).",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "stale", Usage: "remove only the state of network namespaces that no longer exist, in every namespace's directory under --bpffs"},
			&cli.BoolFlag{Name: "force", Usage: "remove the state even while tcpshift run manages the namespace (the daemon then stops)"},
		},
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return errors.New("down takes no arguments")
			}
			if c.Bool("stale") {
				return downStale(c)
			}
			tg, err := target(c)
			if err != nil {
				return err
			}
			defer tg.Close()
			removed, err := tg.DownWith(loader.DownOptions{Force: c.Bool("force")})
			if err != nil {
				return err
			}
			if removed {
				fmt.Fprintln(c.App.Writer, "tcpshift removed")
			} else {
				fmt.Fprintln(c.App.Writer, "tcpshift was not loaded")
			}
			if note := loader.StaleNote(tg.BPFFS); note != "" {
				fmt.Fprintln(c.App.ErrWriter, "tcpshift: "+note)
			}
			return nil
		},
	}
}

// downStale removes what deleted namespaces left behind.
func downStale(c *cli.Context) error {
	stale, err := loader.StaleStates(c.String("bpffs"))
	if err != nil {
		return err
	}
	if len(stale) == 0 {
		fmt.Fprintln(c.App.Writer, "no stale state")
		return nil
	}
	for _, s := range stale {
		if err := loader.RemoveStale(c.String("bpffs"), s); err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "removed %s (%s)\n", s.Dir, s.Reason)
	}
	return nil
}
