package gateway

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// flow is one live, allowed connection. Its identity, service and port are
// kept by name so that a reload can decide it again with the new policy.
type flow struct {
	id       uint64
	identity string
	site     string // the identity's home site
	service  string
	src, dst netip.AddrPort
	proto    policy.Proto
	port     uint16
	rule     string
	start    time.Time

	// bytesIn counts bytes from the client towards the service, bytesOut
	// bytes from the service back to the client.
	bytesIn, bytesOut atomic.Int64

	// stop ends the flow at once (revocation, shutdown, idle timeout); it is
	// safe to call more than once. revoked records why, for flow.end.
	stop    func()
	revoked atomic.Bool
}

// FlowInfo is a live flow as shown by `wardgate flows` and the admin API.
type FlowInfo struct {
	ID       uint64    `json:"id"`
	Identity string    `json:"identity"`
	Site     string    `json:"site"`
	Service  string    `json:"service"`
	Src      string    `json:"src"`
	Dst      string    `json:"dst"`
	Proto    string    `json:"proto"`
	Port     uint16    `json:"port"`
	Rule     string    `json:"rule"`
	Start    time.Time `json:"start"`
	BytesIn  int64     `json:"bytes_in"`
	BytesOut int64     `json:"bytes_out"`
}

// flowTable holds the live flows.
type flowTable struct {
	next atomic.Uint64

	mu    sync.Mutex
	flows map[uint64]*flow
}

func newFlowTable() *flowTable { return &flowTable{flows: make(map[uint64]*flow)} }

func (t *flowTable) add(f *flow) {
	f.id = t.next.Add(1)
	t.mu.Lock()
	t.flows[f.id] = f
	t.mu.Unlock()
}

func (t *flowTable) remove(f *flow) {
	t.mu.Lock()
	delete(t.flows, f.id)
	t.mu.Unlock()
}

// snapshot returns the live flows at this moment.
func (t *flowTable) snapshot() []*flow {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*flow, 0, len(t.flows))
	for _, f := range t.flows {
		out = append(out, f)
	}
	return out
}

func (t *flowTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.flows)
}

func (f *flow) info() FlowInfo {
	return FlowInfo{
		ID: f.id, Identity: f.identity, Site: f.site, Service: f.service,
		Src: f.src.String(), Dst: f.dst.String(), Proto: f.proto.String(), Port: f.port,
		Rule: f.rule, Start: f.start, BytesIn: f.bytesIn.Load(), BytesOut: f.bytesOut.Load(),
	}
}
