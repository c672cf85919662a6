// Package suite runs containerd's snapshotter conformance suite (snapshots/testsuite) against
// `devmapper snapshotter serve`, through containerd's own gRPC client (snapshots/proxy), the way
// containerd talks to a proxy snapshotter plugin.
//
// Each test of the suite gets a fresh server with its own pool: the factory starts
//
//	$DEVMAPPER_BIN snapshotter serve --home HOME --address ROOT/s.sock --storage-opt OPT...
//
// waits until the socket accepts, and hands the suite a proxy snapshotter on that connection. Its
// cleanup stops the server with SIGTERM (which must exit 0), then removes the pool with
// `devmapper pool shutdown --home HOME` and deletes HOME. HOME is outside the suite's ROOT: on a
// failure the suite reads every file under its temporary folder, and the pool's loop files are
// gigabytes.
//
// Environment:
//
//	DEVMAPPER_BIN         the devmapper command (required)
//	DEVMAPPER_SUITE_OPTS  storage options, space separated (default: small loop files)
//	DEVMAPPER_SUITE_START_TIMEOUT  how long a server may take to accept (Go duration, default 2m)
package suite

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/log"
	"github.com/containerd/containerd/pkg/dialer"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"google.golang.org/grpc"
)

// The name containerd's config gives the proxy plugin; the server ignores it.
const name = "devmapper"

const defaultOpts = "dm.loopdatasize=2G dm.loopmetadatasize=128M dm.basesize=512M"

// How long a stopping server may take to finish its calls and exit.
const stopTimeout = time.Minute

func TestDevmapper(t *testing.T) {
	bin := os.Getenv("DEVMAPPER_BIN")
	if bin == "" {
		t.Fatal("DEVMAPPER_BIN is not set: it names the devmapper command to serve the snapshotter")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("DEVMAPPER_BIN: %v", err)
	}
	optText, ok := os.LookupEnv("DEVMAPPER_SUITE_OPTS")
	if !ok {
		optText = defaultOpts
	}
	startTimeout := 2 * time.Minute
	if s := os.Getenv("DEVMAPPER_SUITE_START_TIMEOUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("DEVMAPPER_SUITE_START_TIMEOUT: %v", err)
		}
		startTimeout = d
	}
	f := factory{bin: bin, opts: strings.Fields(optText), startTimeout: startTimeout}
	testsuite.SnapshotterSuite(t, name, f.new)
}

type factory struct {
	bin          string
	opts         []string
	startTimeout time.Duration
}

// server is one running `snapshotter serve` and the pool it owns.
type server struct {
	bin, home, sock string
	cmd             *exec.Cmd
	output          *output
	exited          chan struct{} // closed when cmd.Wait has returned
	waitErr         error
	conn            *grpc.ClientConn
	ctx             context.Context // the test's, for its log
}

func (f factory) new(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
	home, err := os.MkdirTemp("", "devmapper-suite-home-")
	if err != nil {
		return nil, nil, err
	}
	s := &server{bin: f.bin, home: home, sock: filepath.Join(root, "s.sock"), exited: make(chan struct{}), ctx: ctx}
	args := []string{"snapshotter", "serve", "--home", home, "--address", s.sock}
	for _, o := range f.opts {
		args = append(args, "--storage-opt", o)
	}
	s.cmd = exec.Command(f.bin, args...)
	s.output = newOutput(ctx)
	s.cmd.Stdout = s.output
	s.cmd.Stderr = s.output
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(home)
		return nil, nil, fmt.Errorf("start %s: %w", f.bin, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		s.output.Close()
		close(s.exited)
	}()
	start := time.Now()
	if err := s.ready(f.startTimeout); err != nil {
		return nil, nil, join(err, s.stop())
	}
	log.G(ctx).Infof("the server accepts after %v", time.Since(start).Round(time.Millisecond))
	s.conn, err = grpc.Dial(dialer.DialAddress(s.sock), grpc.WithInsecure(), grpc.WithContextDialer(dialer.ContextDialer))
	if err != nil {
		return nil, nil, join(fmt.Errorf("dial %s: %w", s.sock, err), s.stop())
	}
	return proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(s.conn), name), s.stop, nil
}

// ready waits until the socket accepts a connection, the server exits, or the timeout passes.
func (s *server) ready(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("unix", s.sock, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("the server exited before accepting (%v); its output:\n%s", s.waitErr, s.output.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not accept within %v (last: %v); the server's output:\n%s", s.sock, timeout, err, s.output.String())
		}
	}
}

// stop closes the connection, stops the server (SIGTERM, exit 0 expected), removes the pool and
// deletes the home; every step runs, and every failure is returned.
func (s *server) stop() error {
	var errs []error
	start := time.Now()
	if s.conn != nil {
		if err := s.conn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close the connection: %w", err))
		}
	}
	select {
	case <-s.exited:
		errs = append(errs, fmt.Errorf("the server had exited before its stop (%v); its output:\n%s", s.waitErr, s.output.String()))
	default:
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			errs = append(errs, fmt.Errorf("SIGTERM the server: %w", err))
		}
		select {
		case <-s.exited:
			if s.waitErr != nil {
				errs = append(errs, fmt.Errorf("the server's exit after SIGTERM: %v; its output:\n%s", s.waitErr, s.output.String()))
			}
		case <-time.After(stopTimeout):
			s.cmd.Process.Kill()
			<-s.exited
			errs = append(errs, fmt.Errorf("the server did not exit within %v of SIGTERM; its output:\n%s", stopTimeout, s.output.String()))
		}
	}
	if _, err := os.Stat(s.sock); err == nil {
		errs = append(errs, fmt.Errorf("the server left its socket %s behind", s.sock))
	}
	stopped := time.Now()
	out, err := exec.Command(s.bin, "pool", "shutdown", "--home", s.home).CombinedOutput()
	if err != nil {
		errs = append(errs, fmt.Errorf("devmapper pool shutdown --home %s: %v: %s", s.home, err, out))
	} else if err := os.RemoveAll(s.home); err != nil {
		errs = append(errs, err)
	}
	log.G(s.ctx).Infof("the server stopped in %v, the pool in %v", stopped.Sub(start).Round(time.Millisecond), time.Since(stopped).Round(time.Millisecond))
	return join(errs...)
}

// output keeps what the server writes and logs it line by line to the test (through the
// context's logger), so a failing test shows what the server said.
type output struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	pw   *io.PipeWriter
	done chan struct{}
}

func newOutput(ctx context.Context) *output {
	pr, pw := io.Pipe()
	o := &output{pw: pw, done: make(chan struct{})}
	go func() {
		defer close(o.done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			log.G(ctx).WithField("from", "server").Info(sc.Text())
		}
		io.Copy(io.Discard, pr)
	}()
	return o
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	o.buf.Write(p)
	o.mu.Unlock()
	return o.pw.Write(p)
}

// Close ends the log once the server has exited; it returns when every line is logged.
func (o *output) Close() {
	o.pw.Close()
	<-o.done
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// join returns nil for no errors, else one error whose message holds every message (Go 1.19 has
// no errors.Join).
func join(errs ...error) error {
	var msgs []string
	for _, err := range errs {
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(msgs, "\n"))
}
