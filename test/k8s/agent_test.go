//go:build k8s

package k8s

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/test/k8s/cluster"
	"github.com/tcpshift/tcpshift/test/k8s/nodes"
	"github.com/tcpshift/tcpshift/test/k8s/repo"
)

const (
	clusterIP = "10.96.0.50"
	frontend  = clusterIP + ":9000"
)

// echoPod is a tcp-echo backend: a process in a pod on a node, and the Pod
// object the cluster knows it by.
type echoPod struct {
	pod     *nodes.Pod
	version string
	prefix  string
}

func (e echoPod) endpoint(ready, terminating bool) cluster.Endpoint {
	return cluster.Endpoint{IP: e.pod.IP.String(), Node: e.pod.Node.Name, Pod: e.pod.Name, Ready: ready, Terminating: terminating}
}

// world is the agent tests' cluster: three nodes, each with an agent and a
// client pod, and tcp-echo's pods.
type world struct {
	t        *testing.T // the whole test's: agents outlive subtests
	c        *cluster.Cluster
	nodes    []*nodes.Node
	clients  []*nodes.Pod
	agents   []*nodes.Process
	targets  []*loader.Target
	echoes   []echoPod
	tcpshift string
	tcpEcho  string
}

func newWorld(t *testing.T) *world {
	w := &world{t: t, c: cluster.Start(t)}
	var err error
	if w.tcpshift, err = repo.Bin("tcpshift"); err != nil {
		t.Fatal(err)
	}
	if w.tcpEcho, err = repo.Bin("tcp-echo"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		n := nodes.NewNode(t, fmt.Sprintf("node%d", i), i)
		w.c.AddNode(t, n.Name, []string{n.PodCIDR.String()}, n.IP.String())
		w.nodes = append(w.nodes, n)
		w.clients = append(w.clients, n.NewPod("sleep"))
		// The agent's state goes with the test (after the agent stops).
		t.Cleanup(func() {
			out, err := exec.Command(w.tcpshift, append(n.Flags(), "down", "--force")...).CombinedOutput()
			if err != nil {
				t.Errorf("%s: tcpshift down: %v\n%s", n.Name, err, out)
			}
		})
		tg, err := loader.Open(n.Netns, n.BPFFS, n.Cgroup)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tg.Close() })
		w.targets = append(w.targets, tg)
	}
	return w
}

// addEcho runs a tcp-echo pod on node i (0-based) answering with prefix,
// and creates its Pod object with labels app and version.
func (w *world) addEcho(t *testing.T, i int, name, version, prefix string) echoPod {
	p := w.nodes[i].NewPod(name)
	p.Start(w.tcpEcho, "9000", prefix)
	p.WaitListening(p.IP.String() + ":9000")
	w.c.AddPod(t, "default", name, w.nodes[i].Name, map[string]string{"app": "tcp-echo", "version": version}, p.IP.String())
	e := echoPod{pod: p, version: version, prefix: prefix}
	w.echoes = append(w.echoes, e)
	return e
}

// startAgent runs node i's agent and waits until its first sync is in force.
func (w *world) startAgent(t *testing.T, i int) {
	n := w.nodes[i]
	health := fmt.Sprintf("127.0.0.1:%d", 19870+i)
	argv := append([]string{w.tcpshift}, n.Flags()...)
	argv = append(argv, "agent", "--node", n.Name, "--kubeconfig", w.c.Kubeconfig, "--health-addr", health, "--log-level", "debug",
		"--metrics-addr", fmt.Sprintf("127.0.0.1:%d", 19890+i))
	pr := nodes.Start(w.t, argv...)
	if i < len(w.agents) {
		w.agents[i] = pr
	} else {
		w.agents = append(w.agents, pr)
	}
	waitReady(t, pr, health, 60*time.Second)
}

// httpClient asks the agents' health and metrics endpoints: its timeout
// bounds an agent that accepts and never answers.
var httpClient = &http.Client{Timeout: 2 * time.Second}

// waitReady waits until an agent's /readyz answers 200.
func waitReady(t *testing.T, pr *nodes.Process, health string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := httpClient.Get("http://" + health + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if pr.Exited() || time.Now().After(deadline) {
			log, _ := os.ReadFile(pr.Log)
			t.Fatalf("agent not ready (exited %v):\n%s", pr.Exited(), log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// table describes a service in force on node i, "" when it has none:
// "v1=80[10.244.1.2:9000] v2=20[...]".
func (w *world) table(t *testing.T, i int, service string) string {
	st, err := w.targets[i].Status("")
	if err != nil {
		t.Fatalf("%s: status: %v", w.nodes[i].Name, err)
	}
	for _, s := range st.Services {
		if s.Name != service {
			continue
		}
		var parts []string
		for _, sub := range s.Subsets {
			var eps []string
			for _, ep := range sub.Endpoints {
				eps = append(eps, ep.Address)
			}
			slices.Sort(eps)
			parts = append(parts, fmt.Sprintf("%s=%d[%s]", sub.Name, sub.Weight, strings.Join(eps, " ")))
		}
		return strings.Join(parts, " ")
	}
	return ""
}

// waitTables waits until every node has want for tcp-echo and returns how
// long that took from since.
func (w *world) waitTables(t *testing.T, since time.Time, want string) time.Duration {
	t.Helper()
	deadline := since.Add(30 * time.Second)
	for {
		all := true
		var got []string
		for i := range w.nodes {
			tb := w.table(t, i, "tcp-echo")
			got = append(got, tb)
			all = all && tb == want
		}
		if all {
			return time.Since(since)
		}
		if time.Now().After(deadline) {
			t.Fatalf("tables not in force after 30 s:\n got %q\nwant %q", got, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (w *world) eps(list ...string) string {
	var s []string
	for _, e := range w.echoes {
		if slices.Contains(list, e.pod.Name) {
			s = append(s, e.pod.IP.String()+":9000")
		}
	}
	slices.Sort(s)
	return strings.Join(s, " ")
}

// apply creates or replaces an Istio object from YAML.
func (w *world) apply(t *testing.T, text string) {
	t.Helper()
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(text), &obj); err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: obj}
	gvr := cluster.VirtualServices
	if u.GetKind() == "DestinationRule" {
		gvr = cluster.DestinationRules
	}
	ctx := context.Background()
	res := w.c.Dynamic.Resource(gvr).Namespace("default")
	if _, err := res.Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create %s: %v", u.GetKind(), err)
	}
}

// setWeights patches the VirtualService's two weights.
func (w *world) setWeights(t *testing.T, v1, v2 int) time.Time {
	t.Helper()
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"tcp": []any{map[string]any{"route": []any{
		map[string]any{"destination": map[string]any{"host": "tcp-echo", "port": map[string]any{"number": 9000}, "subset": "v1"}, "weight": v1},
		map[string]any{"destination": map[string]any{"host": "tcp-echo", "port": map[string]any{"number": 9000}, "subset": "v2"}, "weight": v2},
	}}}}})
	start := time.Now()
	if _, err := w.c.Dynamic.Resource(cluster.VirtualServices).Namespace("default").Patch(context.Background(), "tcp-echo", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch VirtualService: %v", err)
	}
	return start
}

const destinationRule = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tcp-echo-destination, namespace: default}
spec:
  host: tcp-echo
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`

const virtualService = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo, namespace: default}
spec:
  hosts: [tcp-echo]
  tcp:
  - route:
    - destination: {host: tcp-echo, port: {number: 9000}, subset: v1}
      weight: 100
    - destination: {host: tcp-echo, port: {number: 9000}, subset: v2}
      weight: 0
`

// countAll makes n connections from every node's client pod and checks
// each split is exactly want, and that getpeername shows the ClusterIP.
func (w *world) countAll(t *testing.T, n int, want map[string]int) {
	t.Helper()
	for i, cl := range w.clients {
		answers, err := cl.AskN(frontend, n)
		if err != nil {
			t.Fatalf("%s: %v", w.nodes[i].Name, err)
		}
		got := map[string]int{}
		for _, a := range answers {
			got[a.Prefix]++
			if a.Peer.String() != frontend {
				t.Fatalf("%s: getpeername %s, want the ClusterIP %s", w.nodes[i].Name, a.Peer, frontend)
			}
		}
		if !maps.Equal(got, want) {
			t.Fatalf("%s: %d connections split %v, want %v", w.nodes[i].Name, n, got, want)
		}
	}
}

// TestAgent is Istio's tcp-echo task in a cluster of three nodes: pods'
// connections to the Service's ClusterIP split exactly by the
// VirtualService's weights on every node, in the kernel.
func TestAgent(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	v1 := w.addEcho(t, 0, "tcp-echo-v1-a", "v1", "one")
	v2 := w.addEcho(t, 1, "tcp-echo-v2-a", "v2", "two-a")
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "tcp-echo", Namespace: "default"},
		Spec: corev1.ServiceSpec{
			ClusterIP: clusterIP,
			Selector:  map[string]string{"app": "tcp-echo"},
			Ports:     []corev1.ServicePort{{Name: "tcp", Port: 9000, Protocol: corev1.ProtocolTCP}},
		},
	}
	if _, err := w.c.Clientset.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.c.AddEndpointSlice(t, "default", "tcp-echo-abc", "tcp-echo", "tcp", 9000, v1.endpoint(true, false), v2.endpoint(true, false))
	w.apply(t, destinationRule)
	w.apply(t, virtualService)
	for i := range w.nodes {
		w.startAgent(t, i)
	}

	start := time.Now()
	w.waitTables(t, start, fmt.Sprintf("v1=100[%s] v2=0[%s]", w.eps("tcp-echo-v1-a"), w.eps("tcp-echo-v2-a")))
	w.countAll(t, 100, map[string]int{"one": 100})

	// Istio's tcp-echo-20-v2.yaml, as a patch.
	took := w.waitTables(t, w.setWeights(t, 80, 20), fmt.Sprintf("v1=80[%s] v2=20[%s]", w.eps("tcp-echo-v1-a"), w.eps("tcp-echo-v2-a")))
	t.Logf("80/20 in force on every node %s after the patch", took.Round(time.Millisecond))
	w.countAll(t, 100, map[string]int{"one": 80, "two-a": 20})

	t.Run("patch latency", func(t *testing.T) { patchLatency(t, w) })
	t.Run("scale v2", func(t *testing.T) { scaleV2(t, w, v1, v2) })
	t.Run("agent restart", func(t *testing.T) { agentRestart(t, w) })
	t.Run("API server restart", func(t *testing.T) { apiServerRestart(t, w) })
}

// patchLatency measures, over 50 patches, the time from a VirtualService
// patch to every node's table in force.
func patchLatency(t *testing.T, w *world) {
	e1, e2 := w.eps("tcp-echo-v1-a"), w.eps("tcp-echo-v2-a")
	var took []time.Duration
	for i := range 50 {
		a := 70 + 10*(i%2)
		took = append(took, w.waitTables(t, w.setWeights(t, a, 100-a), fmt.Sprintf("v1=%d[%s] v2=%d[%s]", a, e1, 100-a, e2)))
	}
	slices.Sort(took)
	p50, p99 := took[len(took)/2], took[len(took)*99/100]
	report(t, fmt.Sprintf("patch to every node's table in force, 50 patches, 3 nodes: p50 %s, p99 %s, max %s",
		p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond), took[len(took)-1].Round(100*time.Microsecond)))
	for i := range w.nodes {
		lag, syncs := agentMetric(t, i, "tcpshift_agent_event_to_applied_seconds"), agentMetric(t, i, "tcpshift_agent_sync_seconds")
		report(t, fmt.Sprintf("%s's agent: first event of a burst to its tables in force %.1f ms on average, of which deriving and applying %.1f ms (its metrics)",
			w.nodes[i].Name, lag*1000, syncs*1000))
	}
	w.waitTables(t, w.setWeights(t, 80, 20), fmt.Sprintf("v1=80[%s] v2=20[%s]", e1, e2))
}

// report logs a measurement and keeps it in $TCPSHIFT_K8S_REPORT, if set.
func report(t *testing.T, line string) {
	t.Log(line)
	if p := os.Getenv("TCPSHIFT_K8S_REPORT"); p != "" {
		os.MkdirAll(filepath.Dir(p), 0o755)
		f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintln(f, line)
			f.Close()
		}
	}
}

// scaleV2 scales v2 from 1 to 3 pods (v2 keeps its share), then one of them
// terminates (no new connections; its open one drains and is counted), then
// it is deleted (out of every node's table).
func scaleV2(t *testing.T, w *world, v1, v2a echoPod) {
	v2b := w.addEcho(t, 2, "tcp-echo-v2-b", "v2", "two-b")
	v2c := w.addEcho(t, 2, "tcp-echo-v2-c", "v2", "two-c")
	start := time.Now()
	w.c.SetEndpoints(t, "default", "tcp-echo-abc", v1.endpoint(true, false), v2a.endpoint(true, false), v2b.endpoint(true, false), v2c.endpoint(true, false))
	e1, all2 := w.eps("tcp-echo-v1-a"), w.eps("tcp-echo-v2-a", "tcp-echo-v2-b", "tcp-echo-v2-c")
	took := w.waitTables(t, start, fmt.Sprintf("v1=80[%s] v2=20[%s]", e1, all2))
	report(t, fmt.Sprintf("v2 scaled 1 -> 3 pods: in force on every node %s after the EndpointSlice update", took.Round(100*time.Microsecond)))
	// 20 of 100 to v2, taken in turns by its three pods.
	w.countAll(t, 105, map[string]int{"one": 84, "two-a": 7, "two-b": 7, "two-c": 7})

	// Hold a connection to v2-c from node 1's client, then v2-c terminates.
	var held []*heldConn
	for len(held) == 0 || held[len(held)-1].prefix != "two-c" {
		h := hold(t, w.clients[0])
		held = append(held, h)
		if len(held) > 50 {
			t.Fatal("no connection reached tcp-echo-v2-c in 50")
		}
	}
	for _, h := range held[:len(held)-1] {
		h.c.Close()
	}
	drain := held[len(held)-1]
	defer drain.c.Close()
	start = time.Now()
	w.c.SetEndpoints(t, "default", "tcp-echo-abc", v1.endpoint(true, false), v2a.endpoint(true, false), v2b.endpoint(true, false), v2c.endpoint(false, true))
	two := w.eps("tcp-echo-v2-a", "tcp-echo-v2-b")
	took = w.waitTables(t, start, fmt.Sprintf("v1=80[%s] v2=20[%s] terminating=0[%s]", e1, two, w.eps("tcp-echo-v2-c")))
	report(t, fmt.Sprintf("a terminating pod at weight 0 on every node %s after the EndpointSlice update", took.Round(100*time.Microsecond)))
	w.countAll(t, 100, map[string]int{"one": 80, "two-a": 10, "two-b": 10})
	if got := drain.ask(t); got != "two-c" {
		t.Fatalf("the held connection to the terminating pod answered %q", got)
	}
	if a := activeOf(t, w, 0, "terminating", v2c); a != 1 {
		t.Fatalf("node1 shows %d active connections on the terminating pod, want the held one", a)
	}

	// Deleted: the pod leaves the EndpointSlice and every table.
	start = time.Now()
	w.c.SetEndpoints(t, "default", "tcp-echo-abc", v1.endpoint(true, false), v2a.endpoint(true, false), v2b.endpoint(true, false))
	if err := w.c.Clientset.CoreV1().Pods("default").Delete(context.Background(), v2c.pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	took = w.waitTables(t, start, fmt.Sprintf("v1=80[%s] v2=20[%s]", e1, two))
	report(t, fmt.Sprintf("a deleted pod out of every node's table %s after the EndpointSlice update", took.Round(100*time.Microsecond)))
}

type heldConn struct {
	c      *net.TCPConn
	prefix string
}

func hold(t *testing.T, p *nodes.Pod) *heldConn {
	c, err := p.Dial(frontend)
	if err != nil {
		t.Fatal(err)
	}
	h := &heldConn{c: c}
	h.prefix = h.ask(t)
	return h
}

// ask sends a line and returns the prefix the backend answered with.
func (h *heldConn) ask(t *testing.T) string {
	h.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := h.c.Write([]byte("hello\n")); err != nil {
		t.Fatalf("held connection: %v", err)
	}
	buf := make([]byte, 256)
	n, err := h.c.Read(buf)
	if err != nil {
		t.Fatalf("held connection: %v", err)
	}
	prefix, _, _ := strings.Cut(strings.TrimSpace(string(buf[:n])), " ")
	return prefix
}

func activeOf(t *testing.T, w *world, node int, subset string, e echoPod) uint64 {
	st, err := w.targets[node].Status("tcp-echo")
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range st.Services[0].Subsets {
		for _, ep := range sub.Endpoints {
			if sub.Name == subset && ep.Address == e.pod.IP.String()+":9000" {
				return ep.Active
			}
		}
	}
	t.Fatalf("no endpoint %s in subset %s", e.pod.Name, subset)
	return 0
}

// agentRestart kills node 1's agent under a client loop: no connection
// fails (the state is pinned), and the new agent resyncs to the same table.
func agentRestart(t *testing.T, w *world) {
	before := w.table(t, 0, "tcp-echo")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failures, made int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			answers, err := w.clients[0].AskN(frontend, 10)
			made += len(answers)
			if err != nil {
				failures++
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	w.agents[0].Cmd.Process.Kill()
	time.Sleep(time.Second)
	w.startAgent(t, 0)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failures != 0 || made == 0 {
		t.Fatalf("%d failed batches, %d connections made across the agent's kill and restart", failures, made)
	}
	if after := w.table(t, 0, "tcp-echo"); after != before {
		t.Fatalf("after the restart: %s, want %s", after, before)
	}
	report(t, fmt.Sprintf("agent killed and restarted under a client loop: %d connections, 0 failed", made))
	// The new agent follows the cluster.
	e1, e2 := w.eps("tcp-echo-v1-a"), w.eps("tcp-echo-v2-a", "tcp-echo-v2-b")
	w.waitTables(t, w.setWeights(t, 50, 50), fmt.Sprintf("v1=50[%s] v2=50[%s]", e1, e2))
	w.waitTables(t, w.setWeights(t, 80, 20), fmt.Sprintf("v1=80[%s] v2=20[%s]", e1, e2))
}

// apiServerRestart stops the API server: the agents keep the tables in force
// untouched while it is away, and follow a change made once it is back.
func apiServerRestart(t *testing.T, w *world) {
	var before []string
	for i := range w.nodes {
		before = append(before, w.table(t, i, "tcp-echo"))
	}
	w.c.StopAPIServer(t)
	time.Sleep(3 * time.Second)
	for i := range w.nodes {
		if got := w.table(t, i, "tcp-echo"); got != before[i] {
			t.Fatalf("%s: table changed while the API server was away: %s, was %s", w.nodes[i].Name, got, before[i])
		}
		if w.agents[i].Exited() {
			t.Fatalf("%s: the agent exited while the API server was away", w.nodes[i].Name)
		}
	}
	w.countAll(t, 10, map[string]int{"one": 8, "two-a": 1, "two-b": 1})
	w.c.StartAPIServer(t)
	e1, e2 := w.eps("tcp-echo-v1-a"), w.eps("tcp-echo-v2-a", "tcp-echo-v2-b")
	took := w.waitTables(t, w.setWeights(t, 0, 100), fmt.Sprintf("v1=0[%s] v2=100[%s]", e1, e2))
	report(t, fmt.Sprintf("after an API server restart, a patch in force on every node in %s", took.Round(time.Millisecond)))
	w.countAll(t, 10, map[string]int{"two-a": 5, "two-b": 5})
}

// agentMetric is the mean of one of node i's agent's histograms (sum/count).
func agentMetric(t *testing.T, i int, name string) float64 {
	resp, err := httpClient.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", 19890+i))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum, count float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case name + "_sum":
			sum = v
		case name + "_count":
			count = v
		}
	}
	if count == 0 {
		t.Fatalf("agent %d: no %s", i, name)
	}
	return sum / count
}
