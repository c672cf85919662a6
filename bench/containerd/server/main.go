// Command server serves one of containerd's own snapshotters (devmapper or overlayfs, as compiled
// into containerd 1.6.20) over containerd's snapshots gRPC API on a unix socket, through
// contrib/snapshotservice: the same wire path a proxy snapshotter is reached by, so the bench's
// client times every snapshotter alike.
//
//	server -kind devmapper -root DIR -pool POOL -base-size 512MB -address SOCKET
//	server -kind overlayfs -root DIR -address SOCKET
//
// Ready: the socket accepts connections and "listening on SOCKET" is printed. SIGTERM/SIGINT:
// stop accepting, finish calls in flight, close the snapshotter (devices stay), exit 0.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/devmapper"
	"github.com/containerd/containerd/snapshots/overlay"
	"google.golang.org/grpc"
)

func open(kind, root, pool, baseSize string) (snapshots.Snapshotter, error) {
	switch kind {
	case "devmapper":
		// The pool already exists (made by the caller with dmsetup); containerd only names it.
		return devmapper.NewSnapshotter(context.Background(), &devmapper.Config{
			RootPath:      root,
			PoolName:      pool,
			BaseImageSize: baseSize,
		})
	case "overlayfs":
		return overlay.NewSnapshotter(root)
	}
	return nil, fmt.Errorf("unknown -kind %q (devmapper or overlayfs)", kind)
}

func main() {
	kind := flag.String("kind", "", "devmapper or overlayfs")
	root := flag.String("root", "", "the snapshotter's root folder")
	address := flag.String("address", "", "unix socket to listen on")
	pool := flag.String("pool", "", "devmapper: name of an existing thin-pool device")
	baseSize := flag.String("base-size", "512MB", "devmapper: base_image_size")
	flag.Parse()
	if *root == "" || *address == "" {
		fmt.Fprintln(os.Stderr, "server: -root and -address are required")
		os.Exit(2)
	}
	sn, err := open(*kind, *root, *pool, *baseSize)
	if err != nil {
		fmt.Fprintf(os.Stderr, "server: %v\n", err)
		os.Exit(1)
	}
	_ = os.Remove(*address)
	l, err := net.Listen("unix", *address)
	if err != nil {
		fmt.Fprintf(os.Stderr, "server: %v\n", err)
		os.Exit(1)
	}
	srv := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(srv, snapshotservice.FromSnapshotter(sn))
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		srv.GracefulStop()
	}()
	fmt.Printf("listening on %s\n", *address)
	if err := srv.Serve(l); err != nil {
		fmt.Fprintf(os.Stderr, "server: %v\n", err)
	}
	if err := sn.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "server: close: %v\n", err)
		os.Exit(1)
	}
	_ = os.Remove(*address)
}
