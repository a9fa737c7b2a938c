package loader

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/plan"
)

// BPFAvailable reports why the kernel paths cannot be used on this host, or
// nil when they can: not root, or a kernel without the program types.
func BPFAvailable() error {
	if err := requireRoot(); err != nil {
		return err
	}
	for _, pt := range []ebpf.ProgramType{ebpf.SkLookup, ebpf.CGroupSockAddr, ebpf.SockOps} {
		if err := features.HaveProgramType(pt); err != nil {
			return fmt.Errorf("kernel cannot load %s programs: %w", pt, err)
		}
	}
	return nil
}

// ErrNeedsBPF is returned for a service whose configured mode needs the
// kernel paths when they are not available.
var ErrNeedsBPF = errors.New("needs BPF")

// StaticServices turns a config into services for the userspace proxy alone,
// for hosts where BPF cannot load (why says what stops it): every service is
// proxied, so each must be in mode proxy or auto. Ids follow the file.
func StaticServices(cfg *config.Config, why string) ([]*maps.Service, error) {
	var out []*maps.Service
	next := uint32(0)
	for i := range cfg.Services {
		c := &cfg.Services[i]
		svc := plan.NewService(c)
		svc.ID = uint32(i)
		svc.Mode = maps.ModeProxy
		switch c.Mode {
		case config.ModeProxy:
			svc.Reason = "configured"
		case config.ModeAuto, "":
			svc.Auto = true
			svc.Reason = "auto: no BPF: " + why
		default:
			return nil, fmt.Errorf("%s:%d: services[%d].mode: mode %s %w (%s); use proxy or auto", cfg.Path, c.Line, i, c.Mode, ErrNeedsBPF, why)
		}
		for si := range svc.Subsets {
			for ei := range svc.Subsets[si].Endpoints {
				svc.Subsets[si].Endpoints[ei].ID = next
				next++
			}
		}
		out = append(out, svc)
	}
	return out, nil
}
