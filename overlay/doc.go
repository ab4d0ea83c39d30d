// Package overlay terminates WireGuard peers into a userspace gVisor network
// stack that it owns: a wireguard-go device whose tun.Device is a gVisor link
// endpoint, promiscuous TCP and UDP forwarders that hand every new flow to a
// callback with its source and destination, ICMP echo, peer-set updates, and
// dialing/listening inside the overlay.
//
// overlay knows nothing of policy: the callbacks decide.
//
// # Data path
//
//	bind (UDP or memnet) -> wireguard-go device -> link (tun side, Write)
//	    -> ICMP echo intercept -> GRO -> gVisor stack (promiscuous NIC)
//	    -> listener, live flow endpoint, or forwarder -> Handler
//	Handler's conn -> gVisor TCP (64 KiB GSO segments) -> link (WritePackets)
//	    -> queue -> tun side Read (batch; splits GSO segments) -> device -> bind
//
// Files: link.go (the tun.Device/stack.LinkEndpoint pair), gso.go
// (splitting host-GSO segments), stack.go (stack
// setup and TCP tuning), tcp.go (forwarder, in-flight shares, keepalive),
// udp.go (new-flow decisions, per-flow endpoints), icmp.go (echo), peers.go
// (peer diffs and statistics), overlay.go (lifecycle, dial and listen),
// keys.go; memnet/ is the in-memory conn.Bind for tests and the demo.
//
// # What the flows see
//
//   - TCP: a SYN to any address reaches Handler.TCP unless a listener
//     (ListenTCP) owns the address and port. Reject, a panic or returning
//     without Accept resets it; the client sees "connection refused". At most
//     TCPConfig.MaxInFlight SYNs wait for the handler, at most
//     MaxInFlightPerSource from one source address; a SYN over the source's
//     share is reset, one over the total is dropped (the client retries).
//   - UDP: the first datagram of a (src, dst) pair asks Handler.UDP, on the
//     packet path; nil answers ICMP port unreachable. The flow lives while
//     its conn is open; it has no idle timeout here (the gateway sets read
//     deadlines), and closing the conn lets the next datagram start a new
//     flow.
//   - ICMP echo: answered by the overlay itself for its own Address, and for
//     any other address Handler.Ping allows; other echo requests are dropped.
//
// # Performance (measured, not copied)
//
// Two tools. BenchmarkTCPThroughput sends one TCP flow into a handler that
// discards and reports MB/s and MB/cpu-s (bytes per CPU-second of the whole
// process, both ends included): "client" sends from a wgclient (wireguard-go
// tun/netstack, batch size 1), "sitelink" runs two overlays against each
// other (both ends this package's link). TestCompareThroughput (run with
// -compare) keeps one sitelink pair per variant alive and sends 16 MiB
// bursts through each in rotating order for 12 rounds, so that the rest of
// the machine hits every variant alike, and prints ratios to the default.
//
// Figures: a 2-vCPU VM shared with three other builds (load average 4-10),
// where wall-clock MB/s of a single run swings by +-40%. The comparison
// therefore keeps two copies of the default (created first and last); the
// baseline is their geometric mean, and their ratio to each other (0.79 to
// 1.27 over these runs) is the noise floor: only a difference that repeats
// in every run counts. Ratios of MB/cpu-s (steadier than MB/s) from three
// runs of
//
//	go test ./overlay -run TestCompareThroughput -compare -v
//
//	variant, MB/cpu-s ratio to default    memnet            loopback UDP
//	tun batch 1 (instead of 128)          0.82 0.71 0.78    0.69 0.71 0.59
//	no GRO on inbound batches             0.72 0.64 0.60    0.95 0.96 1.04
//	no GSO                                0.68 0.59 0.60    0.75 0.85 0.69
//	gVisor GSO instead of host GSO        0.67 0.68 0.70    0.85 0.88 1.00
//	buffers max 1 MiB  (against 8 MiB)    1.00 1.06 1.00    1.22 1.43 1.34
//	buffers max 4 MiB  (against 8 MiB)    1.08 1.14 0.99    0.98 1.05 1.18
//	buffers max 16 MiB (against 8 MiB)    1.02 0.96 1.04    0.95 0.88 0.76
//	cubic (default reno)                  0.95 0.96 1.03    1.16 0.79 1.04
//
//	These runs had an 8 MiB buffer maximum as the default; the default is
//	4 MiB since (below), and the comparison now lists 1, 8 and 16 MiB.
//
//	default, absolute                     60-190 MB/s       45-150 MB/s
//	                                      165-195 MB/cpu-s  70-90 MB/cpu-s
//
// Choices: batches of 128, GRO on every inbound batch and host GSO are on:
// each is worth 1.2-1.7x in CPU per byte (GRO only where batches are large:
// over real UDP under this load wireguard-go's per-peer batches were too
// small for it to matter). Buffer maxima: 16 MiB is never better, 1 MiB is
// better on loopback UDP (less queueing on a zero-RTT path) but caps a
// single flow at about 1 MiB/RTT (50 MB/s at 20 ms), so the default is
// 4 MiB, auto-tuned up from 1 MiB per flow that needs it; gVisor allocates
// buffer memory only for queued data. Congestion control: reno and cubic
// are within noise, so gVisor's default (reno) is kept, given CUBIC's bug
// history in gVisor.
//
// BenchmarkTCPThroughput on the same machine (-benchtime 2s -count 2),
// before host GSO: sitelink memnet 80-170 MB/s, sitelink loopback UDP
// 40-100 MB/s, client memnet 66-83 MB/s, client loopback UDP 30-66 MB/s
// (there the client's batch-1 netstack is the bottleneck). A CPU profile of
// sitelink memnet showed ChaCha20-Poly1305 at ~15% and a large share in
// re-zeroing wireguard-go's 64 KiB message buffers, which its sync.Pools
// drop at every GC.
//
// BenchmarkIdleConnMemory (-benchtime 500x to 2000x): an idle established
// connection costs 11-31 KB of heap for both ends together (the gateway's
// endpoint and gonet conn plus the client's netstack endpoint), so buffer
// ranges cost memory only while data is queued.
//
// Next steps for speed: a preallocated wireguard-go buffer pool (fewer
// re-zeroed 64 KiB buffers), and measuring on an idle machine with real
// RTT (netem) to settle the buffer maxima.
package overlay
