// Command client drives a snapshotter through containerd's snapshots/proxy over a unix socket,
// exactly as containerd reaches a proxy plugin, and times each call with time.Now. One run is one
// bench round; everything it makes it removes.
//
//	client -address SOCKET -round R -count N -layers L -mnt DIR
//
// Per iteration: Prepare (no parent), Mounts, mount + write a file + unmount, Commit, Prepare on
// the committed snapshot, View of it, then Remove of the view, the active and the committed one.
// Then an unpack-shaped chain of L layers, as containerd's unpacker does it: Prepare on the
// previous layer, mount the returned mounts, write the layer's file, unmount, Commit; the chain is
// removed top-down afterwards. Prints one JSON line per operation: {"op": NAME, "ms": [...]}.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/pkg/dialer"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"google.golang.org/grpc"
)

// The payload written into every mounted snapshot: one small file, as a thin layer carries.
var payload = make([]byte, 64*1024)

type timings struct {
	order []string
	ms    map[string][]float64
}

func (t *timings) add(op string, d time.Duration) {
	if _, ok := t.ms[op]; !ok {
		t.order = append(t.order, op)
	}
	t.ms[op] = append(t.ms[op], float64(d.Nanoseconds())/1e6)
}

// timed runs one call and records its wall time under op.
func (t *timings) timed(op string, fn func() error) error {
	start := time.Now()
	err := fn()
	d := time.Since(start)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	t.add(op, d)
	return nil
}

// writeInto mounts the snapshot at dir, writes name, and unmounts (the unmount flushes it).
func writeInto(mounts []mount.Mount, dir, name string) error {
	if err := mount.All(mounts, dir); err != nil {
		return err
	}
	werr := os.WriteFile(filepath.Join(dir, name), payload, 0o644)
	uerr := mount.UnmountAll(dir, 0)
	if werr != nil {
		return werr
	}
	return uerr
}

func run(ctx context.Context, sn snapshots.Snapshotter, t *timings, round, count, layers int, mnt string) error {
	key := func(kind string, i int) string { return fmt.Sprintf("default/%d/bench-%s-%d", round, kind, i) }
	for i := 0; i < count; i++ {
		active, committed, child, view := key("active", i), key("committed", i), key("child", i), key("view", i)
		var mounts []mount.Mount
		if err := t.timed("prepare", func() error { _, err := sn.Prepare(ctx, active, ""); return err }); err != nil {
			return err
		}
		if err := t.timed("mounts", func() (err error) { mounts, err = sn.Mounts(ctx, active); return err }); err != nil {
			return err
		}
		if err := t.timed("mount+write+umount", func() error { return writeInto(mounts, mnt, "file") }); err != nil {
			return err
		}
		if err := t.timed("commit", func() error { return sn.Commit(ctx, committed, active) }); err != nil {
			return err
		}
		if err := t.timed("prepare-parent", func() error { _, err := sn.Prepare(ctx, child, committed); return err }); err != nil {
			return err
		}
		if err := t.timed("view", func() error { _, err := sn.View(ctx, view, committed); return err }); err != nil {
			return err
		}
		for _, k := range []string{view, child, committed} {
			k := k
			if err := t.timed("remove", func() error { return sn.Remove(ctx, k) }); err != nil {
				return err
			}
		}
	}

	chain := make([]string, 0, layers)
	start := time.Now()
	parent := ""
	for l := 0; l < layers; l++ {
		active, committed := key("extract", l), key("layer", l)
		layerStart := time.Now()
		mounts, err := sn.Prepare(ctx, active, parent)
		if err != nil {
			return fmt.Errorf("unpack prepare: %w", err)
		}
		if err := writeInto(mounts, mnt, fmt.Sprintf("layer-%d", l)); err != nil {
			return fmt.Errorf("unpack write: %w", err)
		}
		if err := sn.Commit(ctx, committed, active); err != nil {
			return fmt.Errorf("unpack commit: %w", err)
		}
		t.add("unpack-layer", time.Since(layerStart))
		chain = append(chain, committed)
		parent = committed
	}
	t.add(fmt.Sprintf("unpack-%d", layers), time.Since(start))
	for l := len(chain) - 1; l >= 0; l-- {
		k := chain[l]
		if err := t.timed("remove-layer", func() error { return sn.Remove(ctx, k) }); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	address := flag.String("address", "", "unix socket of the snapshots service")
	round := flag.Int("round", 0, "round number (keeps keys of different rounds apart)")
	count := flag.Int("count", 8, "iterations of the single-operation sequence")
	layers := flag.Int("layers", 16, "layers of the unpack-shaped chain")
	mnt := flag.String("mnt", "", "an empty folder to mount snapshots on")
	flag.Parse()
	if *address == "" || *mnt == "" {
		fmt.Fprintln(os.Stderr, "client: -address and -mnt are required")
		os.Exit(2)
	}
	ctx := context.Background()
	dialCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	conn, err := grpc.DialContext(dialCtx, dialer.DialAddress(*address), grpc.WithInsecure(), grpc.WithBlock(),
		grpc.WithContextDialer(dialer.ContextDialer))
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "client: dial %s: %v\n", *address, err)
		os.Exit(1)
	}
	defer conn.Close()
	sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "bench")
	t := &timings{ms: map[string][]float64{}}
	if err := run(ctx, sn, t, *round, *count, *layers, *mnt); err != nil {
		fmt.Fprintf(os.Stderr, "client: %v\n", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	for _, op := range t.order {
		if err := enc.Encode(map[string]interface{}{"op": op, "ms": t.ms[op]}); err != nil {
			os.Exit(1)
		}
	}
}
