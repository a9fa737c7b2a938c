package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/tcpshift/tcpshift/config/istio"
	"github.com/tcpshift/tcpshift/internal/inputs"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/maps"
)

func applyCommand() *cli.Command {
	return &cli.Command{
		Name:      "apply",
		Usage:     "make the kernel match a route config and Istio objects (load and attach if needed)",
		ArgsUsage: " ",
		Description: "Reads every -f (a file, a directory's .yaml/.yml/.json files, or - for stdin),\n" +
			"each with any number of YAML documents: tcpshift's own route config (services:)\n" +
			"and Istio's Gateway, VirtualService, DestinationRule, ServiceEntry and\n" +
			"WorkloadEntry, or the Gateway API's Gateway, TCPRoute and ReferenceGrant.\n\n" +
			"tcpshift's route config has whole-file semantics: its services are added or\n" +
			"updated and the route config's services not in it are removed. Objects are\n" +
			"applied as kubectl applies them: the objects given are created or updated, the\n" +
			"others stay (tcpshift delete -f removes them). Services are derived from every\n" +
			"stored object together (tcpshift get shows them).\n\n" +
			"Everything is checked against this host first; on any error nothing in the\n" +
			"kernel changes, and a kernel error midway rolls everything back. Applying the\n" +
			"same input again changes nothing. One writer at a time: apply waits for\n" +
			"another writer's lock (and says so after a second). While tcpshift run manages\n" +
			"the namespace, apply is refused: edit the daemon's file, or pass --force.",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "file", Aliases: []string{"f"}, Usage: "route config or objects: a `FILE`, a directory, or - for stdin (repeat for more)"},
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
			in, err := istio.Load(c.StringSlice("file"), c.App.Reader)
			if err != nil {
				return err
			}
			ch := &inputs.Change{Native: in.Native, Put: in.Objects}
			// Objects alone keep set-weight's overrides of services whose
			// route they leave as it is; a route config wins, as ever.
			opts := loader.ApplyOptions{DryRun: c.Bool("dry-run"), Force: c.Bool("force"), KeepOverrides: in.Native == nil}
			return applyChange(c, ch, opts)
		},
	}
}

// applyChange applies a change of the route config and objects and says
// what it did.
func applyChange(c *cli.Context, ch *inputs.Change, opts loader.ApplyOptions) error {
	tg, err := target(c)
	if err != nil {
		return err
	}
	defer tg.Close()
	if note := tg.StaleNote(); note != "" {
		fmt.Fprintln(c.App.ErrWriter, "tcpshift: "+note)
	}
	changes, err := tg.Apply(ch, opts)
	if err != nil {
		return appliedBroken(c, err)
	}
	for _, n := range ch.Notes {
		fmt.Fprintln(c.App.ErrWriter, "tcpshift: note: "+n)
	}
	for _, o := range ch.Put {
		fmt.Fprintf(c.App.Writer, "%s %s\n", o.Key, map[bool]string{true: "configured (dry run)", false: "configured"}[opts.DryRun])
	}
	for _, k := range ch.Delete {
		fmt.Fprintf(c.App.Writer, "%s %s\n", k, map[bool]string{true: "deleted (dry run)", false: "deleted"}[opts.DryRun])
	}
	printChanges(c.App.Writer, changes, opts.DryRun)
	return nil
}

// appliedBroken words an error in an object applied before, which the
// files given do not hold, as what it is: this apply or delete breaks an
// object it leaves in place, as istiod would find the two together.
// Nothing changed; the object is named with where to read its line.
func appliedBroken(c *cli.Context, err error) error {
	e, ok := istio.Applied(err)
	if !ok {
		return err
	}
	verb := c.Command.Name
	cmd := verb + " -f " + strings.Join(c.StringSlice("file"), " -f ")
	if verb == "delete" {
		return fmt.Errorf("%s: nothing deleted: %s, applied and not deleted, depends on what it deletes: %s [%s]; delete %s first, or in the same delete",
			cmd, e.Key, e.What(), e.Where(), e.Key)
	}
	return fmt.Errorf("%s: nothing applied: %s, applied before, does not fit it: %s [%s]; apply its change in the same apply, or delete it first",
		cmd, e.Key, e.What(), e.Where())
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
