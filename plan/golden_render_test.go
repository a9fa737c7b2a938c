package plan_test

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/plan"
)

// renderError is a refused step: the error alone, the state unchanged.
func renderError(err error) string {
	return "error: " + err.Error() + "\n"
}

// render is a step's plan as stable text: each service (id, mode and why,
// frontend, settings, subsets, endpoints with ids and sockets, the weight
// table), then what the change does to each service, the endpoint ids it
// releases, the local routes it adds and removes, and the front end's
// notes and left-out objects.
func render(b *built, svcs []*plan.Service, d *plan.Delta) string {
	var out strings.Builder
	for _, s := range svcs {
		renderService(&out, s)
	}
	out.WriteString("changes:\n")
	for _, a := range d.Actions {
		fmt.Fprintf(&out, "  %s %s", a.Service, a.Action)
		if a.KeptOverride {
			out.WriteString(", set-weight's weights kept")
		}
		out.WriteString("\n")
	}
	if len(d.Released) > 0 {
		fmt.Fprintf(&out, "released endpoint ids: %s\n", join(d.Released))
	}
	if len(d.AddRoutes)+len(d.DelRoutes) > 0 {
		fmt.Fprintf(&out, "local routes: add [%s] remove [%s]\n", join(d.AddRoutes), join(d.DelRoutes))
	}
	for _, n := range b.notes {
		fmt.Fprintf(&out, "note: %s\n", n)
	}
	for _, r := range b.rejected {
		fmt.Fprintf(&out, "left out: %s: %v\n", r.Key, r.Err)
	}
	return out.String()
}

var modeNames = map[maps.Mode]string{maps.ModeLookup: "lookup", maps.ModeConnect: "connect", maps.ModeProxy: "proxy"}

func renderService(out *strings.Builder, s *plan.Service) {
	svc := s.Svc
	fmt.Fprintf(out, "service %s: id %d, %s (%s)\n", svc.Name, svc.ID, modeNames[svc.Mode], svc.Reason)
	fmt.Fprintf(out, "  frontend %s", svc.Frontend)
	if svc.LocalRoute {
		out.WriteString(", local route")
	}
	out.WriteString("\n")
	if svc.Origin != "" {
		fmt.Fprintf(out, "  from %s\n", svc.Origin)
	}
	fmt.Fprintf(out, "  %s\n", settings(svc))
	waiting := map[string]string{}
	for _, w := range s.Waiting {
		waiting[w.Endpoint] = w.Note
	}
	for i, sub := range svc.Subsets {
		fmt.Fprintf(out, "  subset %s weight %d", sub.Name, sub.Weight)
		if sub.FileWeight != sub.Weight {
			fmt.Fprintf(out, " (file %d)", sub.FileWeight)
		}
		out.WriteString("\n")
		for j, ep := range sub.Endpoints {
			fmt.Fprintf(out, "    endpoint %d %s%s\n", ep.ID, ep.Addr, endpointNote(s, i, j, ep, waiting))
		}
	}
	renderTable(out, svc)
}

// endpointNote says what the plan holds for an endpoint: its health when
// checked, its listener or that it is waited for.
func endpointNote(s *plan.Service, i, j int, ep maps.Endpoint, waiting map[string]string) string {
	var notes []string
	if ep.Health != maps.HealthUnchecked {
		notes = append(notes, maps.HealthName(ep.Health))
	}
	if i < len(s.Sockets) && s.Sockets[i][j] != nil {
		l := s.Sockets[i][j]
		notes = append(notes, fmt.Sprintf("socket of %s on %s", l.Owner, l.Addr))
	} else if note, ok := waiting[ep.Addr.String()]; ok {
		notes = append(notes, strings.TrimSpace("waiting "+note))
	}
	if len(notes) == 0 {
		return ""
	}
	return ": " + strings.Join(notes, ", ")
}

// settings lists a service's policy and the settings that differ from
// the defaults.
func settings(svc *maps.Service) string {
	s := []string{map[maps.Policy]string{maps.PolicyRoundRobin: "roundrobin", maps.PolicyRandom: "random"}[svc.Policy]}
	if svc.AffinityTTL > 0 {
		s = append(s, "affinity "+svc.AffinityTTL.String())
	}
	if c := svc.Checks; c != nil {
		check := fmt.Sprintf("checks every %s, timeout %s, rise %d, fall %d", c.Interval, c.Timeout, c.Rise, c.Fall)
		if c.Passive {
			check += ", passive"
		}
		s = append(s, check)
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{svc.NoFailover, "no failover"}, {svc.NoAccounting, "no accounting"}, {svc.Claim, "claim"}} {
		if f.on {
			s = append(s, f.name)
		}
	}
	return strings.Join(s, "; ")
}

// renderTable summarises the weight table the kernel would hold: its
// length, each subset's positions and endpoint ids, and its first slots.
func renderTable(out *strings.Builder, svc *maps.Service) {
	t, err := svc.Table()
	if err != nil {
		fmt.Fprintf(out, "  table: %v\n", err)
		return
	}
	var subs []string
	for i, sub := range svc.Subsets {
		subs = append(subs, fmt.Sprintf("%s %d [%s]", sub.Name, t.Subsets[i].Positions, join(t.Endpoints[i])))
	}
	seq := t.Seq[:t.Len]
	more := ""
	if len(seq) > 20 {
		seq, more = seq[:20], " ..."
	}
	fmt.Fprintf(out, "  table %d slots: %s; order %s%s\n", t.Len, strings.Join(subs, ", "), join(seq), more)
}

func join[T uint8 | uint32 | netip.Addr](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(slices.Clip(s), " ")
}
