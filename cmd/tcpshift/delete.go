package main

import (
	"errors"

	"github.com/urfave/cli/v2"

	"github.com/tcpshift/tcpshift/config/istio"
	"github.com/tcpshift/tcpshift/internal/inputs"
	"github.com/tcpshift/tcpshift/loader"
)

func deleteCommand() *cli.Command {
	return &cli.Command{
		Name:      "delete",
		Usage:     "remove the Istio or Gateway API objects named in files, as kubectl delete -f",
		ArgsUsage: " ",
		Description: "Reads the files as apply does and removes each object they name (by kind,\n" +
			"namespace and name; the rest of each object is not compared). Services are\n" +
			"derived again from the objects left, in one change: a service no object makes\n" +
			"any more is removed. An object that is not applied refuses the whole delete.\n" +
			"tcpshift's own route config is not deleted this way: apply another, or down.",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "file", Aliases: []string{"f"}, Usage: "objects to delete: a `FILE`, a directory, or - for stdin (repeat for more)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would change, change nothing"},
			&cli.BoolFlag{Name: "force", Usage: "delete even while tcpshift run manages the namespace"},
		},
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if err := needFile(c); err != nil {
				return err
			}
			if c.NArg() > 0 {
				return errors.New("delete takes no arguments (the objects go in -f FILE)")
			}
			in, err := istio.Load(c.StringSlice("file"), c.App.Reader)
			if err != nil {
				return err
			}
			if in.Native != nil {
				return errors.New(in.Native.Path + ": tcpshift's route config (services:) is not deleted by delete: apply another, or run tcpshift down")
			}
			ch := &inputs.Change{}
			for _, o := range in.Objects {
				ch.Delete = append(ch.Delete, o.Key)
			}
			return applyChange(c, ch, loader.ApplyOptions{DryRun: c.Bool("dry-run"), Force: c.Bool("force"), KeepOverrides: true})
		},
	}
}
