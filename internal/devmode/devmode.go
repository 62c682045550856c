// Package devmode is `mcpgw dev`: a whole installation in one process for a
// first try. It runs a control plane (on the embedded store, or on Postgres
// when given a URL), seeds it the first time with the demo backend (this
// binary's `demo-backend`), a role and a principal with an API key, enrolls
// an in-process edge with a join token, waits until a client can list the
// demo tools through the edge, and prints what a newcomer needs to connect:
// the MCP URL, the demo key, the admin token, an mcpctl context line and
// ready-to-paste client configs.
//
// Everything it makes lives in the data dir, so a restart keeps the state
// and prints the same credentials; the credentials file is the one liberty
// dev mode takes that a real installation never does (see CredentialsFile).
package devmode

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/mcpgw/mcpgw/controlplane"
	"github.com/mcpgw/mcpgw/dataplane"
)

// Defaults. The control plane's listeners are on loopback: dev mode is for
// this machine only.
const (
	DefaultDataDir     = ".mcpgw"
	DefaultListen      = "127.0.0.1:8080"
	DefaultNodeListen  = "127.0.0.1:7443"
	DefaultAdminListen = "127.0.0.1:7444"
	// DefaultReadyTimeout bounds the wait for the edge to serve the demo
	// tools (enrollment, first config, the backend's start).
	DefaultReadyTimeout = 60 * time.Second
	// NodeCertTTL is the lifetime of the edge's certificate in dev mode:
	// long, because a dev installation is often stopped for days and an
	// edge renews only while it runs (a real fleet keeps the 24h default).
	NodeCertTTL = 365 * 24 * time.Hour
	// ContextName is the mcpctl context the printed line creates.
	ContextName = "mcpgw-dev"
)

// Files and directories under the data dir, besides the control plane's
// own (ca.crt, kek) and CredentialsFile.
const (
	edgeStateDir       = "edge"
	stdioStateDir      = "stdio-edge"
	stdioConfigFile    = "stdio-edge.yaml"
	lockFile           = "dev.lock"
	logFile            = "dev.log"
	stdioKeyEnv        = "MCPGW_DEV_API_KEY"
	stdioEdgePrincipal = "local"
)

// Config is what `mcpgw dev` needs. Validate before Run.
type Config struct {
	// DataDir holds everything dev mode keeps (default ./.mcpgw).
	DataDir string
	// Listen is the edge's MCP listener (default 127.0.0.1:8080).
	Listen string
	// NodeListen and AdminListen are the control plane's listeners for
	// edges and for mcpctl (defaults 127.0.0.1:7443 and :7444).
	NodeListen, AdminListen string
	// DatabaseURL puts the control plane on Postgres; "" uses the embedded
	// store in the data dir.
	DatabaseURL string
	// Executable is this binary, which runs the demo backend (`demo-backend`)
	// and the stdio client's edge. Default os.Executable().
	Executable string
	// ReadyTimeout bounds the start (default DefaultReadyTimeout).
	ReadyTimeout time.Duration
	// Logger receives the structured logs of every part. Default: JSON to
	// DATA_DIR/dev.log at info, and warnings and errors also to Stderr.
	Logger *slog.Logger
	// StderrLevel is the lowest level of the logs also written to Stderr
	// when Logger is nil (default warn).
	StderrLevel slog.Level
	// Stdout receives the banner once ready; Stderr short notices.
	Stdout, Stderr io.Writer
	// OnReady, if set, is called with what the banner shows.
	OnReady func(Ready)
}

// Ready is what a started dev installation offers.
type Ready struct {
	// MCPURL is the edge's MCP endpoint.
	MCPURL string
	// APIKey is the demo principal's key.
	APIKey string
	// AdminToken and AdminAddr reach the admin API; CAFile verifies it.
	AdminToken, AdminAddr, CAFile string
	// NodeAddr is the control plane's node listener.
	NodeAddr string
	// StdioConfig is the config file of the stdio client's edge.
	StdioConfig string
	// Executable is the binary the client configs run.
	Executable string
	// DataDir is the absolute data dir.
	DataDir string
	// Tools is what the demo key saw listed when the edge became ready.
	Tools []string
}

// Validate checks the config and fills in defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		errs = append(errs, fmt.Errorf("data dir %q: %w", c.DataDir, err))
	}
	c.DataDir = abs
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.NodeListen == "" {
		c.NodeListen = DefaultNodeListen
	}
	if c.AdminListen == "" {
		c.AdminListen = DefaultAdminListen
	}
	for _, l := range c.listeners() {
		if _, _, err := net.SplitHostPort(l.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want host:port (%v)", l.flag, l.addr, err))
		}
	}
	if c.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			errs = append(errs, fmt.Errorf("finding this binary (it runs the demo backend): %w", err))
		}
		c.Executable = exe
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = DefaultReadyTimeout
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	return errors.Join(errs...)
}

type listener struct{ flag, addr string }

func (c *Config) listeners() []listener {
	return []listener{{"--listen", c.Listen}, {"--node-listen", c.NodeListen}, {"--admin-listen", c.AdminListen}}
}

// Run runs the installation until ctx ends, then stops the edge (which
// drains calls, flushes its audit to the control plane's reach and stops
// the demo backend) and then the control plane. cfg must have passed
// Validate.
func Run(ctx context.Context, cfg Config) error {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating the data dir: %w", err)
	}
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	if err := checkPorts(cfg.listeners()); err != nil {
		return err
	}
	if cfg.Logger == nil {
		f, err := os.OpenFile(filepath.Join(cfg.DataDir, logFile), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return fmt.Errorf("opening the log file: %w", err)
		}
		defer f.Close()
		cfg.Logger = slog.New(slog.NewMultiHandler(
			slog.NewJSONHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo}),
			slog.NewTextHandler(cfg.Stderr, &slog.HandlerOptions{Level: cfg.StderrLevel}),
		))
	}
	log := cfg.Logger

	creds, err := loadCredentials(cfg.DataDir)
	if err != nil {
		return err
	}
	// Saved before the control plane stores the token's hash, so the
	// token it accepts is always one this file knows.
	if err := creds.save(cfg.DataDir); err != nil {
		return err
	}

	cpCtx, stopCP := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCP()
	cpReady := make(chan controlplane.Ready, 1)
	cpCfg := controlplane.Config{
		DatabaseURL: cfg.DatabaseURL,
		NodeListen:  cfg.NodeListen,
		AdminListen: cfg.AdminListen,
		DataDir:     cfg.DataDir,
		AdminToken:  creds.AdminToken,
		Replica:     "mcpgw-dev",
		NodeCertTTL: NodeCertTTL,
		Logger:      log.With("part", "cp"),
		Notices:     noticeLog{log},
		OnReady:     func(r controlplane.Ready) { cpReady <- r },
	}
	if cfg.DatabaseURL == "" {
		cpCfg.EmbeddedPath = controlplane.EmbeddedStorePath(cfg.DataDir)
	}
	if err := cpCfg.Validate(); err != nil {
		return fmt.Errorf("control plane config: %w", err)
	}
	cpDone := make(chan error, 1)
	go func() { cpDone <- controlplane.Run(cpCtx, cpCfg) }()
	// waitCP stops the control plane and returns its error; every return
	// below goes through it so the replica never outlives Run.
	waitCP := func() error {
		stopCP()
		return <-cpDone
	}

	var cp controlplane.Ready
	select {
	case cp = <-cpReady:
	case err := <-cpDone:
		return fmt.Errorf("control plane: %w", err)
	case <-ctx.Done():
		return waitCP()
	}

	ready, edgeCfg, err := prepare(ctx, cfg, cp, creds)
	if err != nil {
		return errors.Join(err, waitCP())
	}

	listening := make(chan net.Addr, 1)
	edgeCfg.OnListen = func(name string, addr net.Addr) {
		if name == "mcp" {
			listening <- addr
		}
	}
	edgeCtx, stopEdge := context.WithCancel(ctx)
	defer stopEdge()
	edgeDone := make(chan error, 1)
	go func() { edgeDone <- dataplane.Run(edgeCtx, edgeCfg) }()
	// stop ends the edge, then the control plane: the edge flushes its
	// audit spool while the control plane can still take it.
	stop := func(cause error) error {
		stopEdge()
		edgeErr := <-edgeDone
		if edgeErr != nil {
			edgeErr = fmt.Errorf("edge: %w", edgeErr)
		}
		cpErr := waitCP()
		if cpErr != nil {
			cpErr = fmt.Errorf("control plane: %w", cpErr)
		}
		return errors.Join(cause, edgeErr, cpErr)
	}

	var addr net.Addr
	select {
	case addr = <-listening:
	case err := <-edgeDone:
		edgeDone <- err
		return stop(nil)
	case err := <-cpDone:
		cpDone <- err
		return stop(nil)
	case <-ctx.Done():
		return stop(nil)
	}
	ready.MCPURL = "http://" + dialable(addr) + "/mcp"

	readyCtx, cancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
	// A part that stops while we wait ends the wait at once; the watcher
	// puts what it took back for stop to read.
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case err := <-edgeDone:
			edgeDone <- err
			cancel()
		case err := <-cpDone:
			cpDone <- err
			cancel()
		case <-readyCtx.Done():
		}
	}()
	tools, err := waitForTools(readyCtx, ready.MCPURL, ready.APIKey)
	cancel()
	<-watched
	if err != nil {
		if ctx.Err() != nil {
			return stop(nil)
		}
		return stop(fmt.Errorf("the edge did not serve the demo backend within %s: %w (logs: %s)", cfg.ReadyTimeout, err, filepath.Join(cfg.DataDir, logFile)))
	}
	ready.Tools = tools
	if err := writeStdioConfig(ready); err != nil {
		return stop(err)
	}
	if err := printBanner(cfg.Stdout, ready); err != nil {
		return stop(fmt.Errorf("printing the banner: %w", err))
	}
	log.Info("mcpgw dev ready", "mcp_url", ready.MCPURL, "admin", ready.AdminAddr, "node", ready.NodeAddr)
	if cfg.OnReady != nil {
		cfg.OnReady(ready)
	}

	select {
	case <-ctx.Done():
		fmt.Fprintln(cfg.Stderr, "mcpgw dev: stopping")
		return stop(nil)
	case err := <-edgeDone:
		edgeDone <- err
		return stop(errors.New("the edge stopped on its own"))
	case err := <-cpDone:
		cpDone <- err
		return stop(errors.New("the control plane stopped on its own"))
	}
}

// prepare seeds the installation on its first start (or refreshes the demo
// backend's command on later ones) through the admin API, and returns the
// edge's config.
func prepare(ctx context.Context, cfg Config, cp controlplane.Ready, creds *credentials) (Ready, dataplane.Config, error) {
	ready := Ready{
		AdminToken: creds.AdminToken, AdminAddr: cp.AdminAddr, CAFile: cp.CAFile, NodeAddr: cp.NodeAddr,
		StdioConfig: filepath.Join(cfg.DataDir, stdioConfigFile), Executable: cfg.Executable, DataDir: cfg.DataDir,
	}
	fp, err := fileSHA256(cp.CAFile)
	if err != nil {
		return ready, dataplane.Config{}, err
	}
	if creds.CAFingerprint != "" && creds.CAFingerprint != fp {
		return ready, dataplane.Config{}, fmt.Errorf("the data dir %s was set up against another control-plane store (its CA differs): "+
			"its edge identity and demo key belong there. Use the store it was made with, or another --data-dir", cfg.DataDir)
	}
	c, err := dialAdmin(cp.AdminAddr, cp.CAFile, creds.AdminToken)
	if err != nil {
		return ready, dataplane.Config{}, err
	}
	defer c.Close()
	callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	seeded, err := seed(callCtx, c, creds, cfg.Executable)
	if err != nil {
		return ready, dataplane.Config{}, err
	}
	if seeded {
		creds.CAFingerprint = fp
		if err := creds.save(cfg.DataDir); err != nil {
			return ready, dataplane.Config{}, err
		}
	} else if err := refreshDemoBackend(callCtx, c, cfg.Executable); err != nil {
		return ready, dataplane.Config{}, err
	}
	ready.APIKey = creds.DemoKey

	edgeCfg := dataplane.Config{
		ControlPlane: cp.NodeAddr,
		CAFile:       cp.CAFile,
		StateDir:     filepath.Join(cfg.DataDir, edgeStateDir),
		NodeName:     "mcpgw-dev-edge",
		Listen:       cfg.Listen,
		Logger:       cfg.Logger.With("part", "edge"),
	}
	if err := retireExpiredEdge(edgeCfg.StateDir, time.Now(), cfg.Stderr); err != nil {
		return ready, dataplane.Config{}, err
	}
	if !enrolled(edgeCfg.StateDir) {
		if edgeCfg.JoinToken, err = joinToken(callCtx, c); err != nil {
			return ready, dataplane.Config{}, err
		}
	}
	return ready, edgeCfg, nil
}

// dialable turns a listener's address into one a client on this machine
// can use: a wildcard listener (0.0.0.0, ::) is reached on loopback.
func dialable(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return addr.String()
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp.Port))
}

// lockDataDir makes sure one mcpgw dev at a time uses a data dir: two would
// share a store, an edge identity and an audit spool.
func lockDataDir(dir string) (func(), error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another mcpgw dev is running with the data dir %s: stop it, or pass another --data-dir", dir)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// checkPorts fails early, naming the flag, when a listen address is taken:
// better than a control plane that started and an edge that cannot.
func checkPorts(ls []listener) error {
	var errs []error
	for _, l := range ls {
		_, port, _ := net.SplitHostPort(l.addr)
		if port == "0" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("cannot listen on %s (%s): %v; stop what uses it or pick another address with %s", l.addr, l.flag, errors.Unwrap(err), l.flag))
			continue
		}
		ln.Close()
	}
	return errors.Join(errs...)
}

func fileSHA256(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// retireExpiredEdge moves an edge state dir whose certificate has expired
// out of the way, so the edge enrolls again: an edge cannot renew an
// expired certificate, and the control plane refuses it. With dev mode's
// long certificates this takes an edge stopped for about a year.
func retireExpiredEdge(stateDir string, now time.Time, notices io.Writer) error {
	b, err := os.ReadFile(filepath.Join(stateDir, "node.pem"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the edge identity: %w", err)
	}
	var notAfter time.Time
	for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
		if blk.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return fmt.Errorf("the edge identity in %s is damaged (%v): remove that directory to enroll the edge again", stateDir, err)
		}
		notAfter = cert.NotAfter
		break
	}
	if notAfter.IsZero() || now.Before(notAfter) {
		return nil
	}
	old := stateDir + ".expired-" + now.UTC().Format("20060102T150405Z")
	if err := os.Rename(stateDir, old); err != nil {
		return fmt.Errorf("moving aside the edge state with an expired certificate: %w", err)
	}
	fmt.Fprintf(notices, "mcpgw dev: the edge's certificate expired on %s; it enrolls again (its old state, with any audit events it had not shipped, is in %s)\n",
		notAfter.UTC().Format(time.RFC3339), old)
	return nil
}

// enrolled reports whether the edge's state dir holds a node identity
// (cpclient keeps it in node.pem), so no join token is needed.
func enrolled(stateDir string) bool {
	_, err := os.Stat(filepath.Join(stateDir, "node.pem"))
	return err == nil
}

// noticeLog turns the control plane's operator notices (CA bundle written,
// KEK created) into log lines: in dev mode the banner says what matters.
type noticeLog struct{ log *slog.Logger }

func (n noticeLog) Write(p []byte) (int, error) {
	n.log.Info(string(trimNewline(p)), "part", "cp")
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}
