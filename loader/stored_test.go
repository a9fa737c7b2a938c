package loader

import (
	"testing"

	tsmaps "github.com/tcpshift/tcpshift/maps"
)

// Natives keeps the services of tcpshift's own route config (no origin),
// with the file's weights, so applying them again with KeepOverrides
// leaves set-weight's weights in force.
func TestNatives(t *testing.T) {
	f := newFake(t)
	f.mustApply(svc{name: "own", front: "192.0.2.1:80", mode: tsmaps.ModeConnect, subsets: []sub{{"v1", 80, []string{"10.0.0.1:80"}}, {"v2", 20, []string{"10.0.0.2:80"}}}},
		connect("derived", "192.0.2.2:80", "10.0.0.3:80"))
	old, err := f.set.ServiceList()
	if err != nil {
		t.Fatal(err)
	}
	// set-weight moved own's weights; derived came from objects.
	old[1].Subsets[0].Weight, old[1].Subsets[1].Weight = 10, 90
	old[0].Origin = "VirtualService default/derived"
	cfg := Natives(old)
	if cfg.Path != "<applied route config>" || len(cfg.Services) != 1 {
		t.Fatalf("natives %+v, want own only", cfg)
	}
	s := cfg.Services[0]
	if s.Name != "own" || s.Listen.String() != "192.0.2.1:80" || len(s.Subsets) != 2 || s.Subsets[0].Weight != 80 || s.Subsets[1].Weight != 20 {
		t.Fatalf("own as a native: %+v, want the file's weights 80/20", s)
	}
	if len(s.Subsets[0].Endpoints) != 1 || s.Subsets[0].Endpoints[0].String() != "10.0.0.1:80" {
		t.Fatalf("own's endpoints %+v", s.Subsets[0].Endpoints)
	}
}
