package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// The test cluster lives for one test session; a day of validity is plenty
// and keeps stale material from being useful for long.
const certValidity = 24 * time.Hour

// authority is the one CA of a test cluster: it signs the serving certificate
// and every client certificate, so one ca.crt verifies both directions.
type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

type pkiPaths struct {
	dir string
}

func (p pkiPaths) caCert() string      { return filepath.Join(p.dir, "ca.crt") }
func (p pkiPaths) caKey() string       { return filepath.Join(p.dir, "ca.key") }
func (p pkiPaths) servingCert() string { return filepath.Join(p.dir, "serving.crt") }
func (p pkiPaths) servingKey() string  { return filepath.Join(p.dir, "serving.key") }
func (p pkiPaths) saKey() string       { return filepath.Join(p.dir, "sa.key") }
func (p pkiPaths) saPub() string       { return filepath.Join(p.dir, "sa.pub") }

func newKey() (*ecdsa.PrivateKey, error) {
	// P-256: fast to generate (the cluster starts in seconds) and accepted
	// everywhere Kubernetes takes a key, including ES256 token signing.
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func newAuthority() (*authority, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "kubetrade-test-ca"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key}, nil
}

func loadAuthority(p pkiPaths) (*authority, error) {
	certPEM, err := os.ReadFile(p.caCert())
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(p.caKey())
	if err != nil {
		return nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, errors.New("ca.crt or ca.key is not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key}, nil
}

// issue signs a leaf certificate. Kubernetes reads a client certificate's
// CommonName as the user name and its Organizations as the groups.
func (a *authority) issue(cn string, orgs []string, hosts []string, server bool) (certPEM, keyPEM []byte, err error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, key.Public(), a.key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

func (a *authority) certPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.cert.Raw})
}

// writePKI creates the CA, the API server's serving certificate and the
// service-account signing key pair in p.dir.
func writePKI(p pkiPaths) (*authority, error) {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return nil, err
	}
	ca, err := newAuthority()
	if err != nil {
		return nil, err
	}
	caKeyDER, err := x509.MarshalECPrivateKey(ca.key.(*ecdsa.PrivateKey))
	if err != nil {
		return nil, err
	}
	// The in-cluster names are included so that a client which resolves
	// kubernetes.default.svc to this server (none does today) still verifies.
	hosts := []string{"127.0.0.1", "localhost", "10.0.0.1", "kubernetes", "kubernetes.default",
		"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	servingCert, servingKey, err := ca.issue("kube-apiserver", nil, hosts, true)
	if err != nil {
		return nil, err
	}
	saKey, err := newKey()
	if err != nil {
		return nil, err
	}
	saKeyDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return nil, err
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		p.caCert():      ca.certPEM(),
		p.caKey():       pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: caKeyDER}),
		p.servingCert(): servingCert,
		p.servingKey():  servingKey,
		p.saKey():       pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saKeyDER}),
		p.saPub():       pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPubDER}),
	}
	for path, data := range files {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, err
		}
	}
	return ca, nil
}

// writeKubeconfig writes a self-contained kubeconfig (certificates embedded)
// for user cn in groups orgs, so the file can be handed to any client alone.
func writeKubeconfig(ca *authority, server, cn string, orgs []string, out string) error {
	certPEM, keyPEM, err := ca.issue(cn, orgs, nil, false)
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubetrade-test"] = &clientcmdapi.Cluster{
		Server:                   server,
		CertificateAuthorityData: ca.certPEM(),
	}
	cfg.AuthInfos[cn] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts["kubetrade-test"] = &clientcmdapi.Context{Cluster: "kubetrade-test", AuthInfo: cn}
	cfg.CurrentContext = "kubetrade-test"
	if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
		return err
	}
	return clientcmd.WriteToFile(*cfg, out)
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func mintMain(args []string) int {
	fs := flag.NewFlagSet("mint", flag.ContinueOnError)
	dir := fs.String("dir", "", "the directory given to serve")
	user := fs.String("user", "", "user name (the certificate's CommonName)")
	out := fs.String("out", "", "kubeconfig file to write")
	var groups stringList
	fs.Var(&groups, "group", "group (the certificate's Organization); repeatable")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || *user == "" || *out == "" {
		return fail("mint needs --dir, --user and --out")
	}
	ca, err := loadAuthority(pkiPaths{filepath.Join(*dir, "pki")})
	if err != nil {
		return fail("mint: loading the CA: %v", err)
	}
	server, err := os.ReadFile(filepath.Join(*dir, "server.url"))
	if err != nil {
		return fail("mint: %v (is serve running on this --dir?)", err)
	}
	if err := writeKubeconfig(ca, strings.TrimSpace(string(server)), *user, groups, *out); err != nil {
		return fail("mint: %v", err)
	}
	fmt.Println(*out)
	return 0
}
