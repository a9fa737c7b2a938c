package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/tcpshift/tcpshift/loader"
)

func setWeightCommand() *cli.Command {
	return &cli.Command{
		Name:      "set-weight",
		Usage:     "change subsets' weights live",
		ArgsUsage: "SERVICE SUBSET=WEIGHT...",
		Description: "Weights are relative non-negative integers (80/20 = 4/1). Subsets not named keep\n" +
			"their weight. The new table replaces the old one atomically; established\n" +
			"connections are not touched. Example: tcpshift set-weight tcp-echo v1=80 v2=20\n" +
			"While tcpshift run manages the namespace this is a runtime override: status\n" +
			"and the metrics show it next to the file's weights, and it lasts until the\n" +
			"service's route in the file changes or the daemon gets SIGHUP.\n" +
			"A shift holds its service's weights until it ends (done or rolled back): while\n" +
			"it runs, is paused or is interrupted (tcpshift run resumes it, --abort rolls it\n" +
			"back), set-weight is refused with where the shift is and how to pause or abort\n" +
			"it; --force aborts the shift (its weights go back to where they were before it)\n" +
			"and sets these weights over those, in one change, and says so.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "abort a shift that holds the service's weights, then set these"},
		},
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if c.NArg() < 2 {
				return errors.New("want SERVICE and at least one SUBSET=WEIGHT (e.g. set-weight tcp-echo v1=80 v2=20)")
			}
			weights, err := parseWeights(c.Args().Slice()[1:])
			if err != nil {
				return err
			}
			tg, err := target(c)
			if err != nil {
				return err
			}
			defer tg.Close()
			svc, aborted, err := tg.SetWeightsWith(c.Args().First(), weights, loader.SetWeightsOptions{Force: c.Bool("force")})
			if err != nil {
				return err
			}
			if aborted != "" {
				fmt.Fprintf(c.App.Writer, "aborted the shift of %s %s: its process stops without rolling back over these weights\n", svc.Name, aborted)
			}
			parts := make([]string, len(svc.Subsets))
			for i, s := range svc.Subsets {
				parts[i] = fmt.Sprintf("%s=%d", s.Name, s.Weight)
			}
			fmt.Fprintf(c.App.Writer, "service %s weights %s\n", svc.Name, strings.Join(parts, " "))
			if d, err := tg.RunningDaemon(); err == nil && d != nil {
				if _, agent := d.Node(); agent {
					fmt.Fprintf(c.App.Writer, "runtime override: %s keeps these weights until the service's routes or endpoints in the cluster change\n", d)
				} else {
					fmt.Fprintf(c.App.Writer, "runtime override: %s keeps these weights until the service's route in %s changes, or SIGHUP\n", d, d.File)
				}
			}
			return nil
		},
	}
}

func parseWeights(args []string) ([]loader.Weight, error) {
	var out []loader.Weight
	seen := map[string]bool{}
	for _, a := range args {
		name, value, ok := strings.Cut(a, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("argument %q: want SUBSET=WEIGHT", a)
		}
		w, err := strconv.ParseUint(value, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("argument %q: weight must be an integer from 0 to %d", a, uint64(1<<64-1))
		}
		if seen[name] {
			return nil, fmt.Errorf("argument %q: subset %s given twice", a, name)
		}
		seen[name] = true
		out = append(out, loader.Weight{Subset: name, Weight: w})
	}
	return out, nil
}
