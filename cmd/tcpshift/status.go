package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/maps"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show services, weights in force, and connections and bytes per subset and endpoint",
		ArgsUsage: "[-o table|json|yaml] [SERVICE]",
		Description: "-o yaml prints the live state as a route config that tcpshift apply -f takes\n" +
			"back (weights in force, overrides included), with each service's figures under\n" +
			"status: (apply ignores them); -o json prints the figures for programs.\n" +
			"Status reads one consistent state without taking the writers' lock.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "output format: table, json or yaml"},
		},
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
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
			if note := loader.StaleNote(tg.BPFFS); note != "" {
				fmt.Fprintln(c.App.ErrWriter, "tcpshift: "+note)
			}
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
		return exportStatus(w, st)
	}
	if st.Daemon != nil {
		fmt.Fprintf(w, "managed by %s: set-weight is a runtime override\n\n", st.Daemon)
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
		if s.AffinityRepicked > 0 {
			fmt.Fprintf(w, "  repicked %d", s.AffinityRepicked)
		}
		if !s.Failover {
			fmt.Fprint(w, "  failover off")
		}
		if !s.Accounting {
			fmt.Fprint(w, "  accounting off")
		}
		fmt.Fprintf(w, "\n  mode %s: %s\n", s.Mode, s.Reason)
		if s.From != "" {
			fmt.Fprintf(w, "  from %s\n", s.From)
		}
		if sh := s.Shift; sh != nil {
			fmt.Fprintf(w, "  shift to %s: %s at step %d/%d (%d%%)", sh.To, sh.State, sh.Done, len(sh.Steps), sh.Percent)
			if sh.NextAt != "" {
				fmt.Fprintf(w, ", next step at %s", sh.NextAt)
			}
			if sh.State == "interrupted" {
				fmt.Fprintf(w, " (pid %d is gone; the weights stay; tcpshift shift %s --abort rolls back)", sh.Pid, s.Name)
			}
			if sh.Note != "" {
				fmt.Fprintf(w, "\n    %s", sh.Note)
			}
			fmt.Fprintln(w)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  SUBSET\tWEIGHT\tPERCENT\tENDPOINT\tHEALTH\tCONNECTIONS\tACTIVE\tFAILED\tBYTES IN\tBYTES OUT")
		for _, sub := range s.Subsets {
			for j, ep := range sub.Endpoints {
				if j == 0 {
					weight := fmt.Sprint(sub.Weight)
					if sub.Override {
						weight += fmt.Sprintf(" (file %d)", sub.FileWeight)
					}
					fmt.Fprintf(tw, "  %s\t%s\t%.2f%%\t", sub.Name, weight, sub.Percent)
				} else {
					fmt.Fprint(tw, "  \t\t\t")
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", ep.Address, ep.Health, ep.Connections, ep.Active, ep.Failed, humanize.IBytes(ep.BytesIn), humanize.IBytes(ep.BytesOut))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, sub := range s.Subsets {
			for _, ep := range sub.Endpoints {
				if ep.RegisterFailed > 0 {
					fmt.Fprintf(w, "  %s: the socket map refused %d listener(s) on this address (MPTCP? start the backend with GODEBUG=multipathtcp=0, or use mode connect)\n", ep.Address, ep.RegisterFailed)
				}
			}
		}
	}
	if st.LiveBytesUnavailable != "" {
		fmt.Fprintf(w, "\nBYTES count closed connections only: this kernel gives no live bytes of open ones (%s; tcpshift doctor tells more)\n", st.LiveBytesUnavailable)
	}
	return nil
}

// exportStatus writes the live state as a route config, each service's
// figures under its status key.
func exportStatus(w io.Writer, st *loader.Status) error {
	figures := map[string]any{}
	for i := range st.Services {
		figures[st.Services[i].Name] = st.Services[i]
	}
	var own []*maps.Service
	for _, svc := range st.Live {
		if svc.Origin == "" {
			own = append(own, svc)
		} else {
			fmt.Fprintf(w, "# service %s comes from %s: tcpshift get shows those objects\n", svc.Name, svc.Origin)
		}
	}
	if len(own) == 0 {
		return nil
	}
	out, err := config.Marshal(loader.Export(own), func(name string) any { return figures[name] })
	if err != nil {
		return err
	}
	if st.Daemon != nil {
		fmt.Fprintf(w, "# managed by %s\n", st.Daemon)
	}
	_, err = w.Write(out)
	return err
}
