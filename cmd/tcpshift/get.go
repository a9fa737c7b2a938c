package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"github.com/tcpshift/tcpshift/config/istio"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/maps"
)

func getCommand() *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "print applied Istio or Gateway API objects, with what tcpshift made of them",
		ArgsUsage: "KIND [NAME] [-o table|yaml|json]",
		Description: "KIND as kubectl names it: virtualservice (vs), destinationrule (dr), gateway\n" +
			"(gw), serviceentry (se), workloadentry (we), tcproute, and the Gateway API's\n" +
			"gateway.gateway.networking.k8s.io. -o yaml prints each object as applied with a\n" +
			"status: block: the services tcpshift derived from it, their frontend, mode and\n" +
			"the percent of new connections in force per subset.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "output format: table, yaml or json"},
			&cli.StringFlag{Name: "namespace", Aliases: []string{"n"}, Value: istio.DefaultNamespace, Usage: "the objects' namespace"},
		},
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 || c.NArg() > 2 {
				return errors.New("get takes KIND and at most one NAME (tcpshift get vs tcp-echo -o yaml)")
			}
			kind, err := istio.KindByName(c.Args().Get(0))
			if err != nil {
				return err
			}
			format := c.String("output")
			if format != "table" && format != "json" && format != "yaml" {
				return fmt.Errorf("--output %q: want table, yaml or json", format)
			}
			tg, err := target(c)
			if err != nil {
				return err
			}
			defer tg.Close()
			var stored []maps.StoredObject
			var st *loader.Status
			err = tg.Read(func(set *maps.Set) (err error) {
				stored, err = set.Objects()
				return err
			})
			if err != nil && !errors.Is(err, maps.ErrNotLoaded) {
				return err
			}
			if st, err = tg.Status(""); err != nil && !errors.Is(err, maps.ErrNotLoaded) {
				return err
			}
			name, ns := c.Args().Get(1), c.String("namespace")
			var objs []maps.StoredObject
			for _, o := range stored {
				if o.Key.Kind == kind && o.Key.Namespace == ns && (name == "" || o.Key.Name == name) {
					objs = append(objs, o)
				}
			}
			if name != "" && len(objs) == 0 {
				return fmt.Errorf("%s is not applied", istio.Key{Kind: kind, Namespace: ns, Name: name})
			}
			return printObjects(c.App.Writer, objs, st, format)
		},
	}
}

// objectStatus is what tcpshift made of an object: the services it is
// behind.
type objectStatus struct {
	Services []derived `json:"services" yaml:"services"`
}

type derived struct {
	Name    string         `json:"name" yaml:"name"`
	Listen  string         `json:"listen" yaml:"listen"`
	Mode    string         `json:"mode" yaml:"mode"`
	Subsets []derivedShare `json:"subsets" yaml:"subsets"`
}

type derivedShare struct {
	Name    string  `json:"name" yaml:"name"`
	Weight  uint64  `json:"weight" yaml:"weight"`
	Percent float64 `json:"percent" yaml:"percent"`
}

func statusOf(k maps.ObjectKey, st *loader.Status) objectStatus {
	me := istio.Key(k).String()
	os := objectStatus{Services: []derived{}}
	if st == nil {
		return os
	}
	for _, s := range st.Services {
		if !slices.Contains(strings.Split(s.From, ", "), me) {
			continue
		}
		d := derived{Name: s.Name, Listen: s.Listen, Mode: s.Mode}
		for _, sub := range s.Subsets {
			d.Subsets = append(d.Subsets, derivedShare{sub.Name, sub.Weight, sub.Percent})
		}
		os.Services = append(os.Services, d)
	}
	return os
}

func printObjects(w io.Writer, objs []maps.StoredObject, st *loader.Status, format string) error {
	switch format {
	case "yaml":
		for i, o := range objs {
			if i > 0 {
				fmt.Fprintln(w, "---")
			}
			status, err := istio.Marshal(map[string]any{"status": map[string]any{"tcpshift": statusOf(o.Key, st)}})
			if err != nil {
				return err
			}
			if _, err := w.Write(o.Text); err != nil {
				return err
			}
			if _, err := w.Write(status); err != nil {
				return err
			}
		}
		return nil
	case "json":
		var out []map[string]any
		for _, o := range objs {
			var m map[string]any
			if err := yaml.Unmarshal(o.Text, &m); err != nil {
				return fmt.Errorf("%s: %w", istio.Key(o.Key), err)
			}
			m["status"] = map[string]any{"tcpshift": statusOf(o.Key, st)}
			out = append(out, m)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if out == nil {
			out = []map[string]any{}
		}
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tSERVICES")
	for _, o := range objs {
		var svcs []string
		for _, d := range statusOf(o.Key, st).Services {
			var shares []string
			for _, s := range d.Subsets {
				shares = append(shares, fmt.Sprintf("%s %.0f%%", s.Name, s.Percent))
			}
			svcs = append(svcs, fmt.Sprintf("%s (%s %s: %s)", d.Name, d.Listen, d.Mode, strings.Join(shares, ", ")))
		}
		if len(svcs) == 0 {
			svcs = []string{"-"}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", o.Key.Namespace, o.Key.Name, strings.Join(svcs, "; "))
	}
	return tw.Flush()
}
