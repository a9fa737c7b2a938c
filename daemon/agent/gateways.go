package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/userspace"
)

// gatewayProxy serves the node's proxy-mode services (the gateways'
// listeners, at every address of the node) with the userspace proxy,
// which splits by the tables in force, as the kernel does for pods.
type gatewayProxy struct {
	o     Options
	set   *maps.Set // opened with the first proxy-mode service
	proxy *userspace.Proxy
	ids   map[string]userspace.Service // by name, as last read
}

// follow makes the proxy listen for exactly the proxy-mode services an
// apply left in force (its changes name every service) and returns the
// ports it listens on. A frontend it cannot bind is logged and the others
// are served.
func (g *gatewayProxy) follow(changes []loader.Change) map[uint16]bool {
	var want []userspace.Service
	ids := map[string]userspace.Service{}
	for _, ch := range changes {
		if ch.Action == "removed" || ch.Mode != maps.ModeProxy {
			continue
		}
		svc, ok := g.ids[ch.Service]
		if !ok || ch.Action != "unchanged" {
			var err error
			if svc, ok, err = g.read(ch.Service); err != nil || !ok {
				g.o.Log.Error("gateway service not served", "service", ch.Service, "err", cmpErr(err, "not in force"))
				continue
			}
		}
		ids[ch.Service] = svc
		want = append(want, svc)
	}
	g.ids = ids
	if g.proxy == nil {
		return nil // no gateway served yet
	}
	// Sync stops at the first frontend it cannot bind: listen for each
	// then, so one port taken on this node takes no other down.
	if err := g.proxy.Sync(want); err != nil {
		for _, s := range want {
			if err := g.proxy.Listen(s); err != nil {
				g.o.Log.Error("gateway not served on this node", "service", s.Name, "err", err)
			}
		}
	}
	listening := map[uint16]bool{}
	for _, s := range g.proxy.Serving() {
		listening[s.Frontend.Port()] = true
	}
	return listening
}

// read finds a service's id and frontend in the maps, opening them and
// starting the proxy the first time.
func (g *gatewayProxy) read(name string) (userspace.Service, bool, error) {
	if g.set == nil {
		set, err := g.o.Target.Maps()
		if err != nil {
			return userspace.Service{}, false, fmt.Errorf("open the maps for the proxy: %w", err)
		}
		g.set = set
		g.proxy = userspace.New(userspace.Options{Source: userspace.NewKernelSource(set), DialTimeout: g.o.DialTimeout,
			Attempts: g.o.Attempts, InNamespace: g.o.InNamespace, Log: g.o.Log})
	}
	svc, ok, err := g.set.Service(name)
	if err != nil || !ok {
		return userspace.Service{}, ok, err
	}
	return userspace.Service{ID: svc.ID, Name: svc.Name, Frontend: svc.Frontend}, true, nil
}

// stop closes the listeners, lets open connections finish within the
// grace period, then closes the maps.
func (g *gatewayProxy) stop() {
	if g.proxy == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.o.Grace)
	defer cancel()
	if err := g.proxy.Shutdown(ctx); err != nil {
		g.o.Log.Warn("closed gateway connections that outlived the grace period", "err", err)
	}
	g.set.Close()
}

func cmpErr(err error, msg string) error {
	if err != nil {
		return err
	}
	return errors.New(msg)
}
