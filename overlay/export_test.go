package overlay

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

// SetLinkGSO turns gVisor GSO on or off for links created afterwards and
// returns the previous setting (benchmarks only).
func SetLinkGSO(on bool) bool {
	old := linkGSO
	linkGSO = on
	return old
}
