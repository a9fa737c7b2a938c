//go:build k8s

package k8s

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/test/k8s/cluster"
	"github.com/tcpshift/tcpshift/test/k8s/nodes"
	"github.com/tcpshift/tcpshift/test/k8s/repo"
)

// TestCluster proves the API server the agent's tests talk to: it keeps
// CRD objects whole, at every served version, and takes Services and
// EndpointSlices.
func TestCluster(t *testing.T) {
	start := time.Now()
	c := cluster.Start(t)
	t.Logf("cluster ready in %s", time.Since(start).Round(time.Millisecond))
	ctx := context.Background()
	t.Run("crds", func(t *testing.T) { checkCRDs(t, ctx, c) })
	t.Run("service", func(t *testing.T) { checkServiceAndSlice(t, ctx, c) })
	t.Run("pods", func(t *testing.T) { checkNodeAndPod(t, ctx, c) })
}

// TestNodes proves the simulated nodes and pods: pods on different nodes
// reach each other through the test's namespace with real bytes, from
// their own addresses and cgroups, and the nodes leave nothing behind.
func TestNodes(t *testing.T) {
	before := kernelState(t)
	t.Run("pods", func(t *testing.T) {
		start := time.Now()
		checkPods(t)
		t.Logf("3 nodes, 6 pods and their connections in %s", time.Since(start).Round(time.Millisecond))
	})
	// The subtest's cleanups have run: everything it made must be gone.
	// (Inherited mounts were dropped when the tests started; none may be new.)
	after := kernelState(t)
	after.Mounts = slices.DeleteFunc(after.Mounts, func(m string) bool { return slices.Contains(before.Mounts, m) })
	before.Mounts = nil
	if !reflect.DeepEqual(before, after) {
		t.Errorf("nodes left things behind:\nbefore %+v\nafter  %+v", before, after)
	}
}

func checkCRDs(t *testing.T, ctx context.Context, c *cluster.Cluster) {
	spec := map[string]any{
		"hosts": []any{"tcp-echo"},
		"tcp": []any{map[string]any{
			"match": []any{map[string]any{"port": int64(31400)}},
			"route": []any{
				map[string]any{"destination": map[string]any{"host": "tcp-echo", "subset": "v1", "port": map[string]any{"number": int64(9000)}}, "weight": int64(80)},
				map[string]any{"destination": map[string]any{"host": "tcp-echo", "subset": "v2", "port": map[string]any{"number": int64(9000)}}, "weight": int64(20)},
			},
		}},
	}
	vs := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "VirtualService",
		"metadata":   map[string]any{"name": "tcp-echo", "namespace": "default"},
		"spec":       spec,
	}}
	if _, err := c.Dynamic.Resource(cluster.VirtualServices).Namespace("default").Create(ctx, vs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Read back at the stored version and at an older served one.
	for _, version := range []string{"v1", "v1alpha3"} {
		gvr := cluster.VirtualServices
		gvr.Version = version
		got, err := c.Dynamic.Resource(gvr).Namespace("default").Get(ctx, "tcp-echo", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get VirtualService as %s: %v", version, err)
		}
		if got.GetAPIVersion() != "networking.istio.io/"+version {
			t.Errorf("apiVersion %s, want networking.istio.io/%s", got.GetAPIVersion(), version)
		}
		if !reflect.DeepEqual(got.Object["spec"], spec) {
			t.Errorf("VirtualService spec as %s came back as\n%v\nwant\n%v", version, got.Object["spec"], spec)
		}
	}
	// Every other CRD serves its kind: an empty list from each.
	for _, gvr := range []schema.GroupVersionResource{cluster.DestinationRules, cluster.ServiceEntries, cluster.WorkloadEntries, cluster.IstioGateways, cluster.TCPRoutes, cluster.Gateways} {
		list, err := c.Dynamic.Resource(gvr).Namespace("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Errorf("list %s: %v", gvr.GroupResource(), err)
		} else if len(list.Items) != 0 {
			t.Errorf("list %s: %d objects in a fresh cluster", gvr.GroupResource(), len(list.Items))
		}
	}
}

func checkServiceAndSlice(t *testing.T, ctx context.Context, c *cluster.Cluster) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "tcp-echo", Namespace: "default"},
		Spec: corev1.ServiceSpec{
			ClusterIP: "10.96.0.50",
			Selector:  map[string]string{"app": "tcp-echo"},
			Ports:     []corev1.ServicePort{{Name: "tcp", Protocol: corev1.ProtocolTCP, Port: 9000, TargetPort: intstr.FromInt32(9000)}},
		},
	}
	if _, err := c.Clientset.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := c.Clientset.CoreV1().Services("default").Get(ctx, "tcp-echo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.ClusterIP != "10.96.0.50" || len(got.Spec.Ports) != 1 || got.Spec.Ports[0].Port != 9000 {
		t.Errorf("Service came back as ClusterIP %s ports %+v", got.Spec.ClusterIP, got.Spec.Ports)
	}

	c.AddEndpointSlice(t, "default", "tcp-echo-1", "tcp-echo", "tcp", 9000,
		cluster.Endpoint{IP: "10.244.1.2", Node: "node1", Pod: "echo-1a", Ready: true},
		cluster.Endpoint{IP: "10.244.3.3", Node: "node3", Pod: "echo-3b", Ready: true})
	list, err := c.Clientset.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=tcp-echo"})
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			addrs = append(addrs, e.Addresses...)
		}
	}
	if want := []string{"10.244.1.2", "10.244.3.3"}; !reflect.DeepEqual(addrs, want) {
		t.Errorf("EndpointSlices for tcp-echo hold %v, want %v", addrs, want)
	}
}

// checkNodeAndPod registers a node and a running pod as a kubelet would,
// and an informer sees the pod become ready and unready.
func checkNodeAndPod(t *testing.T, ctx context.Context, c *cluster.Cluster) {
	node := c.AddNode(t, "node1", []string{"10.244.1.0/24", "fd00:244:1::/64"}, "10.250.1.2", "fd00:250:1::2")
	if len(node.Status.Addresses) != 2 || node.Status.Conditions[0].Type != corev1.NodeReady {
		t.Errorf("node came back as %+v", node.Status)
	}
	// An informer, as the agent runs them, sees the pod created, running
	// and ready, then unready.
	events := make(chan string, 10)
	factory := informers.NewSharedInformerFactory(c.Clientset, 0)
	_, err := factory.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { events <- podEvent("add", obj.(*corev1.Pod)) },
		UpdateFunc: func(_, obj any) { events <- podEvent("update", obj.(*corev1.Pod)) },
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer func() { close(stop); factory.Shutdown() }()
	factory.Start(stop)
	synced := factory.WaitForCacheSync(stop)
	for typ, ok := range synced {
		if !ok {
			t.Fatalf("informer for %v did not sync", typ)
		}
	}
	// A plain watch from now, as kubectl get -w does.
	watch, err := c.Clientset.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Stop()
	pod := c.AddPod(t, "default", "echo-1a", "node1", map[string]string{"app": "tcp-echo", "version": "v1"}, "10.244.1.2", "fd00:244:1::2")
	if pod.Status.PodIP != "10.244.1.2" || len(pod.Status.PodIPs) != 2 || pod.Status.Phase != corev1.PodRunning || pod.Spec.NodeName != "node1" {
		t.Errorf("pod came back as node %s, status %+v", pod.Spec.NodeName, pod.Status)
	}
	c.SetPodReady(t, "default", "echo-1a", false)
	select {
	case ev := <-watch.ResultChan():
		if p, ok := ev.Object.(*corev1.Pod); !ok || ev.Type != "ADDED" || p.Name != "echo-1a" {
			t.Errorf("the watch's first event: %s %+v", ev.Type, ev.Object)
		}
	case <-time.After(10 * time.Second):
		t.Error("the watch saw nothing")
	}
	var seen []string
	for len(seen) < 3 {
		select {
		case ev := <-events:
			seen = append(seen, ev)
		case <-time.After(10 * time.Second):
			t.Fatalf("the informer saw only %v", seen)
		}
	}
	want := []string{"add  ready=false", "update 10.244.1.2 ready=true", "update 10.244.1.2 ready=false"}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("the informer saw %v, want %v", seen, want)
	}
}

func podEvent(what string, p *corev1.Pod) string {
	return fmt.Sprintf("%s %s ready=%v", what, p.Status.PodIP, podReady(p))
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// checkPods makes 3 nodes with 2 pods each running tcp-echo, and checks
// that a pod on node 1 reaches every pod, those on node 3 included, over
// IPv4 and IPv6, with its own address and from its own cgroup.
func checkPods(t *testing.T) {
	echo, err := repo.Bin("tcp-echo")
	if err != nil {
		t.Fatal(err)
	}
	var pods []*nodes.Pod
	for i := 1; i <= 3; i++ {
		node := nodes.NewNode(t, fmt.Sprintf("node%d", i), i)
		for _, suffix := range []string{"a", "b"} {
			pod := node.NewPod(fmt.Sprintf("echo-%d%s", i, suffix))
			pod.Start(echo, "9000", pod.Name) // Istio's form: PORTS PREFIX
			pods = append(pods, pod)
		}
	}
	for _, pod := range pods {
		pod.WaitListening(pod.IP.String() + ":9000")
		pod.WaitListening(net.JoinHostPort(pod.IP6.String(), "9000"))
	}

	client := pods[0] // on node1
	root, err := loader.CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	wantCgroup := strings.TrimPrefix(client.Cgroup, root)
	for _, server := range pods {
		for _, ip := range []net.IP{server.IP, server.IP6} {
			addr := net.JoinHostPort(ip.String(), "9000")
			a, err := client.Ask(addr)
			if err != nil {
				t.Fatalf("%s to %s (%s): %v", client.Name, server.Name, addr, err)
			}
			if a.Prefix != server.Name {
				t.Errorf("%s to %s: answered by %q", client.Name, addr, a.Prefix)
			}
			if a.Peer != netip.MustParseAddrPort(addr) {
				t.Errorf("%s to %s: getpeername %s", client.Name, addr, a.Peer)
			}
			from := client.IP
			if ip.To4() == nil {
				from = client.IP6
			}
			if a.Local.Addr() != netip.MustParseAddr(from.String()) {
				t.Errorf("%s to %s: from %s, want the pod's address %s", client.Name, addr, a.Local.Addr(), from)
			}
			if a.Cgroup != wantCgroup {
				t.Errorf("%s to %s: the client ran in cgroup %s, want %s", client.Name, addr, a.Cgroup, wantCgroup)
			}
		}
	}

	// Many connections from one client process, and a socket handed over.
	far := pods[5] // on node3
	if got := client.Count(far.IP.String()+":9000", 20); !reflect.DeepEqual(got, map[string]int{far.Name: 20}) {
		t.Errorf("20 connections to %s: %v", far.Name, got)
	}
	conn, err := client.Dial(far.IP.String() + ":9000")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.RemoteAddr().String(); got != far.IP.String()+":9000" {
		t.Errorf("dialled socket's peer %s", got)
	}
	fmt.Fprintf(conn, "ping\n")
	buf := make([]byte, 64)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != far.Name+" ping\n" {
		t.Errorf("over the dialled socket: %q, %v", buf[:n], err)
	}
}

// kernelState is what nodes make and must remove: links of the test's
// namespace, bpffs and nsfs mounts, network namespaces the test process
// holds, cgroups under the nodes' parent.
type state struct {
	Links, Mounts, Netns, Cgroups []string
}

func kernelState(t *testing.T) state {
	t.Helper()
	var s state
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		s.Links = append(s.Links, l.Attrs().Name)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mi), "\n") {
		if _, fs, ok := strings.Cut(line, " - "); ok && (strings.HasPrefix(fs, "bpf ") || strings.HasPrefix(fs, "nsfs ")) {
			s.Mounts = append(s.Mounts, line)
		}
	}
	fds, _ := filepath.Glob("/proc/self/fd/*")
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil && strings.HasPrefix(target, "net:") {
			s.Netns = append(s.Netns, target)
		}
	}
	slices.Sort(s.Netns)
	err = filepath.WalkDir(nodes.ParentCgroup(), func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			s.Cgroups = append(s.Cgroups, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestNodeFlags proves that tcpshift, run as a separate process with a
// node's Flags, acts on that node: its pinned state lands in the node's
// bpffs and its connect hooks on the node's cgroup, and down removes both.
func TestNodeFlags(t *testing.T) {
	bin, err := repo.Bin("tcpshift")
	if err != nil {
		t.Fatal(err)
	}
	node := nodes.NewNode(t, "node1", 1)
	config := filepath.Join(t.TempDir(), "routes.yaml")
	err = os.WriteFile(config, []byte(`services:
- name: tcp-echo
  listen: 10.96.0.50:9000
  mode: connect
  subsets:
    v1: {endpoints: [10.244.3.2:9000]}
    v2: {endpoints: [10.244.3.3:9000]}
  route:
  - {subset: v1, weight: 80}
  - {subset: v2, weight: 20}
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	tcpshift := func(args ...string) {
		t.Helper()
		out, err := exec.Command(bin, append(node.Flags(), args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tcpshift %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	fresh := entries(t, node.BPFFS) // a new bpffs holds the kernel's maps.debug and progs.debug
	tcpshift("apply", "-f", config)
	if pins := entries(t, node.BPFFS); len(pins) <= len(fresh) {
		t.Errorf("apply pinned nothing in the node's bpffs: %v", pins)
	}
	if n := testenv.CgroupPrograms(t, node.Cgroup, ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupInet6Connect); n != 2 {
		t.Errorf("%d connect programs on the node's cgroup after apply, want 2 (connect4, connect6)", n)
	}
	tcpshift("down")
	if pins := entries(t, node.BPFFS); !reflect.DeepEqual(pins, fresh) {
		t.Errorf("down left %v in the node's bpffs, a fresh one holds %v", pins, fresh)
	}
	if n := testenv.CgroupPrograms(t, node.Cgroup, ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupInet6Connect); n != 0 {
		t.Errorf("%d connect programs on the node's cgroup after down", n)
	}
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}
