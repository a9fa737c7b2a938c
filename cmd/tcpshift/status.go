package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"github.com/tcpshift/tcpshift/loader"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show services, weights in force, and connections and bytes per subset and endpoint",
		ArgsUsage: "[-o table|json|yaml] [SERVICE]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "output format: table, json or yaml"},
		},
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				if strings.HasPrefix(c.Args().Get(1), "-") {
					return errors.New("flags go before SERVICE: status -o json SERVICE")
				}
				return errors.New("status takes at most one SERVICE")
			}
			format := c.String("output")
			if format != "table" && format != "json" && format != "yaml" {
				return fmt.Errorf("--output %q: want table, json or yaml", format)
			}
			tg, err := target(c)
			if err != nil {
				return err
			}
			defer tg.Close()
			st, err := tg.Status(c.Args().First())
			if err != nil {
				return err
			}
			return printStatus(c.App.Writer, st, format)
		},
	}
}

func printStatus(w io.Writer, st *loader.Status, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	case "yaml":
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		return enc.Encode(st)
	}
	if len(st.Services) == 0 {
		_, err := fmt.Fprintln(w, "no services")
		return err
	}
	for i, s := range st.Services {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "service %s  listen %s  mode %s  policy %s  refused %d", s.Name, s.Listen, s.Mode, s.Policy, s.Refused)
		if s.NoSocket > 0 {
			fmt.Fprintf(w, "  no-socket %d", s.NoSocket)
		}
		if s.Affinity != "" {
			fmt.Fprintf(w, "  affinity %s", s.Affinity)
		}
		if !s.Failover {
			fmt.Fprint(w, "  failover off")
		}
		fmt.Fprintf(w, "\n  mode %s: %s\n", s.Mode, s.Reason)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  SUBSET\tWEIGHT\tPERCENT\tENDPOINT\tHEALTH\tCONNECTIONS\tACTIVE\tFAILED\tBYTES IN\tBYTES OUT")
		for _, sub := range s.Subsets {
			for j, ep := range sub.Endpoints {
				if j == 0 {
					fmt.Fprintf(tw, "  %s\t%d\t%.2f%%\t", sub.Name, sub.Weight, sub.Percent)
				} else {
					fmt.Fprint(tw, "  \t\t\t")
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", ep.Address, ep.Health, ep.Connections, ep.Active, ep.Failed, humanize.IBytes(ep.BytesIn), humanize.IBytes(ep.BytesOut))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}
