//go:build k8s

// Package cluster runs a real Kubernetes control plane for a test: Debian's
// etcd and a kube-apiserver built from the module proxy
// (scripts/kube-apiserver.sh), both on 127.0.0.1 of the test's own network
// namespace, with tcpshift's CRDs (deploy/crds) installed. There is no
// scheduler, controller manager or kubelet: the test writes Services,
// EndpointSlices and Pods itself, as those would.
package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ServiceCIDR is the API server's --service-cluster-ip-range: a Service's
// ClusterIP is allocated from it (or must lie in it when given).
const ServiceCIDR = "10.96.0.0/16"

// startTimeout bounds etcd's and the API server's start, on a busy machine.
const startTimeout = 90 * time.Second

// Cluster is a running API server, with clients logged in as an admin
// (group system:masters).
type Cluster struct {
	Clientset  *kubernetes.Clientset
	Dynamic    *dynamic.DynamicClient
	Config     *rest.Config
	Kubeconfig string // a kubeconfig file for the admin, for tcpshift agent --kubeconfig and kubectl
	URL        string // https://127.0.0.1:PORT
	Token      string // the admin's bearer token

	// How the API server was started, to start it again.
	apiserver *process
	bin, dir  string
	args      []string
	restarts  int
}

// Start runs etcd and kube-apiserver for the test, waits until the server
// is ready and the CRDs are established, and stops both and removes their
// files when the test ends. Logs stay in the test's temp dir; their last
// lines are printed if the test fails. A missing part fails the test.
func Start(t testing.TB) *Cluster {
	t.Helper()
	requireOwnNetns(t)
	etcdBin := etcdBinary(t)
	apiserverBin := apiserverBinary(t)
	dir := t.TempDir()

	etcd, etcdURL := startEtcd(t, etcdBin, dir)
	c, apiserver := startAPIServer(t, apiserverBin, dir, etcdURL)
	t.Cleanup(func() {
		logTail(t, etcd, c.apiserver)
		c.apiserver.stop(15 * time.Second)
		etcd.stop(10 * time.Second)
	})
	if err := waitReady(c, apiserver); err != nil {
		t.Fatal(err)
	}
	if err := installCRDs(context.Background(), c.Dynamic); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver at %s, kubeconfig %s (network namespace of pid %d)", c.URL, c.Kubeconfig, os.Getpid())
	return c
}

func etcdBinary(t testing.TB) string {
	if p := os.Getenv("TCPSHIFT_ETCD"); p != "" {
		return p
	}
	p, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatal("etcd is missing: run scripts/install-deps.sh k8s (or set TCPSHIFT_ETCD)")
	}
	return p
}

func apiserverBinary(t testing.TB) string {
	p := os.Getenv("TCPSHIFT_KUBE_APISERVER")
	if p == "" {
		t.Fatal("TCPSHIFT_KUBE_APISERVER is not set: run make k8s-test, or set it to what scripts/kube-apiserver.sh prints")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("kube-apiserver: %v", err)
	}
	return p
}

// requireOwnNetns fails unless the test process runs in the network
// namespace nodes.Main made for it (a namespace of its own, not its
// parent's): servers on 127.0.0.1 and routes the tests add stay there.
func requireOwnNetns(t testing.TB) {
	self, err1 := os.Readlink("/proc/self/ns/net")
	parent, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", os.Getppid()))
	if os.Getenv("TCPSHIFT_K8S_ISOLATED") == "" || err1 != nil || err2 != nil || self == parent {
		t.Fatalf("the test must run in a network namespace of its own: the package's TestMain must call nodes.Main(m) (%v %v)", err1, err2)
	}
}

// freePort picks an unused port on 127.0.0.1 (the namespace is the test's
// own, so nothing else races for it).
func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func startEtcd(t testing.TB, bin, dir string) (*process, string) {
	client := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	metrics := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	p, err := startProcess("etcd", dir, bin,
		"--name=test",
		"--data-dir="+filepath.Join(dir, "etcd-data"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=test="+peer,
		"--listen-metrics-urls="+metrics,
		"--logger=zap", "--log-outputs=stderr",
	)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	healthy := func() error {
		req, _ := http.NewRequest(http.MethodGet, client+"/health", nil)
		return statusOK(hc, req)
	}
	if err := waitFor(p, "etcd at "+client, healthy); err != nil {
		p.stop(time.Second)
		t.Errorf("%v\n%s", err, p.tail(40))
		t.FailNow()
	}
	return p, client
}

func startAPIServer(t testing.TB, bin, dir, etcdURL string) (*Cluster, *process) {
	certs := filepath.Join(dir, "certs")
	if err := os.Mkdir(certs, 0o700); err != nil {
		t.Fatal(err)
	}
	crt, key := filepath.Join(certs, "apiserver.crt"), filepath.Join(certs, "apiserver.key")
	caPEM, err := writeServingCert(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	saKey := filepath.Join(certs, "service-account.key")
	if err := writeServiceAccountKey(saKey); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(certs, "tokens.csv")
	token, err := writeTokenFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--etcd-prefix=/registry",
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + certs,
		"--tls-cert-file=" + crt,
		"--tls-private-key-file=" + key,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--token-auth-file=" + tokenFile,
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=" + ServiceCIDR,
		// No kubelet or controllers: nothing would keep the kubernetes
		// Service's endpoints, and no controller makes the default
		// ServiceAccount that its admission plugin wants for every Pod.
		"--endpoint-reconciler-type=none",
		"--disable-admission-plugins=ServiceAccount",
		// etcd 3.4 sends no progress notifications, so the watch cache of
		// a resource nobody wrote since the start stays at an old revision
		// and a watch from "now" (resourceVersion "") fails with "Too large
		// resource version". Serving from etcd has no such gap.
		"--watch-cache=false",
	}
	p, err := startProcess("kube-apiserver", dir, bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{URL: fmt.Sprintf("https://127.0.0.1:%d", port), Token: token, apiserver: p, bin: bin, dir: dir, args: args}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, c.URL, token, caPEM); err != nil {
		p.stop(time.Second)
		t.Fatal(err)
	}
	if err := c.connect(); err != nil {
		p.stop(time.Second)
		t.Fatal(err)
	}
	return c, p
}

// writeKubeconfig writes one cluster, user and context, all named "test".
func writeKubeconfig(path, url, token string, caPEM []byte) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: url, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["test"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test", Namespace: "default"}
	cfg.CurrentContext = "test"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// connect makes the clients from the kubeconfig, as the agent will.
func (c *Cluster) connect() error {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return fmt.Errorf("read kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 200, 400 // tests create objects in bursts
	c.Config = cfg
	if c.Clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	c.Dynamic, err = dynamic.NewForConfig(cfg)
	return err
}

// waitReady waits for /readyz to answer ok.
func waitReady(c *Cluster, p *process) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.Config.TLSClientConfig.CAData)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	ready := func() error {
		req, _ := http.NewRequest(http.MethodGet, c.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+c.Token)
		return statusOK(client, req)
	}
	return waitFor(p, "kube-apiserver at "+c.URL, ready)
}

// statusOK makes req and wants 200 OK back; the client's timeout bounds a
// server that accepts and never answers.
func statusOK(c *http.Client, req *http.Request) error {
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", req.URL.Path, resp.Status)
	}
	return nil
}

// waitFor polls check until it passes, the process exits or startTimeout.
func waitFor(p *process, what string, check func() error) error {
	deadline := time.Now().Add(startTimeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if done, werr := p.exited(); done {
			return fmt.Errorf("%s exited while starting (%v); log %s", what, werr, p.log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %v; log %s", what, startTimeout, err, p.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// StopAPIServer stops the API server; etcd keeps the cluster's state.
func (c *Cluster) StopAPIServer(t testing.TB) {
	t.Helper()
	c.apiserver.stop(15 * time.Second)
}

// StartAPIServer starts the API server again, on the same port with the
// same certificates and tokens, and waits until it is ready.
func (c *Cluster) StartAPIServer(t testing.TB) {
	t.Helper()
	c.restarts++
	p, err := startProcess(fmt.Sprintf("kube-apiserver-%d", c.restarts+1), c.dir, c.bin, c.args...)
	if err != nil {
		t.Fatal(err)
	}
	c.apiserver = p
	if err := waitReady(c, p); err != nil {
		t.Fatal(err)
	}
}
