package main

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/urfave/cli/v2"

	"github.com/tcpshift/tcpshift/daemon/agent"
	"github.com/tcpshift/tcpshift/daemon/agent/status"
)

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:      "agent",
		Usage:     "run on a Kubernetes node: split pods' connections to Services by their VirtualService or TCPRoute weights",
		ArgsUsage: " ",
		Description: "Follows the cluster's Services, EndpointSlices and Pods, Istio's VirtualService,\n" +
			"DestinationRule, ServiceEntry, WorkloadEntry and Gateway, and the Gateway API's TCPRoute,\n" +
			"Gateway and GatewayClass (client-go informers, read-only), derives this node's services\n" +
			"as apply -f does for Istio's YAML, and applies each burst of changes in one\n" +
			"transaction. Pods' connect() to a Service's\n" +
			"ClusterIP:port is rewritten in the kernel to a pod endpoint (connect mode; every network\n" +
			"namespace under --cgroup, the kubelet's pod cgroup, is served), and getpeername shows the\n" +
			"ClusterIP. A Service no VirtualService or TCPRoute routes gets every ready endpoint at\n" +
			"equal shares, as kube-proxy does, unless --only-routed. A terminating endpoint is kept at\n" +
			"weight 0 (subset \"terminating\") while its connections drain. Gateways are served on\n" +
			"every node: an Istio Gateway whose selector picks --gateway-labels, and a Gateway API\n" +
			"Gateway whose GatewayClass has controllerName " + status.ControllerName + ". A\n" +
			"connection to the node's address at a listener's port is split by the route's weights\n" +
			"to the backends' ready pods, wherever they run, by the userspace proxy (the same\n" +
			"tables, accounting and drains). Not served: host-network and other nodes' clients of a\n" +
			"ClusterIP. Stopping it leaves the kernel state in place.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "node", EnvVars: []string{"NODE_NAME"}, Usage: "this node's `NAME` (required)"},
			&cli.StringFlag{Name: "kubeconfig", EnvVars: []string{"KUBECONFIG"}, Usage: "kubeconfig `PATH`", DefaultText: "the in-cluster config"},
			&cli.BoolFlag{Name: "only-routed", Usage: "serve only Services a VirtualService or TCPRoute routes"},
			&cli.StringFlag{Name: "cluster-domain", Value: "cluster.local", Usage: "the cluster's DNS `DOMAIN`, for Service hosts"},
			&cli.DurationFlag{Name: "debounce", Value: agent.DefaultDebounce, Usage: "quiet time before a burst of changes is applied"},
			&cli.DurationFlag{Name: "max-delay", Value: agent.DefaultMaxDelay, Usage: "a burst of changes is applied at most this long after its first"},
			&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus metrics at http://`ADDR`/metrics; off when empty"},
			&cli.StringFlag{Name: "health-addr", Usage: "serve /healthz and /readyz (ready once the first sync is applied) at `ADDR`; off when empty"},
			&cli.BoolFlag{Name: "status", Value: true, Usage: "write status back (Gateway API conditions on TCPRoutes, Gateways and GatewayClasses of controllerName " + status.ControllerName + ", Istio's status on VirtualServices and DestinationRules, Events on objects left out); only the agent holding the Lease writes"},
			&cli.StringFlag{Name: "lease-namespace", Value: "tcpshift-system", EnvVars: []string{"POD_NAMESPACE"}, Usage: "`NAMESPACE` of the Lease " + status.LeaseName + " the agents elect the status writer with"},
			&cli.DurationFlag{Name: "lease-duration", Value: status.DefaultLeaseDuration, Usage: "how long the status writer's Lease holds without renewal: the longest wait before another agent writes when the writer dies"},
			&cli.StringFlag{Name: "gateway-labels", Value: formatLabels(agent.DefaultGatewayLabels), Usage: "tcpshift's gateway's `LABELS` (k=v,...): an Istio Gateway whose selector picks them is served on every node (Istio's samples select istio=ingressgateway)"},
		}, append(proxyFlags("gateways' proxy: "), logFlags()...)...),
		OnUsageError: usageError,
		Action:       runAgent,
	}
}

func runAgent(c *cli.Context) error {
	if c.NArg() > 0 {
		return errors.New("agent takes no arguments")
	}
	if c.String("node") == "" {
		return errors.New("--node: required (the node's name; in a DaemonSet, NODE_NAME from spec.nodeName)")
	}
	if c.Duration("debounce") <= 0 || c.Duration("max-delay") < c.Duration("debounce") {
		return errors.New("--debounce must be above 0 and --max-delay at least --debounce")
	}
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	if c.String("kubeconfig") == "" && os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		return errors.New("--kubeconfig: required outside a pod (no in-cluster config here)")
	}
	// In a pod, a bpffs mounted by the agent itself would be the pod's and
	// die with it, taking every node's table down with the agent: refuse.
	var fs unix.Statfs_t
	if err := unix.Statfs(c.String("bpffs"), &fs); err != nil || fs.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("--bpffs %s: not a bpffs mount; the agent's state must outlive it, so mount bpffs on the host (mount -t bpf bpf %s) and give the pod that directory", c.String("bpffs"), c.String("bpffs"))
	}
	if err := checkProxyFlags(c); err != nil {
		return err
	}
	labels, err := parseLabels(c.String("gateway-labels"))
	if err != nil {
		return fmt.Errorf("--gateway-labels %q: %w", c.String("gateway-labels"), err)
	}
	tg, err := target(c)
	if err != nil {
		return err
	}
	defer tg.Close()
	o := agent.Options{
		Node:           c.String("node"),
		Kubeconfig:     c.String("kubeconfig"),
		OnlyRouted:     c.Bool("only-routed"),
		ClusterDomain:  c.String("cluster-domain"),
		Debounce:       c.Duration("debounce"),
		MaxDelay:       c.Duration("max-delay"),
		MetricsAddr:    c.String("metrics-addr"),
		HealthAddr:     c.String("health-addr"),
		Target:         tg,
		Log:            log,
		Status:         c.Bool("status"),
		LeaseNamespace: c.String("lease-namespace"),
		LeaseDuration:  c.Duration("lease-duration"),
		GatewayLabels:  labels,
		DialTimeout:    c.Duration("dial-timeout"),
		Attempts:       c.Int("attempts"),
		Grace:          c.Duration("grace"),
	}
	if c.IsSet("netns") {
		o.InNamespace = tg.NS.Do // the gateways' sockets are the node's
	}
	return agent.Run(c.Context, o)
}
