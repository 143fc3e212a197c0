package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io/ioutil"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// ConnectOptions say where the server is and how to reach it.
type ConnectOptions struct {
	Target    string // host:port
	CAFile    string // PEM CA that signed the server's certificate: TLS; empty: plaintext
	TokenFile string // file holding a JWT, sent as "authorization: Bearer <jwt>"; empty: none
}

// Connect opens a channel with the settings the Python SDK uses.
//
//   - Keepalive: a ping every 30 s while a call is open, the connection dropped when one is
//     not answered in 10 s, so a watch on a server that froze or behind a network that went
//     silent ends with UNAVAILABLE (and resumes) rather than waiting for ever. The server
//     accepts pings every 5 s or more; pinging more often gets the connection closed
//     (GOAWAY "too_many_pings").
//   - Reconnect backoff 100 ms to 2 s: grpc-go's default (1 s up to 120 s) would leave a
//     producer waiting minutes after a server restart.
//   - Messages: the server takes and sends at most 4 MiB per message, grpc-go's default
//     receive limit; the server keeps its own responses under it.
func Connect(opts ConnectOptions) (*grpc.ClientConn, error) {
	dial := []grpc.DialOption{
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	if opts.CAFile != "" {
		pem, err := ioutil.ReadFile(opts.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", opts.CAFile)
		}
		dial = append(dial, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	} else {
		dial = append(dial, grpc.WithInsecure())
	}
	if opts.TokenFile != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(bearerFile{path: opts.TokenFile, tls: opts.CAFile != ""}))
	}
	return grpc.Dial(opts.Target, dial...)
}

// bearerFile sends the token in its file with every call, read again each time, so a token
// renewed on disk is used from the next call on: a stream the server ends at its token's
// expiry (UNAUTHENTICATED) resumes with the fresh one.
type bearerFile struct {
	path string
	tls  bool
}

func (b bearerFile) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	token, err := ioutil.ReadFile(b.path)
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + strings.TrimSpace(string(token))}, nil
}

// RequireTransportSecurity false lets the token go over plaintext, which grpc-go otherwise
// refuses for every call ("credentials require transport level security"). Keep plaintext
// to loopback (`runstream serve` on 127.0.0.1) or a sidecar: the token is a password.
func (b bearerFile) RequireTransportSecurity() bool { return b.tls }
