package gateway

import (
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardgate/wardgate/overlay"
)

// flow is one live, allowed connection: terminated here (two sockets
// spliced) or relayed to another site as packets (relay). Its identity,
// service and port are kept by name so that a reload can decide it again
// with the new policy.
type flow struct {
	key    uint64 // in this gateway's flow table
	fields flowFields
	start  time.Time

	// bytesIn counts bytes from the client towards the service, bytesOut
	// bytes from the service back to the client; a relayed flow counts in
	// its relay instead.
	bytesIn, bytesOut atomic.Int64
	relay             *overlay.Relay

	// conns are closed to end the flow at once (revocation, shutdown, idle
	// timeout); revoked records why, for flow.end.
	conns   flowConns
	revoked atomic.Bool
}

// bytes returns the flow's byte counts so far.
func (f *flow) bytes() (in, out int64) {
	if f.relay != nil {
		return f.relay.Bytes()
	}
	return f.bytesIn.Load(), f.bytesOut.Load()
}

// stop ends the flow: every conn it has, and any it gets later.
func (f *flow) stop() { f.conns.closeAll() }

// flowConns are the sockets and streams of one flow.
type flowConns struct {
	mu      sync.Mutex
	conns   []io.Closer
	stopped bool
	aborted bool // stopped by abortAll: later conns are reset too
}

// add registers c; a flow already stopped closes it at once.
func (fc *flowConns) add(c io.Closer) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.stopped {
		closeConn(c, fc.aborted)
		return
	}
	fc.conns = append(fc.conns, c)
}

func (fc *flowConns) closeAll() {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.stopped = true
	for _, c := range fc.conns {
		c.Close()
	}
}

// abortAll ends the flow with resets where the transport has them, so a
// client sees a revoked flow cut off rather than finished. The client side
// was added last and goes first, before the splice, seeing the backend
// gone, can close it gracefully.
func (fc *flowConns) abortAll() {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.stopped, fc.aborted = true, true
	for i := len(fc.conns) - 1; i >= 0; i-- {
		closeConn(fc.conns[i], true)
	}
}

// closeConn closes c, with a reset when abort is set and c has one.
func closeConn(c io.Closer, abort bool) {
	if abort {
		switch c := c.(type) {
		case interface{ Abort() error }: // overlay connections
			c.Abort()
			return
		case *net.TCPConn: // LAN listener and backend connections
			c.SetLinger(0)
		}
	}
	c.Close()
}

func (fc *flowConns) isStopped() bool {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.stopped
}

// FlowInfo is a live flow as shown by `wardgate flows` and the admin API.
type FlowInfo struct {
	ID       string    `json:"id"`
	Identity string    `json:"identity"`
	Site     string    `json:"site"`
	FromSite string    `json:"from_site,omitempty"`
	Service  string    `json:"service"`
	Src      string    `json:"src"`
	Dst      string    `json:"dst"`
	Proto    string    `json:"proto"`
	Port     uint16    `json:"port"`
	Rule     string    `json:"rule"`
	Start    time.Time `json:"start"`
	BytesIn  int64     `json:"bytes_in"`
	BytesOut int64     `json:"bytes_out"`
	// Relayed is set for a flow this gateway relays to another site as
	// packets (the serving site terminates it).
	Relayed     bool   `json:"relayed,omitempty"`
	CommunityID string `json:"community_id"`
}

// newFlow registers an admitted flow in the flow table.
func (g *Gateway) newFlow(v verdict) *flow {
	f := &flow{fields: v.fields(), start: time.Now()}
	g.flows.add(f, g.cfg.Site)
	return f
}

// removeFlow takes an ended flow out of the table and its bytes into the
// totals.
func (g *Gateway) removeFlow(f *flow) {
	g.flows.remove(f)
	g.metrics.flowEnded(f)
}

// flowTable holds the live flows.
type flowTable struct {
	next atomic.Uint64

	mu    sync.Mutex
	flows map[uint64]*flow
}

func newFlowTable() *flowTable { return &flowTable{flows: make(map[uint64]*flow)} }

// add registers f under the ID SITE-N.
func (t *flowTable) add(f *flow, site string) {
	f.key = t.next.Add(1)
	f.fields.id = site + "-" + strconv.FormatUint(f.key, 10)
	t.mu.Lock()
	t.flows[f.key] = f
	t.mu.Unlock()
}

func (t *flowTable) remove(f *flow) {
	t.mu.Lock()
	delete(t.flows, f.key)
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
	ff := &f.fields
	in, out := f.bytes()
	return FlowInfo{
		ID: ff.id, Identity: ff.identity, Site: ff.site, FromSite: ff.fromSite, Service: ff.service,
		Src: ff.src.String(), Dst: ff.dst.String(), Proto: ff.proto.String(), Port: ff.dst.Port(),
		Rule: ff.rule, Start: f.start, BytesIn: in, BytesOut: out, Relayed: f.relay != nil,
		CommunityID: ff.communityID,
	}
}
