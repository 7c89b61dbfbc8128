package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// certReloader serves the certificate in the tls_cert and tls_key files,
// re-reading them when either changes, so a renewed certificate (certbot,
// cert-manager) is served without a restart. A new pair that does not load
// (half-written, mismatched) leaves the old one in service and is logged
// once.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu         sync.Mutex
	cert       *tls.Certificate
	loaded     fileStamp // of the pair in service
	failed     fileStamp // of the last pair that did not load, logged once
	statFailed bool      // the files could not be read, logged once
}

// fileStamp tells a version of the two files apart.
type fileStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	stamp, err := r.stamp()
	if err == nil {
		err = r.load(stamp)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot serve HTTPS (settings tls_cert and tls_key): %v", err)
	}
	return r, nil
}

func (r *certReloader) stamp() (fileStamp, error) {
	c, err := os.Stat(r.certFile)
	if err != nil {
		return fileStamp{}, err
	}
	k, err := os.Stat(r.keyFile)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{c.ModTime(), k.ModTime(), c.Size(), k.Size()}, nil
}

// load reads the pair; the caller holds mu or is the constructor.
func (r *certReloader) load(stamp fileStamp) error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	r.cert, r.loaded = &cert, stamp
	return nil
}

// GetCertificate is tls.Config.GetCertificate: a stat of the two files per
// handshake, a read only when they changed.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	stamp, err := r.stamp()
	if err != nil {
		if !r.statFailed {
			r.statFailed = true
			r.log.Error("TLS certificate files cannot be read; serving the certificate loaded before", "err", err,
				"tls_cert", r.certFile, "tls_key", r.keyFile)
		}
		return r.cert, nil
	}
	r.statFailed = false
	if stamp == r.loaded || stamp == r.failed {
		return r.cert, nil
	}
	if err := r.load(stamp); err != nil {
		r.failed = stamp
		r.log.Error("the changed TLS certificate or key does not load; serving the certificate loaded before", "err", err,
			"tls_cert", r.certFile, "tls_key", r.keyFile)
		return r.cert, nil
	}
	r.failed = fileStamp{}
	r.log.Info("TLS certificate reloaded", "tls_cert", r.certFile, "notAfter", r.cert.Leaf.NotAfter)
	return r.cert, nil
}

// listenTLS wraps ln to serve HTTPS with the configured pair, reloaded as
// it changes.
func listenTLS(ln net.Listener, certFile, keyFile string, log *slog.Logger) (net.Listener, error) {
	r, err := newCertReloader(certFile, keyFile, log)
	if err != nil {
		return nil, err
	}
	return tls.NewListener(ln, &tls.Config{GetCertificate: r.GetCertificate, MinVersion: tls.VersionTLS12}), nil
}
