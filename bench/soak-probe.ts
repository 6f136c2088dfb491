/**
 * Loaded into the `sshca ca serve` process by the soak (`node --expose-gc --import bench/soak-probe.ts`):
 * answers "probe" on the IPC channel with its memory after a full GC (the live heap, not GC timing).
 * Nothing else: the server under test is the real CLI.
 */
if (process.send) {
  process.on('message', (m) => {
    if (m !== 'probe') return
    ;(globalThis as {gc?: () => void}).gc?.()
    const mu = process.memoryUsage()
    process.send!({
      rss: mu.rss,
      heapUsed: mu.heapUsed,
      heapTotal: mu.heapTotal,
      external: mu.external,
      arrayBuffers: mu.arrayBuffers,
    })
  })
  // the channel must not keep the server alive once it has been told to stop
  process.channel?.unref()
}
