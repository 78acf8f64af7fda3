// Package trillian runs Vigie's log on [Trillian]: either in process (a
// Trillian log server and sequencer over a storage this process opens, the
// embedded and single-server modes) or remote (a trillian_log_server and
// trillian_log_signer reached over gRPC, the cluster mode). Both hand out the
// same Trillian gRPC clients, so the code above does not know which it has.
//
// [Trillian]: https://github.com/google/trillian
package trillian

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	tpb "github.com/google/trillian"
	"github.com/google/trillian/client"
	"github.com/google/trillian/extension"
	tlog "github.com/google/trillian/log"
	"github.com/google/trillian/monitoring"
	"github.com/google/trillian/quota"
	"github.com/google/trillian/server"
	"github.com/google/trillian/server/admin"
	"github.com/google/trillian/server/interceptor"
	"github.com/google/trillian/storage"
	"github.com/google/trillian/util/clock"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Clients are the two Trillian APIs Vigie uses.
type Clients struct {
	Log   tpb.TrillianLogClient
	Admin tpb.TrillianAdminClient
}

// The in-process sequencer's defaults integrate up to 200,000 leaves a
// second (DefaultBatchSize every DefaultSequencerInterval), well above
// what the ledger records on one node (docs/performance.md), so that the
// outbox stays bounded; 1,000 every 100ms capped it at 10,000 a second.
const (
	DefaultSequencerInterval = 50 * time.Millisecond
	DefaultBatchSize         = 10_000
)

// Config configures an in-process Trillian. Storage is required.
type Config struct {
	// LogStorage and AdminStorage are the Trillian storage to serve.
	LogStorage   storage.LogStorage
	AdminStorage storage.AdminStorage
	// SequencerInterval is the time between two sequencing runs when the
	// previous run found nothing to do. Default DefaultSequencerInterval.
	SequencerInterval time.Duration
	// BatchSize is the most leaves one sequencing run integrates.
	// Default DefaultBatchSize.
	BatchSize int
	// Listener is where the gRPC server listens. Default: an in-memory
	// listener reachable only from this process.
	Listener net.Listener
	// MetricFactory receives Trillian's metrics. Default: the process's,
	// Metrics() (Trillian makes some of its metrics once per process, with
	// the first server's factory: see processMetrics).
	MetricFactory monitoring.MetricFactory
	// Clock is Trillian's time source. Default: the system clock.
	Clock clock.TimeSource
	// ServerOptions are added to the gRPC server's options.
	ServerOptions []grpc.ServerOption
	// NoSequencer serves the storage without sequencing it, as a
	// trillian_log_server beside another process's trillian_log_signer
	// (one sequencer per tree).
	NoSequencer bool
}

// Embedded is a Trillian log server and sequencer running in this process.
type Embedded struct {
	Clients
	addr   string
	srv    *grpc.Server
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start starts a Trillian log server, admin server and (unless
// cfg.NoSequencer) sequencer over the configured storage. Close stops
// them.
func Start(ctx context.Context, cfg Config) (*Embedded, error) {
	if cfg.LogStorage == nil || cfg.AdminStorage == nil {
		return nil, errors.New("trillian: LogStorage and AdminStorage are required")
	}
	if cfg.SequencerInterval <= 0 {
		cfg.SequencerInterval = DefaultSequencerInterval
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.MetricFactory == nil {
		cfg.MetricFactory = processMetrics
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.System
	}
	registry := extension.Registry{
		AdminStorage:  cfg.AdminStorage,
		LogStorage:    cfg.LogStorage,
		QuotaManager:  quota.Noop(),
		MetricFactory: cfg.MetricFactory,
	}

	ti := interceptor.New(registry.AdminStorage, registry.QuotaManager, false, registry.MetricFactory)
	opts := append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(interceptor.ErrorWrapper, ti.UnaryInterceptor),
	}, cfg.ServerOptions...)
	srv := grpc.NewServer(opts...)
	tpb.RegisterTrillianAdminServer(srv, admin.New(registry, []tpb.TreeType{tpb.TreeType_LOG, tpb.TreeType_PREORDERED_LOG}))
	tpb.RegisterTrillianLogServer(srv, server.NewTrillianLogRPCServer(registry, cfg.Clock))

	lis := cfg.Listener
	var dial []grpc.DialOption
	target := ""
	if lis == nil {
		bl := bufconn.Listen(1 << 20)
		lis = bl
		target = "passthrough:///trillian-in-process"
		dial = append(dial, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return bl.DialContext(ctx)
		}))
	} else {
		target = lis.Addr().String()
	}
	dial = append(dial, grpc.WithTransportCredentials(insecure.NewCredentials()))
	conn, err := grpc.NewClient(target, dial...)
	if err != nil {
		return nil, fmt.Errorf("trillian: connect to in-process server: %w", err)
	}

	e := &Embedded{
		Clients: Clients{Log: tpb.NewTrillianLogClient(conn), Admin: tpb.NewTrillianAdminClient(conn)},
		addr:    lis.Addr().String(),
		srv:     srv,
		conn:    conn,
	}
	seqCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		_ = srv.Serve(lis) // returns when Close stops the server
	}()
	if cfg.NoSequencer {
		return e, nil
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		om := tlog.NewOperationManager(tlog.OperationInfo{
			Registry:    registry,
			BatchSize:   cfg.BatchSize,
			NumWorkers:  1,
			RunInterval: cfg.SequencerInterval,
			TimeSource:  cfg.Clock,
		}, tlog.NewSequencerManager(registry, 0))
		om.OperationLoop(seqCtx)
	}()
	return e, nil
}

// Addr is the address of the gRPC server (for an in-memory listener, a
// name that only this process can dial).
func (e *Embedded) Addr() string { return e.addr }

// Close stops the sequencer, then the gRPC server once in-flight calls have
// finished. It does not close the storage.
func (e *Embedded) Close() error {
	e.cancel()
	err := e.conn.Close()
	e.srv.GracefulStop()
	e.wg.Wait()
	return err
}

// Remote is a connection to one or more Trillian log servers run
// elsewhere.
type Remote struct {
	Clients
	conn *grpc.ClientConn
}

// remoteScheme is the resolver scheme of Dial's connections: a manual
// resolver per connection, never registered globally.
const remoteScheme = "vigie-trillian"

// Dial connects to the Trillian log servers at addrs (host:port each),
// which serve the same storage: calls are spread over the servers that are
// up (gRPC's round_robin policy over one connection per server), and a
// server that fails or stops is left out until it is reachable again.
// Without options the connections are in clear text, for loopback use.
func Dial(addrs []string, opts ...grpc.DialOption) (*Remote, error) {
	if len(addrs) == 0 {
		return nil, errors.New("trillian: no log server address")
	}
	var state resolver.State
	for i, a := range addrs {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("trillian: log server address %d: want host:port", i+1)
		}
		state.Addresses = append(state.Addresses, resolver.Address{Addr: a})
	}
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	r := manual.NewBuilderWithScheme(remoteScheme)
	r.InitialState(state)
	opts = append(opts, grpc.WithResolvers(r), grpc.WithDefaultServiceConfig(`{"loadBalancingConfig": [{"round_robin": {}}]}`))
	conn, err := grpc.NewClient(remoteScheme+":///trillian", opts...)
	if err != nil {
		return nil, fmt.Errorf("trillian: dial: %w", err)
	}
	return &Remote{
		Clients: Clients{Log: tpb.NewTrillianLogClient(conn), Admin: tpb.NewTrillianAdminClient(conn)},
		conn:    conn,
	}, nil
}

// Close closes the connection.
func (r *Remote) Close() error { return r.conn.Close() }

// TreeSpec names the tree Vigie writes to.
type TreeSpec struct {
	// TreeID, if not zero, is the tree to use; it must exist, be of Type
	// and not be deleted.
	TreeID int64
	// DisplayName finds the tree when TreeID is zero: the one non-deleted
	// tree with this name, created on first use. Trillian limits it to 20
	// characters.
	DisplayName string
	// Type is LOG or PREORDERED_LOG.
	Type tpb.TreeType
	// New, with TreeID zero, always creates a new tree named DisplayName
	// instead of finding one by name (vigie init: what says which tree is
	// the log is the database, not the name).
	New bool
}

// ErrAmbiguousTree is returned by EnsureTree when several trees carry the
// name; the operator must name one by ID. Callers test with errors.Is.
var ErrAmbiguousTree = errors.New("several trees have this name")

// EnsureTree returns the tree spec names, creating and initialising it if
// spec has no TreeID and no tree has its name yet (or spec.New). Without
// spec.New it is safe to call at every start.
func EnsureTree(ctx context.Context, c Clients, spec TreeSpec) (*tpb.Tree, error) {
	if spec.Type != tpb.TreeType_LOG && spec.Type != tpb.TreeType_PREORDERED_LOG {
		return nil, fmt.Errorf("trillian: tree type %v is not a log", spec.Type)
	}
	if spec.TreeID != 0 {
		tree, err := c.Admin.GetTree(ctx, &tpb.GetTreeRequest{TreeId: spec.TreeID})
		if err != nil {
			return nil, fmt.Errorf("trillian: get tree %d: %w", spec.TreeID, err)
		}
		if tree.TreeType != spec.Type || tree.Deleted {
			return nil, fmt.Errorf("trillian: tree %d is %v (deleted: %v), want %v", spec.TreeID, tree.TreeType, tree.Deleted, spec.Type)
		}
		return tree, ensureInit(ctx, c, tree)
	}
	if spec.DisplayName == "" {
		return nil, errors.New("trillian: a tree ID or a display name is required")
	}
	if spec.New {
		return createTree(ctx, c, spec)
	}
	resp, err := c.Admin.ListTrees(ctx, &tpb.ListTreesRequest{})
	if err != nil {
		return nil, fmt.Errorf("trillian: list trees: %w", err)
	}
	var found []*tpb.Tree
	for _, t := range resp.Tree {
		if t.DisplayName == spec.DisplayName && !t.Deleted {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return createTree(ctx, c, spec)
	case 1:
		if found[0].TreeType != spec.Type {
			return nil, fmt.Errorf("trillian: tree %d %q is %v, want %v", found[0].TreeId, spec.DisplayName, found[0].TreeType, spec.Type)
		}
		return found[0], ensureInit(ctx, c, found[0])
	default:
		return nil, fmt.Errorf("trillian: %w: %q (%d trees)", ErrAmbiguousTree, spec.DisplayName, len(found))
	}
}

func createTree(ctx context.Context, c Clients, spec TreeSpec) (*tpb.Tree, error) {
	tree, err := client.CreateAndInitTree(ctx, &tpb.CreateTreeRequest{Tree: &tpb.Tree{
		TreeState:       tpb.TreeState_ACTIVE,
		TreeType:        spec.Type,
		DisplayName:     spec.DisplayName,
		MaxRootDuration: durationpb.New(0),
	}}, c.Admin, c.Log)
	if err != nil {
		return nil, fmt.Errorf("trillian: create tree: %w", err)
	}
	return tree, nil
}

// ensureInit initialises a tree that was created but not initialised (a
// crash between the two steps of CreateAndInitTree).
func ensureInit(ctx context.Context, c Clients, tree *tpb.Tree) error {
	_, err := c.Log.InitLog(ctx, &tpb.InitLogRequest{LogId: tree.TreeId})
	if err == nil || status.Code(err) == codes.AlreadyExists {
		return nil
	}
	return fmt.Errorf("trillian: init tree %d: %w", tree.TreeId, err)
}
