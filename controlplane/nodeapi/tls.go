package nodeapi

import (
	"crypto/tls"
	"crypto/x509"
)

// TLSConfig is the node listener's TLS configuration: the server
// certificate from getCert, and client certificates verified against
// clientCAs when presented. They are optional at the TLS layer only because
// Enroll is called before a node has one; every other RPC refuses a call
// without a verified node certificate, and a certificate from another CA
// fails the handshake itself.
func TLSConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error), clientCAs *x509.CertPool) *tls.Config {
	return &tls.Config{
		GetCertificate: getCert,
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      clientCAs,
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2"},
	}
}

// Stats are the server's send counters, for tests and benchmarks.
type Stats struct {
	// SnapshotsSent counts snapshot messages sent, payload-less ones included.
	SnapshotsSent int64
	// PayloadBytesSent counts config payload bytes as sent.
	PayloadBytesSent int64
	// Connected is the number of open ConfigStreams.
	Connected int
	// StreamsOpened counts ConfigStreams accepted (hello received).
	StreamsOpened int64
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		SnapshotsSent:    s.snapshotsSent.Load(),
		PayloadBytesSent: s.payloadBytesSent.Load(),
		Connected:        s.reg.connected(),
		StreamsOpened:    s.streamsOpened.Load(),
	}
}
