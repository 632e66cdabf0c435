// Command kubetrade-apiserver runs a real Kubernetes control plane for
// kubetrade's end-to-end tests: an embedded etcd, kube-apiserver and (as a
// child process of this same binary) a kube-controller-manager limited to the
// controllers a test cluster needs.
//
//	kubetrade-apiserver serve --dir DIR [--controllers LIST] [--apiserver-arg=--flag=value ...]
//	kubetrade-apiserver mint --dir DIR --user NAME [--group G ...] --out FILE
//	kubetrade-apiserver controller-manager [kube-controller-manager flags]   (internal)
//
// serve generates a CA and every key it needs into DIR/pki, starts etcd and
// kube-apiserver on 127.0.0.1 (secure port only, client-certificate
// authentication, Node and RBAC authorization, the default admission plugins
// plus NodeRestriction, service-account issuing), writes DIR/admin.kubeconfig
// and, once /readyz answers, DIR/ready.json with the server's URL. SIGTERM or
// SIGINT, or EOF on stdin when --exit-on-stdin-eof is given, stops everything.
//
// mint writes a kubeconfig for any user name and groups, signed by DIR's CA:
// the way tests get restricted identities (a node, the scheduler, an
// operator user) without a certificate API or a token file.
package main

import (
	"fmt"
	"os"
)

func main() {
	cmd := "serve"
	args := os.Args[1:]
	if len(args) > 0 && (args[0] == "serve" || args[0] == "mint" || args[0] == "controller-manager") {
		cmd, args = args[0], args[1:]
	}
	var code int
	switch cmd {
	case "mint":
		code = mintMain(args)
	case "controller-manager":
		code = controllerManagerMain(args)
	default:
		code = serveMain(args)
	}
	os.Exit(code)
}

func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "kubetrade-apiserver: "+format+"\n", args...)
	return 1
}
