package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tcpshift/tcpshift/loader"
)

func waitDrainedCommand() *cli.Command {
	return &cli.Command{
		Name:      "wait-drained",
		Usage:     "wait until a subset's endpoints hold no active connections",
		ArgsUsage: "[--timeout 5m] SERVICE SUBSET",
		Description: "The last step of a migration: after set-weight gave SUBSET weight 0, wait until\n" +
			"its last connection closed. Exits 0 once drained, 1 on timeout. Connections\n" +
			"count from when tcpshift was applied (sockops sees them being established).",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Minute, Usage: "give up after this long"},
		},
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return errors.New("want SERVICE and SUBSET (e.g. wait-drained tcp-echo v1)")
			}
			service, subset := c.Args().Get(0), c.Args().Get(1)
			timeout := c.Duration("timeout")
			if timeout <= 0 {
				return fmt.Errorf("--timeout %s: must be above 0", timeout)
			}
			tg, err := target(c)
			if err != nil {
				return err
			}
			defer tg.Close()

			return waitDrained(c.App.Writer, tg, service, subset, timeout)
		},
	}
}

// waitDrained polls the subset's active connections until there are none,
// printing each new count.
func waitDrained(w io.Writer, tg *loader.Target, service, subset string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := ^uint64(0)
	for {
		load, err := tg.Load(service, subset)
		if err != nil {
			return err
		}
		if load.Weight > 0 {
			return fmt.Errorf("subset %s of %s has weight %d: it gets new connections (run set-weight %s %s=0 first)", subset, service, load.Weight, service, subset)
		}
		if load.Active == 0 {
			fmt.Fprintf(w, "%s %s: drained\n", service, subset)
			return nil
		}
		if load.Active != last {
			fmt.Fprintf(w, "%s %s: %d active connections\n", service, subset, load.Active)
			last = load.Active
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timeout after %s: subset %s of %s still holds %d active connections", timeout, subset, service, load.Active)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
