package nodeapi_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/mcpgw/mcpgw/controlplane/nodeapi"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/document"
	"github.com/mcpgw/mcpgw/internal/policy"
)

// The fleet benchmark (docs/fleet.md): simulated edges, each with its own
// certificate and its own mTLS connection and ConfigStream, run in a child
// process (so the control plane's memory is measured alone) and answer
// every snapshot: inflate, check the hash, ACK. Decoding the resources is
// left out unless MCPGW_FLEET_DECODE is set: a real edge decodes on its own
// CPU in parallel with the others (about 0.3 ms here), while a thousand
// simulated ones decoding on one shared machine add their sum to the tail. Each iteration commits MCPGW_FLEET_PUSHES policy changes
// (default 5) one after the other and waits until every edge has ACKed
// each; the control plane timestamps the ACKs. Run one iteration (the
// setup, a thousand certificates and connections, is the slow part):
//
//	go test -run '^$' -bench BenchmarkFleetPush -benchtime 1x ./controlplane/nodeapi
//
// MCPGW_FLEET_EDGES changes the fleet size (default 1000).

const fleetChildEnv = "MCPGW_FLEET_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(fleetChildEnv); path != "" {
		os.Exit(runFleetChild(path))
	}
	os.Exit(m.Run())
}

type fleetSpec struct {
	Addr  string      `json:"addr"`
	CAPEM []byte      `json:"ca_pem"`
	Edges []fleetEdge `json:"edges"`
}

type fleetEdge struct {
	CertPEM []byte `json:"cert_pem"`
	KeyPEM  []byte `json:"key_pem"`
}

// fleetDoc is a config of a realistic size: 20 backends, 20 roles, 200
// principals bound through groups.
func fleetDoc(variant int) document.Document {
	var d document.Document
	for i := range 20 {
		d.Backends = append(d.Backends, document.Backend{Name: fmt.Sprintf("backend-%02d", i),
			HTTP: &document.HTTPTransport{URL: fmt.Sprintf("http://10.0.0.%d:9000/mcp", i), Headers: map[string]string{"X-Team": "core"}}})
		d.Roles = append(d.Roles, policy.Role{Name: fmt.Sprintf("role-%02d", i), Rules: []policy.Rule{
			{Effect: "allow", Backends: []string{fmt.Sprintf("backend-%02d", i)}, Tools: []string{fmt.Sprintf("backend-%02d__*", i)}},
			{Effect: "deny", Tools: []string{fmt.Sprintf("backend-%02d__delete_%d_*", i, variant)}},
		}})
		d.Bindings = append(d.Bindings, policy.Binding{Role: fmt.Sprintf("role-%02d", i), Subjects: []string{fmt.Sprintf("group:team-%02d", i)}})
	}
	for i := range 200 {
		d.Principals = append(d.Principals, policy.Principal{Name: fmt.Sprintf("user-%03d", i), Groups: []string{fmt.Sprintf("team-%02d", i%20)}})
	}
	return d
}

func BenchmarkFleetPush(b *testing.B) {
	n, pushes := envInt(b, "MCPGW_FLEET_EDGES", 1000), envInt(b, "MCPGW_FLEET_PUSHES", 5)
	db := newTestDB(b)
	rev := db.apply(b, fleetDoc(0))

	// Mint a certificate per edge from the installation CA and register the
	// nodes directly (enrolling a thousand nodes is not what is measured).
	start := time.Now()
	spec := fleetSpec{CAPEM: db.ca.CertPEM()}
	ids := make([]uuid.UUID, n)
	fps := make([]string, n)
	for i := range n {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "e"}}, key)
		ids[i] = uuid.New()
		cert, err := db.ca.SignNodeCSR(csr, ids[i].String(), time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		fps[i] = cert.Fingerprint
		der, _ := x509.MarshalPKCS8PrivateKey(key)
		spec.Edges = append(spec.Edges, fleetEdge{CertPEM: cert.ChainPEM, KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})})
	}
	if _, err := db.pool.Exec(b.Context(), `INSERT INTO nodes (id, name, cert_fingerprint)
		SELECT id, id::text, fp FROM unnest($1::uuid[], $2::text[]) AS t(id, fp)`, ids, fps); err != nil {
		b.Fatal(err)
	}
	b.Logf("minted %d node certificates in %v", n, time.Since(start))

	// ackAt[node index] holds the time of the latest ACK and its revision.
	index := make(map[uuid.UUID]int, n)
	for i, id := range ids {
		index[id] = i
	}
	type ack struct {
		at  time.Time
		rev int64
	}
	var (
		mu    sync.Mutex // guards acks and acked
		acks  = make([]ack, n)
		acked = map[int64]int{}
	)
	c := startCP(b, db, "bench", func(cfg *nodeapi.Config) {
		if os.Getenv("XFLUSH") != "" {
			cfg.FlushInterval = time.Hour
		}
		cfg.OnAck = func(id uuid.UUID, revision int64) {
			now := time.Now()
			mu.Lock()
			acks[index[id]] = ack{at: now, rev: revision}
			acked[revision]++
			mu.Unlock()
		}
	})
	spec.Addr = c.addr
	ackedCount := func(rev int64) int {
		mu.Lock()
		defer mu.Unlock()
		return acked[rev]
	}

	specFile := filepath.Join(b.TempDir(), "fleet.json")
	js, _ := json.Marshal(spec)
	if err := os.WriteFile(specFile, js, 0o600); err != nil {
		b.Fatal(err)
	}

	before := memNow()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fleetChildEnv+"="+specFile)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close() // the fleet exits when its stdin closes
		cmd.Wait()
		b.Logf("fleet process CPU: user %v system %v", cmd.ProcessState.UserTime(), cmd.ProcessState.SystemTime())
	}()
	start = time.Now()
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && line != "READY\n" {
			err = fmt.Errorf("fleet said %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			b.Fatalf("fleet: %v", err)
		}
	case <-time.After(3 * time.Minute):
		b.Fatal("fleet did not connect within 3 minutes")
	}
	waitFor(b, time.Minute, "every edge acks the first revision", func() bool { return ackedCount(rev) == n })
	b.Logf("%d edges connected and acked revision %d in %v", n, rev, time.Since(start))
	after := memNow()
	if f := os.Getenv("MCPGW_FLEET_MEMPROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		pprof.Lookup("heap").WriteTo(out, 0)
		out.Close()
	}
	if got := c.srv.Stats().Connected; got != n {
		b.Fatalf("%d streams connected, want %d", got, n)
	}

	if f := os.Getenv("MCPGW_FLEET_CPUPROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		defer out.Close()
		pprof.StartCPUProfile(out)
		defer pprof.StopCPUProfile()
	}
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N * pushes {
		sentBefore := c.srv.Stats().SnapshotsSent
		commit := time.Now()
		rev = db.apply(b, fleetDoc(i+1))
		committed := time.Since(commit)
		waitFor(b, 30*time.Second, "the snapshot is published", func() bool { return c.cache.Revision() >= rev })
		published := time.Since(commit)
		waitFor(b, 30*time.Second, "the snapshot is sent to every edge", func() bool { return c.srv.Stats().SnapshotsSent >= sentBefore+int64(n) })
		sent := time.Since(commit)
		waitFor(b, 30*time.Second, "every edge acks the change", func() bool { return ackedCount(rev) == n })
		mu.Lock()
		first := time.Duration(1 << 62)
		for _, a := range acks {
			if a.rev != rev {
				b.Fatalf("an edge is at revision %d, want %d", a.rev, rev)
			}
			lat = append(lat, a.at.Sub(commit))
			first = min(first, a.at.Sub(commit))
		}
		mu.Unlock()
		slices.Sort(lat[len(lat)-n:])
		b.Logf("push %d: committed after %v, published after %v, sent to all after %v, ACKs from %v to %v",
			i+1, committed, published, sent, first, lat[len(lat)-1])
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	heapPer := float64(after.heap-before.heap) / float64(n)
	totalPer := float64(after.heap+after.stack-before.heap-before.stack) / float64(n)
	b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(heapPer/1024, "heap-KiB/edge")
	b.ReportMetric(totalPer/1024, "heap+stack-KiB/edge")
	cur := c.srv.Stats()
	b.Logf("edges %d, pushes %d: commit→ACK p50 %v p99 %v max %v; CP heap %.1f KiB/edge, heap+stacks %.1f KiB/edge; payload bytes sent %d",
		n, b.N*pushes, pct(0.50), pct(0.99), lat[len(lat)-1], heapPer/1024, totalPer/1024, cur.PayloadBytesSent)
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

type memSample struct{ heap, stack uint64 }

func memNow() memSample {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memSample{heap: m.HeapInuse, stack: m.StackInuse}
}

// runFleetChild is the simulated fleet: one process, many edges.
func runFleetChild(path string) int {
	js, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var spec fleetSpec
	if err := json.Unmarshal(js, &spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(spec.CAPEM)
	decode := os.Getenv("MCPGW_FLEET_DECODE") != ""
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		first    sync.WaitGroup
		failures atomic.Int64
		wg       sync.WaitGroup
		gate     = make(chan struct{}, 32) // handshakes in flight
	)
	first.Add(len(spec.Edges))
	for _, e := range spec.Edges {
		cert, err := tls.X509KeyPair(e.CertPEM, e.KeyPEM)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		cert.Certificate = cert.Certificate[:1] // as cpclient: the leaf only
		creds := credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert}})
		conn, err := grpc.NewClient(spec.Addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer conn.Close()
		gate <- struct{}{}
		wg.Go(func() {
			if err := simulatedEdge(ctx, mcpgwv1.NewNodeServiceClient(conn), &first, gate, decode); err != nil && ctx.Err() == nil {
				failures.Add(1)
				fmt.Fprintln(os.Stderr, "simulated edge:", err)
			}
		})
	}
	first.Wait()
	if failures.Load() > 0 {
		return 1
	}
	if f := os.Getenv("MCPGW_FLEET_CHILD_CPUPROFILE"); f != "" {
		if out, err := os.Create(f); err == nil {
			pprof.StartCPUProfile(out)
			defer pprof.StopCPUProfile()
		}
	}
	fmt.Println("READY")
	io.Copy(io.Discard, os.Stdin) // until the benchmark closes it
	cancel()
	wg.Wait()
	return 0
}

func simulatedEdge(ctx context.Context, client mcpgwv1.NodeServiceClient, first *sync.WaitGroup, gate chan struct{}, decode bool) error {
	stream, err := client.ConfigStream(ctx)
	if err != nil {
		<-gate
		first.Done()
		return err
	}
	if err := stream.Send(&mcpgwv1.ConfigStreamRequest{Msg: &mcpgwv1.ConfigStreamRequest_Hello{Hello: &mcpgwv1.ConfigHello{
		Version: "fleet", Capabilities: []string{"gzip"}}}}); err != nil {
		<-gate
		first.Done()
		return err
	}
	released := false
	// Reused across snapshots: a thousand edges allocating a fresh inflater
	// per push on one machine would measure this process's GC, not the CP.
	var zr *gzip.Reader
	var buf bytes.Buffer
	for {
		m, err := stream.Recv()
		if err != nil {
			if !released {
				<-gate
				first.Done()
			}
			return err
		}
		s := m.GetSnapshot()
		raw := s.GetPayload()
		if s.GetPayloadEncoding() == mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_PROTO_GZIP {
			if zr == nil {
				zr, err = gzip.NewReader(bytes.NewReader(raw))
			} else {
				err = zr.Reset(bytes.NewReader(raw))
			}
			if err != nil {
				return err
			}
			buf.Reset()
			if _, err := buf.ReadFrom(io.LimitReader(zr, int64(s.GetPayloadSize())+1)); err != nil {
				return err
			}
			raw = buf.Bytes()
		}
		sum := sha256.Sum256(raw)
		if hex.EncodeToString(sum[:]) != s.GetHash() {
			return fmt.Errorf("revision %d: payload hash mismatch", s.GetRevision())
		}
		if decode {
			var res mcpgwv1.SnapshotResources
			if err := proto.Unmarshal(raw, &res); err != nil {
				return err
			}
		}
		if err := stream.Send(&mcpgwv1.ConfigStreamRequest{Msg: &mcpgwv1.ConfigStreamRequest_Ack{Ack: &mcpgwv1.ConfigAck{
			Nonce: s.GetNonce(), Revision: s.GetRevision(), Hash: s.GetHash()}}}); err != nil {
			return err
		}
		if !released {
			released = true
			<-gate
			first.Done()
		}
	}
}
