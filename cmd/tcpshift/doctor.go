package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/tcpshift/tcpshift/features"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:      "doctor",
		Usage:     "probe every kernel facility tcpshift uses and tell what each enables or degrades",
		ArgsUsage: "[-o table|json]",
		Description: "doctor loads each of tcpshift's BPF programs with throwaway maps (nothing is\n" +
			"attached or pinned) and tries the socket-diagnostics calls it can fall back on.\n" +
			"It exits 0 when lookup, connect and proxy mode can all run on this host, 1\n" +
			"otherwise, naming what is missing. An optional facility the kernel refuses\n" +
			"only changes the path a command takes (AVAILABLE no, WITHOUT IT says which).\n" +
			features.DisableEnv + "=NAME,... turns facilities off as if the kernel refused them.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "output format: table or json"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("doctor takes no arguments, got %q", c.Args().First())
			}
			format := c.String("output")
			if format != "table" && format != "json" {
				return fmt.Errorf("--output %q: want table or json", format)
			}
			report := features.Probe()
			if err := printDoctor(c.App.Writer, report, format); err != nil {
				return err
			}
			if missing := report.Missing(); len(missing) > 0 {
				return cli.Exit(fmt.Sprintf("lookup, connect and proxy mode cannot run on this host: it lacks %s", joinNames(missing)), 1)
			}
			return nil
		},
	}
}

// doctorRow is one facility in doctor -o json.
type doctorRow struct {
	Name      features.Name `json:"name"`
	What      string        `json:"what"`
	Available bool          `json:"available"`
	Error     string        `json:"error,omitempty"`
	Core      bool          `json:"core"`
	Enables   string        `json:"enables"`
	Without   string        `json:"without"`
}

func printDoctor(w io.Writer, report features.Report, format string) error {
	if format == "json" {
		rows := make([]doctorRow, 0, len(report))
		for _, r := range report {
			row := doctorRow{Name: r.Name, What: r.What, Available: r.Available(), Core: r.Core, Enables: r.Enables, Without: r.Without}
			if r.Err != nil {
				row.Error = r.Err.Error()
			}
			rows = append(rows, row)
		}
		out := struct {
			Facilities []doctorRow     `json:"facilities"`
			Modes      map[string]bool `json:"modes"`
			Missing    []features.Name `json:"missing"`
		}{rows, modes(report), report.Missing()}
		if out.Missing == nil {
			out.Missing = []features.Name{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FACILITY\tAVAILABLE\tNEEDED\tUSED FOR\tWITHOUT IT")
	for _, r := range report {
		avail, needed := "yes", "optional"
		if !r.Available() {
			avail = "no"
		}
		if r.Core {
			needed = "core"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, avail, needed, r.Enables, r.Without)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var refused []features.Result
	for _, r := range report {
		if !r.Available() {
			refused = append(refused, r)
		}
	}
	if len(refused) > 0 {
		fmt.Fprintln(w, "\nwhy not:")
		for _, r := range refused {
			fmt.Fprintf(w, "  %v\n", r.Err)
		}
	}
	fmt.Fprintln(w)
	for _, m := range []string{"lookup", "connect", "proxy"} {
		if modes(report)[m] {
			fmt.Fprintf(w, "%s mode: can run\n", m)
		} else {
			fmt.Fprintf(w, "%s mode: cannot run (missing %s)\n", m, joinNames(report.Missing()))
		}
	}
	return nil
}

// modes says which modes can run: every mode needs the core facilities,
// for apply loads and attaches every hook whatever the services' modes.
func modes(report features.Report) map[string]bool {
	ok := len(report.Missing()) == 0
	return map[string]bool{"lookup": ok, "connect": ok, "proxy": ok}
}

func joinNames(names []features.Name) string {
	s := make([]string, len(names))
	for i, n := range names {
		s[i] = string(n)
	}
	return strings.Join(s, ", ")
}
