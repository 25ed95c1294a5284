package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"

	"github.com/posthorn/posthorn/internal/webmail"
)

// webStatus is what the webmail's admin status page shows of the running
// server: its listeners and the certificate it presents.
func (s *Server) webStatus() webmail.Status {
	var st webmail.Status
	if s.rejects != nil {
		st.Rejects = s.rejects.latest()
	}
	for _, l := range s.Listeners() {
		st.Listeners = append(st.Listeners, webmail.StatusListener{Kind: l.Kind, Addr: l.Addr.String()})
	}
	if s.certs == nil {
		return st
	}
	conf := s.certs.TLSConfig()
	if conf == nil {
		return st
	}
	c := webmail.StatusCertificate{Names: []string{s.Config.Hostname}}
	leaf, err := presentedLeaf(conf, s.Config.Hostname)
	if err != nil {
		c.Err = err.Error()
	} else {
		c.Names, c.Issuer, c.NotAfter = leaf.DNSNames, leaf.Issuer.CommonName, leaf.NotAfter
		if len(c.Names) == 0 {
			c.Names = []string{leaf.Subject.CommonName}
		}
	}
	st.Certificates = append(st.Certificates, c)
	return st
}

// presentedLeaf is the certificate a client asking for name is given.
func presentedLeaf(conf *tls.Config, name string) (*x509.Certificate, error) {
	var cert *tls.Certificate
	switch {
	case conf.GetCertificate != nil:
		var err error
		if cert, err = conf.GetCertificate(&tls.ClientHelloInfo{ServerName: name}); err != nil {
			return nil, err
		}
	case len(conf.Certificates) > 0:
		cert = &conf.Certificates[0]
	}
	if cert == nil || len(cert.Certificate) == 0 {
		return nil, errors.New("no certificate yet")
	}
	if cert.Leaf != nil {
		return cert.Leaf, nil
	}
	return x509.ParseCertificate(cert.Certificate[0])
}
