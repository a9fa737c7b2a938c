package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tcpshift/tcpshift/config/istio"
	"github.com/tcpshift/tcpshift/examples"
	"github.com/tcpshift/tcpshift/internal/echo"
	"github.com/tcpshift/tcpshift/internal/inputs"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/maps"
)

// runIstio is the task as Istio's docs run it, with Istio's YAML: the
// gateway port 31400, all to v1, 80/20, all to v2, drained. The backends
// and the namespace are the demo's.
func (d *demo) runIstio() (err error) {
	for _, f := range []string{"workloads.yaml", "tcp-echo-all-v1.yaml", "tcp-echo-20-v2.yaml", "tcp-echo-100-v2.yaml"} {
		data, err := examples.FS.ReadFile("istio/" + f)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if err := os.WriteFile(filepath.Join(d.dir, f), data, 0o600); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	fmt.Fprintln(d.w, "\nWhere v1 and v2 run, in Istio's words for workloads outside Kubernetes:")
	if err := d.show("workloads.yaml"); err != nil {
		return err
	}
	if d.tg, err = loader.Open(d.ns.Path(), filepath.Join(d.dir, "bpffs"), d.cgroup); err != nil {
		return err
	}
	defer d.tg.Close()
	defer func() {
		_, downErr := d.tg.Down()
		fmt.Fprintln(d.w, "\n$ tcpshift down")
		if downErr == nil {
			fmt.Fprintln(d.w, "tcpshift removed")
		}
		err = errors.Join(err, downErr)
	}()

	fmt.Fprintln(d.w, "\nStep 1: Istio's tcp-echo-all-v1.yaml: a gateway on port 31400, subsets v1 and v2, 100% to v1")
	if err := d.show("tcp-echo-all-v1.yaml"); err != nil {
		return err
	}
	if err := d.applyFiles(false, "workloads.yaml", "tcp-echo-all-v1.yaml"); err != nil {
		return err
	}
	if err := d.send(); err != nil {
		return err
	}

	fmt.Fprintln(d.w, "\nStep 2: Istio's tcp-echo-20-v2.yaml: 20% to v2 (only the VirtualService changes)")
	if err := d.applyFiles(false, "tcp-echo-20-v2.yaml"); err != nil {
		return err
	}
	if err := d.send(); err != nil {
		return err
	}
	fmt.Fprintln(d.w, "\n$ tcpshift get virtualservice tcp-echo -o yaml")
	if err := d.getVS(); err != nil {
		return err
	}

	fmt.Fprintln(d.w, "\nStep 3: 100% to v2, live, while a v1 client stays connected")
	long, err := d.dial()
	if err != nil {
		return err
	}
	defer long.Close()
	reply, err := echo.Ask(long, "still here")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	fmt.Fprintf(d.w, "$ nc %s    # stays open\nstill here\n%s\n", strings.Replace(d.frontend, ":", " ", 1), reply)
	if err := d.applyFiles(false, "tcp-echo-100-v2.yaml"); err != nil {
		return err
	}
	if err := d.send(); err != nil {
		return err
	}

	fmt.Fprintln(d.w, "\nStep 4: wait until v1 has drained (the open v1 connection closes after a second)")
	fmt.Fprintln(d.w, "$ tcpshift wait-drained tcp-echo v1")
	closer := time.AfterFunc(time.Second, func() { long.Close() })
	defer closer.Stop()
	if err := waitDrained(d.w, d.tg, "tcp-echo", "v1", 10*time.Second); err != nil {
		return err
	}

	fmt.Fprintln(d.w, "\nCleanup, as the task does it:")
	return d.applyFiles(true, "tcp-echo-all-v1.yaml")
}

// show prints an example file.
func (d *demo) show(name string) error {
	data, err := os.ReadFile(filepath.Join(d.dir, name))
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	fmt.Fprintf(d.w, "$ cat %s\n%s", name, indent(string(data)))
	return nil
}

// applyFiles runs `tcpshift apply -f ...` (or delete) on example files.
func (d *demo) applyFiles(del bool, names ...string) error {
	verb := "apply"
	if del {
		verb = "delete"
	}
	var paths []string
	for _, n := range names {
		paths = append(paths, filepath.Join(d.dir, n))
	}
	fmt.Fprintf(d.w, "$ tcpshift %s -f %s\n", verb, strings.Join(names, " -f "))
	in, err := istio.Load(paths, nil)
	if err != nil {
		return err
	}
	ch := &inputs.Change{Native: in.Native, Put: in.Objects}
	if del {
		ch = &inputs.Change{}
		for _, o := range in.Objects {
			ch.Delete = append(ch.Delete, o.Key)
		}
	}
	changes, err := d.tg.Apply(ch, loader.ApplyOptions{KeepOverrides: true})
	if err != nil {
		return err
	}
	for _, o := range ch.Put {
		fmt.Fprintf(d.w, "%s configured\n", o.Key)
	}
	for _, k := range ch.Delete {
		fmt.Fprintf(d.w, "%s deleted\n", k)
	}
	printChanges(d.w, changes, false)
	return nil
}

func (d *demo) getVS() error {
	var objs []maps.StoredObject
	err := d.tg.Read(func(set *maps.Set) (err error) {
		all, err := set.Objects()
		for _, o := range all {
			if o.Key.Kind == istio.KindVirtualService {
				objs = append(objs, o)
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	st, err := d.tg.Status("")
	if err != nil {
		return err
	}
	return printObjects(d.w, objs, st, "yaml")
}
