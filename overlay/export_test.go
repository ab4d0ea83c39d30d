package overlay

import "time"

// SetLinkBatchSize sets the batch size of devices created afterwards and
// returns the previous one (benchmarks only).
func SetLinkBatchSize(n int) int {
	old := linkBatchSize
	linkBatchSize = n
	return old
}

// SetLinkGRO turns GRO on inbound batches on or off for links created
// afterwards and returns the previous setting (benchmarks only).
func SetLinkGRO(on bool) bool {
	old := linkGRO
	linkGRO = on
	return old
}

// GSO modes for SetLinkGSO.
const (
	GSONone   = int(gsoNone)
	GSOGVisor = int(gsoGVisor)
	GSOHost   = int(gsoHost)
)

// SetLinkGSO sets the GSO mode of links created afterwards and returns the
// previous one (benchmarks only).
func SetLinkGSO(mode int) int {
	old := linkGSO
	linkGSO = gsoMode(mode)
	return int(old)
}

// SetRelayFinLinger sets how long a finished relayed TCP flow stays and
// returns the previous value (tests only).
func SetRelayFinLinger(d time.Duration) time.Duration {
	old := relayFinLinger
	relayFinLinger = d
	return old
}
