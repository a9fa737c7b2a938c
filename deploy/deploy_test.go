// Package deploy holds the Kubernetes manifests of tcpshift's per-node agent
// (kubectl apply -k deploy/). This test reads them as YAML and checks what
// matters for safety and for the agent to start, without a cluster.
package deploy

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The command line the DaemonSet may use: the global flags, which come
// before the command, and those of `tcpshift agent`. Keep in step with
// cmd/tcpshift and the README.
var (
	globalFlags = []string{"bpffs", "cgroup"}
	agentFlags  = []string{"log-level", "log-format", "node", "kubeconfig", "only-routed", "cluster-domain",
		"debounce", "max-delay", "metrics-addr", "health-addr", "status", "lease-namespace", "gateway-labels"}
)

// What the agent is granted, as documented in daemonset.yaml and the README.
var (
	capabilities = []string{"NET_ADMIN", "SYS_ADMIN"}
	hostMounts   = map[string]hostMount{
		"/sys/fs/bpf":    {hostPath: "/sys/fs/bpf", propagation: "HostToContainer"},
		"/sys/fs/cgroup": {hostPath: "/sys/fs/cgroup", readOnly: true},
	}
	// The ClusterRole: exactly these resources per API group, read-only.
	readable = map[string][]string{
		"":                          {"nodes", "pods", "services"},
		"discovery.k8s.io":          {"endpointslices"},
		"networking.istio.io":       {"destinationrules", "gateways", "serviceentries", "virtualservices", "workloadentries"},
		"gateway.networking.k8s.io": {"gatewayclasses", "gateways", "referencegrants", "tcproutes"},
	}
	readVerbs = []string{"get", "list", "watch"}
	// And exactly these writes: status subresources, Events, the Lease.
	writable = map[string]map[string][]string{
		"gateway.networking.k8s.io": {"gatewayclasses/status": {"patch"}, "gateways/status": {"patch"}, "tcproutes/status": {"patch"}},
		"networking.istio.io":       {"destinationrules/status": {"patch"}, "virtualservices/status": {"patch"}},
		"":                          {"events": {"create", "patch"}},
		"coordination.k8s.io":       {"leases": {"create", "get", "update"}},
	}
)

const (
	namespace = "tcpshift-system"
	imageName = "ghcr.io/tcpshift/tcpshift"
)

type hostMount struct {
	hostPath    string
	readOnly    bool
	propagation string // "" for the default, None
}

type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name      string            `yaml:"name"`
		Namespace string            `yaml:"namespace"`
		Labels    map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	// ConfigMap
	Data map[string]string `yaml:"data"`
	// ClusterRole
	Rules []struct {
		APIGroups       []string `yaml:"apiGroups"`
		Resources       []string `yaml:"resources"`
		Verbs           []string `yaml:"verbs"`
		ResourceNames   []string `yaml:"resourceNames"`
		NonResourceURLs []string `yaml:"nonResourceURLs"`
	} `yaml:"rules"`
	// ClusterRoleBinding
	RoleRef struct {
		Kind string `yaml:"kind"`
		Name string `yaml:"name"`
	} `yaml:"roleRef"`
	Subjects []struct {
		Kind      string `yaml:"kind"`
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"subjects"`
	// DaemonSet
	Spec struct {
		UpdateStrategy struct {
			Type          string `yaml:"type"`
			RollingUpdate struct {
				MaxUnavailable any `yaml:"maxUnavailable"`
			} `yaml:"rollingUpdate"`
		} `yaml:"updateStrategy"`
		Template struct {
			Metadata struct {
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	ServiceAccountName string       `yaml:"serviceAccountName"`
	HostNetwork        bool         `yaml:"hostNetwork"`
	HostPID            bool         `yaml:"hostPID"`
	DNSPolicy          string       `yaml:"dnsPolicy"`
	Tolerations        []toleration `yaml:"tolerations"`
	InitContainers     []container  `yaml:"initContainers"`
	Containers         []container  `yaml:"containers"`
	Volumes            []struct {
		Name     string `yaml:"name"`
		HostPath *struct {
			Path string `yaml:"path"`
			Type string `yaml:"type"`
		} `yaml:"hostPath"`
	} `yaml:"volumes"`
}

type toleration struct {
	Key      string `yaml:"key"`
	Operator string `yaml:"operator"`
	Effect   string `yaml:"effect"`
}

type port struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom struct {
			FieldRef struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	EnvFrom []struct {
		ConfigMapRef struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
	} `yaml:"envFrom"`
	Ports          []port `yaml:"ports"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		Privileged               *bool `yaml:"privileged"`
		RunAsUser                *int  `yaml:"runAsUser"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		Capabilities             struct {
			Add  []string `yaml:"add"`
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name             string `yaml:"name"`
		MountPath        string `yaml:"mountPath"`
		ReadOnly         bool   `yaml:"readOnly"`
		MountPropagation string `yaml:"mountPropagation"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Host string `yaml:"host"`
		Path string `yaml:"path"`
		Port int    `yaml:"port"`
	} `yaml:"httpGet"`
}

type kustomization struct {
	Kind      string   `yaml:"kind"`
	Resources []string `yaml:"resources"`
	Images    []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
	} `yaml:"images"`
}

// manifests reads every document of every manifest the kustomization lists,
// by kind.
func manifests(t *testing.T) map[string][]object {
	t.Helper()
	k := readKustomization(t)
	byKind := map[string][]object{}
	for _, file := range k.Resources {
		f, err := os.Open(file)
		if err != nil {
			t.Fatalf("kustomization.yaml lists %s: %v", file, err)
		}
		dec := yaml.NewDecoder(f)
		for {
			var o object
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				f.Close()
				t.Fatalf("%s: %v", file, err)
			}
			if o.Kind == "" || o.Metadata.Name == "" {
				t.Errorf("%s: a document without kind or metadata.name", file)
			}
			byKind[o.Kind] = append(byKind[o.Kind], o)
		}
		f.Close()
	}
	return byKind
}

func readKustomization(t *testing.T) kustomization {
	t.Helper()
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	return k
}

// one returns the only object of a kind.
func one(t *testing.T, byKind map[string][]object, kind string) object {
	t.Helper()
	if n := len(byKind[kind]); n != 1 {
		t.Fatalf("%d objects of kind %s, want 1", n, kind)
	}
	return byKind[kind][0]
}

func agent(t *testing.T, byKind map[string][]object) (object, container) {
	t.Helper()
	ds := one(t, byKind, "DaemonSet")
	cs := ds.Spec.Template.Spec.Containers
	if len(cs) != 1 || len(ds.Spec.Template.Spec.InitContainers) != 0 {
		t.Fatalf("DaemonSet has %d containers and %d init containers, want the agent alone",
			len(cs), len(ds.Spec.Template.Spec.InitContainers))
	}
	return ds, cs[0]
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	k := readKustomization(t)
	if k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml kind %q", k.Kind)
	}
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return f == "kustomization.yaml" })
	if got, want := sorted(k.Resources), sorted(files); !slices.Equal(got, want) {
		t.Errorf("kustomization resources %v, want every manifest here: %v", got, want)
	}
	if len(files) != 6 {
		t.Errorf("%d manifests, want 6 (namespace, service account, role, binding, config, daemonset): %v", len(files), files)
	}

	// The image is set in one place, kustomization's images:, with the
	// VERSION placeholder until `kustomize edit set image` replaces it.
	if len(k.Images) != 1 || k.Images[0].Name != imageName || k.Images[0].NewTag != "VERSION" || k.Images[0].NewName != "" {
		t.Errorf("kustomization images %+v, want one: name %s, newTag VERSION", k.Images, imageName)
	}
	_, c := agent(t, manifests(t))
	if name, _, _ := strings.Cut(c.Image, ":"); name != imageName {
		t.Errorf("agent image %q, want %s (the name kustomization.yaml's images: sets)", c.Image, imageName)
	}
}

func TestObjectsAndNames(t *testing.T) {
	byKind := manifests(t)
	for _, kind := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet"} {
		one(t, byKind, kind)
	}
	if n := len(byKind); n != 6 {
		t.Errorf("%d kinds of object, want 6", n)
	}
	ns := one(t, byKind, "Namespace")
	if ns.Metadata.Name != namespace {
		t.Errorf("Namespace %q, want %s", ns.Metadata.Name, namespace)
	}
	// Pod Security's baseline level refuses hostNetwork, hostPath and added
	// capabilities: where it is a cluster's default, the agent would not start.
	if got := ns.Metadata.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
		t.Errorf("Namespace label pod-security.kubernetes.io/enforce=%q, want privileged", got)
	}
	for _, kind := range []string{"ServiceAccount", "ConfigMap", "DaemonSet"} {
		if o := one(t, byKind, kind); o.Metadata.Namespace != namespace {
			t.Errorf("%s %s in namespace %q, want %s", kind, o.Metadata.Name, o.Metadata.Namespace, namespace)
		}
	}
	for _, kind := range []string{"ClusterRole", "ClusterRoleBinding"} {
		if o := one(t, byKind, kind); o.Metadata.Namespace != "" {
			t.Errorf("cluster-scoped %s has namespace %q", kind, o.Metadata.Namespace)
		}
	}

	sa, role, binding := one(t, byKind, "ServiceAccount"), one(t, byKind, "ClusterRole"), one(t, byKind, "ClusterRoleBinding")
	if binding.RoleRef.Kind != "ClusterRole" || binding.RoleRef.Name != role.Metadata.Name {
		t.Errorf("binding's roleRef %+v, want ClusterRole %s", binding.RoleRef, role.Metadata.Name)
	}
	if len(binding.Subjects) != 1 || binding.Subjects[0].Kind != "ServiceAccount" ||
		binding.Subjects[0].Name != sa.Metadata.Name || binding.Subjects[0].Namespace != namespace {
		t.Errorf("binding's subjects %+v, want ServiceAccount %s/%s alone", binding.Subjects, namespace, sa.Metadata.Name)
	}
	ds, c := agent(t, byKind)
	if got := ds.Spec.Template.Spec.ServiceAccountName; got != sa.Metadata.Name {
		t.Errorf("DaemonSet runs as service account %q, want %s", got, sa.Metadata.Name)
	}
	cm := one(t, byKind, "ConfigMap")
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef.Name != cm.Metadata.Name {
		t.Errorf("agent envFrom %+v, want the ConfigMap %s", c.EnvFrom, cm.Metadata.Name)
	}
}

// The role reads what it documents and writes only status, Events and the
// status writer's Lease.
func TestClusterRoleReadsAndWritesOnlyStatus(t *testing.T) {
	role := one(t, manifests(t), "ClusterRole")
	granted := map[string][]string{}
	writes := map[string]map[string][]string{}
	for i, r := range role.Rules {
		if len(r.ResourceNames) != 0 || len(r.NonResourceURLs) != 0 {
			t.Errorf("rule %d has resourceNames %v or nonResourceURLs %v", i, r.ResourceNames, r.NonResourceURLs)
		}
		if got := sorted(r.Verbs); !slices.Equal(got, readVerbs) {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					if writes[g] == nil {
						writes[g] = map[string][]string{}
					}
					writes[g][res] = sorted(append(writes[g][res], r.Verbs...))
				}
			}
			continue
		}
		for _, g := range r.APIGroups {
			granted[g] = append(granted[g], r.Resources...)
		}
	}
	if !reflect.DeepEqual(writes, writable) {
		t.Errorf("writes granted %v, want exactly %v", writes, writable)
	}
	for g := range granted {
		granted[g] = sorted(granted[g])
	}
	if len(granted) != len(readable) {
		t.Errorf("API groups %d, want %d", len(granted), len(readable))
	}
	for g, want := range readable {
		if got := granted[g]; !slices.Equal(got, want) {
			t.Errorf("API group %q: resources %v, want %v", g, got, want)
		}
	}
	for g, res := range granted {
		if _, ok := readable[g]; !ok || g == "*" || slices.Contains(res, "*") {
			t.Errorf("API group %q: %v granted beyond the documented set", g, res)
		}
	}
}

func TestDaemonSetPrivileges(t *testing.T) {
	ds, c := agent(t, manifests(t))
	pod := ds.Spec.Template.Spec
	if !pod.HostNetwork || pod.DNSPolicy != "ClusterFirstWithHostNet" {
		t.Errorf("hostNetwork %v, dnsPolicy %q: want the host's network namespace with cluster DNS", pod.HostNetwork, pod.DNSPolicy)
	}
	if pod.HostPID {
		t.Error("hostPID: the agent needs no other process")
	}
	sc := c.SecurityContext
	if sc.Privileged == nil || *sc.Privileged {
		t.Error("securityContext.privileged must be false, explicitly")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Error("runAsUser must be 0: tcpshift refuses to run as another user")
	}
	if !sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem: the agent writes only to bpffs")
	}
	if got := sorted(sc.Capabilities.Add); !slices.Equal(got, capabilities) {
		t.Errorf("capabilities added %v, want exactly %v", got, capabilities)
	}
	if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("capabilities dropped %v, want [ALL]", sc.Capabilities.Drop)
	}

	// Every hostPath volume is one of the documented mounts, mounted as
	// documented; no other volume reaches the host.
	hostPaths := map[string]string{} // volume name → host path
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
			if v.HostPath.Type != "Directory" {
				t.Errorf("hostPath %s: type %q, want Directory (it must exist on the host)", v.HostPath.Path, v.HostPath.Type)
			}
		}
	}
	mounted := map[string]bool{}
	for _, m := range c.VolumeMounts {
		host, ok := hostPaths[m.Name]
		if !ok {
			continue
		}
		want, ok := hostMounts[m.MountPath]
		if !ok {
			t.Errorf("host's %s mounted at %s: not a documented mount", host, m.MountPath)
			continue
		}
		mounted[m.MountPath] = true
		if host != want.hostPath || m.ReadOnly != want.readOnly || m.MountPropagation != want.propagation {
			t.Errorf("mount %s: host %s, readOnly %v, propagation %q; want host %s, readOnly %v, propagation %q",
				m.MountPath, host, m.ReadOnly, m.MountPropagation, want.hostPath, want.readOnly, want.propagation)
		}
		if m.MountPropagation == "Bidirectional" {
			t.Errorf("mount %s: Bidirectional needs a privileged container", m.MountPath)
		}
	}
	for path := range hostMounts {
		if !mounted[path] {
			t.Errorf("host's %s is not mounted", path)
		}
	}
	if len(hostPaths) != len(hostMounts) {
		t.Errorf("%d hostPath volumes %v, want %d", len(hostPaths), hostPaths, len(hostMounts))
	}
}

func TestDaemonSetRollout(t *testing.T) {
	ds, c := agent(t, manifests(t))
	u := ds.Spec.UpdateStrategy
	if u.Type != "RollingUpdate" || u.RollingUpdate.MaxUnavailable != 1 {
		t.Errorf("updateStrategy %+v, want RollingUpdate with maxUnavailable 1", u)
	}
	tol := ds.Spec.Template.Spec.Tolerations
	if !slices.ContainsFunc(tol, func(x toleration) bool {
		return x.Key == "" && x.Operator == "Exists" && x.Effect == ""
	}) {
		t.Errorf("tolerations %+v: want one that tolerates every taint (operator Exists, no key, no effect)", tol)
	}
	for _, r := range []string{"cpu", "memory"} {
		if c.Resources.Requests[r] == "" {
			t.Errorf("no %s request", r)
		}
	}
	if c.Resources.Limits["memory"] == "" {
		t.Error("no memory limit")
	}
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// TestAgentCommandLine checks the container's args against the flags
// tcpshift takes, and that every $(VAR) they use is defined.
func TestAgentCommandLine(t *testing.T) {
	byKind := manifests(t)
	_, c := agent(t, byKind)
	cm := one(t, byKind, "ConfigMap")
	if len(c.Command) != 1 || filepath.Base(c.Command[0]) != "tcpshift" {
		t.Errorf("command %v, want tcpshift", c.Command)
	}
	cmd := slices.Index(c.Args, "agent")
	if cmd < 0 {
		t.Fatalf("args %v: no agent command", c.Args)
	}
	values := map[string]string{}
	check := func(args, allowed []string, where string) {
		for _, a := range args {
			name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			if !strings.HasPrefix(a, "--") || !ok {
				t.Errorf("%s arg %q: want --flag=value", where, a)
				continue
			}
			if !slices.Contains(allowed, name) {
				t.Errorf("%s arg %q: --%s is not one of %v", where, a, name, allowed)
			}
			if _, dup := values[name]; dup {
				t.Errorf("--%s given twice", name)
			}
			values[name] = value
		}
	}
	check(c.Args[:cmd], globalFlags, "global")
	check(c.Args[cmd+1:], agentFlags, "agent")
	if values["node"] != "$(NODE_NAME)" {
		t.Errorf("--node=%q, want $(NODE_NAME)", values["node"])
	}

	defined := map[string]string{}
	for k, v := range cm.Data {
		defined[k] = v
	}
	for _, e := range c.Env {
		defined[e.Name] = e.Value
		if e.Name == "NODE_NAME" && e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
			t.Errorf("NODE_NAME from %q, want the downward API's spec.nodeName", e.ValueFrom.FieldRef.FieldPath)
		}
		if e.Name == "POD_NAMESPACE" && e.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
			t.Errorf("POD_NAMESPACE from %q, want the downward API's metadata.namespace", e.ValueFrom.FieldRef.FieldPath)
		}
	}
	used := map[string]bool{}
	for _, a := range c.Args {
		for _, m := range varRef.FindAllStringSubmatch(a, -1) {
			used[m[1]] = true
			if _, ok := defined[m[1]]; !ok {
				t.Errorf("arg %q: $(%s) is defined neither in env nor in ConfigMap %s", a, m[1], cm.Metadata.Name)
			}
		}
	}
	for k := range cm.Data {
		if !used[k] {
			t.Errorf("ConfigMap key %s is passed to no flag", k)
		}
	}
	// expand resolves $(VAR) as the kubelet does, from the ConfigMap.
	expand := func(s string) string {
		return varRef.ReplaceAllStringFunc(s, func(m string) string { return cm.Data[m[2:len(m)-1]] })
	}

	// --bpffs names the bpffs mount, --cgroup a directory under the cgroup mount.
	if got := expand(values["bpffs"]); hostMounts[got].hostPath != "/sys/fs/bpf" {
		t.Errorf("--bpffs=%q, want the bpffs mount /sys/fs/bpf", got)
	}
	if got := filepath.Clean(expand(values["cgroup"])); !strings.HasPrefix(got, "/sys/fs/cgroup/") {
		t.Errorf("--cgroup=%q, want the pod cgroup parent under the /sys/fs/cgroup mount", got)
	}
	if got := expand(values["only-routed"]); got != "true" && got != "false" {
		t.Errorf("--only-routed=%q, want true or false", got)
	}
	if got := expand(values["status"]); got != "true" {
		t.Errorf("--status=%q, want true (the Lease decides which agent writes)", got)
	}
	if values["lease-namespace"] != "$(POD_NAMESPACE)" {
		t.Errorf("--lease-namespace=%q, want $(POD_NAMESPACE): the Lease in the agent's namespace", values["lease-namespace"])
	}
}

// TestPortsAndProbes checks that the metrics port, its annotations and the
// probes agree with the addresses the agent is told to listen on.
func TestPortsAndProbes(t *testing.T) {
	byKind := manifests(t)
	ds, c := agent(t, byKind)
	cm := one(t, byKind, "ConfigMap")

	_, metricsPort := splitAddr(t, "METRICS_ADDR", cm.Data["METRICS_ADDR"])
	ann := ds.Spec.Template.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(metricsPort) || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("pod annotations %v, want prometheus.io scrape true, port %d, path /metrics", ann, metricsPort)
	}
	if !slices.ContainsFunc(c.Ports, func(p port) bool {
		return p.Name == "metrics" && p.ContainerPort == metricsPort
	}) {
		t.Errorf("ports %+v: want metrics on %d", c.Ports, metricsPort)
	}

	healthHost, healthPort := splitAddr(t, "HEALTH_ADDR", cm.Data["HEALTH_ADDR"])
	for _, p := range []struct {
		name, path string
		probe      *probe
	}{{"readiness", "/readyz", c.ReadinessProbe}, {"liveness", "/healthz", c.LivenessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", p.name)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path || g.Port != healthPort || g.Host != healthHost {
			t.Errorf("%s probe %+v, want path %s on %s port %d", p.name, *g, p.path, healthHost, healthPort)
		}
	}
}

// splitAddr splits a listen address; an empty host listens everywhere and
// the kubelet probes the pod's (the node's) address, which is Host "".
func splitAddr(t *testing.T, key, addr string) (string, int) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("ConfigMap %s=%q: %v", key, addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n <= 0 || n > 65535 {
		t.Fatalf("ConfigMap %s=%q: bad port", key, addr)
	}
	return host, n
}
