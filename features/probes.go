package features

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	ebpffeatures "github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/loader/sockdiag"
)

func probeBTF() error {
	if _, err := btf.LoadKernelSpec(); err != nil {
		return fmt.Errorf("load kernel btf: %w", err)
	}
	return nil
}

// probeFilesystem checks that the kernel knows a filesystem type; whether
// and where it is mounted is the loader's business (it mounts bpffs).
func probeFilesystem(name string) func() error {
	return func() error {
		f, err := os.Open("/proc/filesystems")
		if err != nil {
			return err
		}
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			fields := strings.Fields(s.Text())
			if len(fields) > 0 && fields[len(fields)-1] == name {
				return nil
			}
		}
		if err := s.Err(); err != nil {
			return fmt.Errorf("read /proc/filesystems: %w", err)
		}
		return fmt.Errorf("the kernel has no %s filesystem", name)
	}
}

// probeProgram loads tcpshift's own program, with throwaway maps, and
// unloads it: the only test that tells what the verifier, the LSM and the
// capabilities at hand allow.
func probeProgram(name string) func() error {
	return func() error { return loadProgram(name) }
}

func probePrograms(names ...string) func() error {
	return func() error {
		for _, n := range names {
			if err := loadProgram(n); err != nil {
				return err
			}
		}
		return nil
	}
}

func loadProgram(name string) error {
	spec, err := bpf.LoadTcpshift()
	if err != nil {
		return fmt.Errorf("load bpf spec: %w", err)
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	field := reflect.StructField{Name: "P", Type: reflect.TypeFor[*ebpf.Program](), Tag: reflect.StructTag(`ebpf:"` + name + `"`)}
	objs := reflect.New(reflect.StructOf([]reflect.StructField{field}))
	if err := spec.LoadAndAssign(objs.Interface(), nil); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("load %s: %w (refused before or by the verifier: lockdown, an LSM policy or a missing capability)", name, unix.EPERM)
		}
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return fmt.Errorf("load %s: verifier: %w", name, ve.Cause)
		}
		return fmt.Errorf("load %s: %w", name, err)
	}
	return objs.Elem().Field(0).Interface().(*ebpf.Program).Close()
}

func probeSockmapUpdate() error {
	return ebpffeatures.HaveProgramHelper(ebpf.SockOps, asm.FnSockMapUpdate)
}

func probeSkStorage() error {
	return ebpffeatures.HaveMapType(ebpf.SkStorage)
}

func probeDiagDestroy() error { return sockdiag.ProbeDestroy() }

func probeDiagStorage() error { return sockdiag.ProbeStorages() }
