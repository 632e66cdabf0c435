package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/embed"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/flagz"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/component-base/cli"
	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/component-base/featuregate"
	logsapi "k8s.io/component-base/logs/api/v1"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

// The controllers a test cluster needs and nothing else: owner-reference
// garbage collection (children of a deleted custom resource go away),
// namespace deletion, the "default" ServiceAccount of each namespace (the
// ServiceAccount admission plugin refuses pods without it), the
// kube-root-ca.crt ConfigMap (projected service-account volumes read it) and
// the aggregated admin/edit/view ClusterRoles. Nothing schedules pods, runs
// node lifecycle or evicts: the node agent of the tests plays that part.
const defaultControllers = "garbage-collector-controller,namespace-controller," +
	"serviceaccount-controller,root-ca-certificate-publisher-controller," +
	"clusterrole-aggregation-controller"

// stopped reports that a component ended, to any number of waiters: a channel
// would hand its error to the first receiver only.
type stopped struct {
	done chan struct{}
	err  error
}

func newStopped() *stopped { return &stopped{done: make(chan struct{})} }

func (s *stopped) finish(err error) {
	s.err = err
	close(s.done)
}

// ready is what serve writes to DIR/ready.json once the control plane answers.
type ready struct {
	URL        string `json:"url"`
	Kubeconfig string `json:"kubeconfig"`
	CAFile     string `json:"caFile"`
	PID        int    `json:"pid"`
	StartupMs  int64  `json:"startupMs"`
}

func serveMain(args []string) int {
	started := time.Now()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	dirFlag := fs.String("dir", "", "working directory: PKI, etcd data, kubeconfigs (created)")
	controllers := fs.String("controllers", defaultControllers,
		"kube-controller-manager controllers to run; empty runs no controller manager")
	stdinEOF := fs.Bool("exit-on-stdin-eof", false,
		"shut down when stdin reaches EOF (the parent died or closed the pipe)")
	var apiserverArgs, kcmArgs stringList
	fs.Var(&apiserverArgs, "apiserver-arg", "extra kube-apiserver flag, e.g. --apiserver-arg=--v=2; repeatable")
	fs.Var(&kcmArgs, "controller-manager-arg", "extra kube-controller-manager flag; repeatable")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dirFlag == "" {
		return fail("serve needs --dir")
	}
	dir, err := filepath.Abs(*dirFlag)
	if err != nil {
		return fail("%v", err)
	}

	// SIGTERM/SIGINT cancel this context; kube-apiserver then drains and
	// returns. A second signal exits at once (SetupSignalContext's rule).
	signalCtx := genericapiserver.SetupSignalContext()
	ctx, cancel := context.WithCancel(signalCtx)
	defer cancel()
	if *stdinEOF {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			fmt.Fprintln(os.Stderr, "kubetrade-apiserver: stdin closed, shutting down")
			cancel()
		}()
	}

	pki := pkiPaths{filepath.Join(dir, "pki")}
	ca, err := writePKI(pki)
	if err != nil {
		return fail("generating certificates: %v", err)
	}
	// Listening before kube-apiserver starts gives a free port with no race:
	// the apiserver serves on this very listener.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail("listening: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	serverURL := fmt.Sprintf("https://127.0.0.1:%d", port)
	if err := os.WriteFile(filepath.Join(dir, "server.url"), []byte(serverURL+"\n"), 0o600); err != nil {
		return fail("%v", err)
	}
	adminKubeconfig := filepath.Join(dir, "admin.kubeconfig")
	if err := writeKubeconfig(ca, serverURL, "kubetrade-admin", []string{"system:masters"}, adminKubeconfig); err != nil {
		return fail("writing the admin kubeconfig: %v", err)
	}
	// With --use-service-account-credentials=false every controller acts as
	// the controller manager itself, so it gets the admin group (a real
	// cluster gives each controller its own ServiceAccount instead).
	kcmKubeconfig := filepath.Join(dir, "controller-manager.kubeconfig")
	if err := writeKubeconfig(ca, serverURL, "system:kube-controller-manager",
		[]string{"system:masters"}, kcmKubeconfig); err != nil {
		return fail("writing the controller-manager kubeconfig: %v", err)
	}

	etcd, err := startEtcd(filepath.Join(dir, "etcd"))
	if err != nil {
		return fail("starting etcd: %v", err)
	}
	defer etcd.Close()

	apiserverDone := newStopped()
	flags := apiserverFlags(pki, port, etcd.Clients[0].Addr().String())
	if err := startAPIServer(ctx, ln, append(flags, apiserverArgs...), apiserverDone); err != nil {
		return fail("kube-apiserver: %v", err)
	}

	client, err := adminHTTPClient(adminKubeconfig)
	if err != nil {
		return fail("%v", err)
	}
	var kcm *exec.Cmd
	kcmDone := newStopped()
	startErr := func() error {
		if err := waitHTTP(ctx, client, serverURL+"/readyz", apiserverDone); err != nil {
			return fmt.Errorf("kube-apiserver never became ready: %w", err)
		}
		if *controllers == "" {
			return nil
		}
		kcm, err = startControllerManager(kcmKubeconfig, pki, *controllers, kcmArgs, kcmDone)
		if err != nil {
			return err
		}
		if strings.Contains(*controllers, "serviceaccount-controller") {
			// The default ServiceAccount appearing proves the controller
			// manager is connected and running its controllers.
			sa := serverURL + "/api/v1/namespaces/default/serviceaccounts/default"
			if err := waitHTTP(ctx, client, sa, kcmDone); err != nil {
				return fmt.Errorf("controller manager never created the default ServiceAccount: %w", err)
			}
		}
		return nil
	}()
	code := 0
	if startErr != nil {
		fmt.Fprintf(os.Stderr, "kubetrade-apiserver: %v\n", startErr)
		code = 1
	} else {
		info := ready{URL: serverURL, Kubeconfig: adminKubeconfig, CAFile: pki.caCert(),
			PID: os.Getpid(), StartupMs: time.Since(started).Milliseconds()}
		if err := writeJSONAtomic(filepath.Join(dir, "ready.json"), info); err != nil {
			fmt.Fprintf(os.Stderr, "kubetrade-apiserver: %v\n", err)
			code = 1
		} else {
			fmt.Printf("kubetrade-apiserver ready at %s in %d ms\n", serverURL, info.StartupMs)
			code = waitForEnd(ctx, apiserverDone, kcmDone, etcd)
		}
	}

	// Shutdown order: the controller manager first (it is a client), then
	// the API server (drains requests), then etcd (by the deferred Close).
	stopChild(kcm, kcmDone)
	cancel()
	select {
	case <-apiserverDone.done:
		if err := apiserverDone.err; err != nil && code == 0 {
			fmt.Fprintf(os.Stderr, "kubetrade-apiserver: kube-apiserver: %v\n", err)
		}
	case <-time.After(60 * time.Second):
		fmt.Fprintln(os.Stderr, "kubetrade-apiserver: kube-apiserver did not stop within 60 s")
		code = 1
	}
	return code
}

// apiserverFlags are kube-apiserver's flags for a loopback test cluster.
func apiserverFlags(pki pkiPaths, port int, etcdAddr string) []string {
	return []string{
		"--etcd-servers=http://" + etcdAddr,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + pki.servingCert(),
		"--tls-private-key-file=" + pki.servingKey(),
		"--client-ca-file=" + pki.caCert(),
		"--authorization-mode=Node,RBAC",
		// The defaults stay on; NodeRestriction pairs with the Node
		// authorizer so the node agent can only touch its own node and pods.
		"--enable-admission-plugins=NodeRestriction",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pki.saPub(),
		"--service-account-signing-key-file=" + pki.saKey(),
		"--service-cluster-ip-range=10.0.0.0/24",
		// The "kubernetes" Service would get 127.0.0.1 as its endpoint,
		// which validation refuses; nothing in the tests needs it.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}
}

// waitForEnd blocks until a shutdown is asked for (exit 0) or a component
// dies on its own (exit 1: a half-dead control plane must fail tests loudly).
func waitForEnd(ctx context.Context, apiserverDone, kcmDone *stopped, etcd *embed.Etcd) int {
	select {
	case <-ctx.Done():
		return 0
	case <-apiserverDone.done:
		fmt.Fprintf(os.Stderr, "kubetrade-apiserver: kube-apiserver stopped: %v\n", apiserverDone.err)
	case <-kcmDone.done:
		fmt.Fprintf(os.Stderr, "kubetrade-apiserver: controller manager stopped: %v\n", kcmDone.err)
	case err := <-etcd.Err():
		fmt.Fprintf(os.Stderr, "kubetrade-apiserver: etcd stopped: %v\n", err)
	}
	return 1
}

func startEtcd(dir string) (*embed.Etcd, error) {
	// etcd cannot take a listener, so free ports are picked by binding and
	// releasing them; another process may grab one in between, hence retries.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			return nil, err
		}
		cfg := embed.NewConfig()
		cfg.Name = "kubetrade-test"
		cfg.Dir = dir
		clientURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))}
		peerURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{clientURL}, []url.URL{clientURL}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peerURL}, []url.URL{peerURL}
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
		// A throw-away single member: durability buys nothing, fsync costs
		// seconds per test on a busy disk.
		cfg.UnsafeNoFsync = true
		cfg.LogLevel = "error"
		cfg.LogOutputs = []string{"stderr"}
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			lastErr = err
			_ = os.RemoveAll(dir)
			continue
		}
		select {
		case <-e.Server.ReadyNotify():
			return e, nil
		case <-time.After(60 * time.Second):
			e.Close()
			return nil, errors.New("etcd took more than 60 s to start")
		}
	}
	return nil, lastErr
}

func freePorts(n int) ([]int, error) {
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// startAPIServer does what kube-apiserver's own command does between parsing
// flags and running, except that it serves on ln. It returns once the server
// is launched; Run's result arrives in done.
func startAPIServer(ctx context.Context, ln net.Listener, args []string, done *stopped) error {
	s := options.NewServerRunOptions()
	s.SecureServing.Listener = ln
	s.SecureServing.BindPort = ln.Addr().(*net.TCPAddr).Port
	namedFlagSets := s.Flags()
	s.Flagz = flagz.NamedFlagSetsReader{FlagSets: namedFlagSets}
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, f := range namedFlagSets.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	registry := s.GenericServerRunOptions.ComponentGlobalsRegistry
	featureGate := registry.FeatureGateFor(basecompatibility.DefaultKubeComponent)
	if err := registry.Set(); err != nil {
		return err
	}
	// Its loopback clients would otherwise log warnings about themselves.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	if err := logsapi.ValidateAndApply(s.Logs, featureGate); err != nil {
		return err
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return errors.Join(errs...)
	}
	featureGate.(featuregate.MutableFeatureGate).AddMetrics()
	registry.AddMetrics()
	go func() { done.finish(apiserverapp.Run(ctx, completed)) }()
	return nil
}

// controllerManagerMain runs kube-controller-manager. It lives in a child
// process because both components keep process-wide state (feature gates,
// flags, metrics registries) that cannot be shared in one process.
func controllerManagerMain(args []string) int {
	cmd := kcmapp.NewControllerManagerCommand()
	cmd.SetArgs(args)
	return cli.Run(cmd)
}

func startControllerManager(kubeconfig string, pki pkiPaths, controllers string, extra []string,
	done *stopped) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := append([]string{
		"controller-manager",
		"--kubeconfig=" + kubeconfig,
		"--controllers=" + controllers,
		"--use-service-account-credentials=false",
		"--leader-elect=false",
		// No serving: nothing scrapes it, and it saves a port and the
		// delegated authentication lookups.
		"--secure-port=0",
		"--root-ca-file=" + pki.caCert(),
		"--service-account-private-key-file=" + pki.saKey(),
	}, extra...)
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	// If this process is killed outright, the kernel takes the child along.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { done.finish(cmd.Wait()) }()
	return cmd, nil
}

func stopChild(cmd *exec.Cmd, done *stopped) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done.done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done.done
	}
}

func adminHTTPClient(kubeconfig string) (*http.Client, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 5 * time.Second
	return rest.HTTPClientFor(cfg)
}

// waitHTTP polls url until it answers 200, the context ends, or the
// component behind it reports that it stopped.
func waitHTTP(ctx context.Context, client *http.Client, url string, died *stopped) error {
	deadline := time.After(3 * time.Minute)
	var last string
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, body)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-died.done:
			return fmt.Errorf("it stopped: %v", died.err)
		case <-deadline:
			return fmt.Errorf("timed out; last answer: %s", last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func writeJSONAtomic(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	// Readers poll for the file: rename makes it appear whole or not at all.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
